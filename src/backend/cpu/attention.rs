//! Multi-head softmax attention over a fused qkv tensor.

use rayon::prelude::*;

use super::gemm::{matmul, View};
use super::math;

/// qkv (B, T, 3·H·Dh) → (B, T, H·Dh): per (batch, head) `softmax(q kᵀ / √Dh) v`.
pub fn attention(qkv: &[f32], b: usize, t: usize, heads: usize, dh: usize) -> Vec<f32> {
    let d = heads * dh;
    // T = 0 or Dh = 0: the per-head views below would start past an empty qkv.
    if b * t * d == 0 {
        return Vec::new();
    }
    let scale = 1.0 / (dh as f32).sqrt();
    let per_head: Vec<(usize, usize, Vec<f32>)> = (0..b * heads)
        .into_par_iter()
        .map(|bh| {
            let (n, h) = (bh / heads, bh % heads);
            let base = &qkv[n * t * 3 * d..(n + 1) * t * 3 * d];
            let q = View {
                data: &base[h * dh..],
                rs: 3 * d,
                cs: 1,
            };
            let kt = View {
                data: &base[d + h * dh..],
                rs: 1,
                cs: 3 * d,
            };
            let v = View {
                data: &base[2 * d + h * dh..],
                rs: 3 * d,
                cs: 1,
            };
            // (T, T) scores, scaled in the product.
            let mut s = vec![0f32; t * t];
            matmul(&mut s, q, kt, t, t, dh, scale, false);
            math::simd(|| s.chunks_mut(t).for_each(math::softmax));
            // (T, Dh) output of this head.
            let mut o = vec![0f32; t * dh];
            matmul(
                &mut o,
                View {
                    data: &s,
                    rs: t,
                    cs: 1,
                },
                v,
                t,
                dh,
                t,
                1.0,
                false,
            );
            (n, h, o)
        })
        .collect();
    let mut out = vec![0f32; b * t * d];
    for (n, h, o) in per_head {
        for (i, row) in o.chunks(dh).enumerate() {
            out[(n * t + i) * d + h * dh..][..dh].copy_from_slice(row);
        }
    }
    out
}
