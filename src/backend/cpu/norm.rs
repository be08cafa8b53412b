//! LayerNorm without affine parameters and the adaLN modulate.

use rayon::prelude::*;

/// `F.layer_norm(x, (D,), eps)` with no weight or bias: mean and biased variance per row, both
/// accumulated in f64.
pub fn layer_norm(x: &[f32], d: usize, eps: f32) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .for_each(|(o, r)| {
            let mean = r.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            let rstd = 1.0 / (var + eps as f64).sqrt();
            for (o, &v) in o.iter_mut().zip(r) {
                *o = ((v as f64 - mean) * rstd) as f32;
            }
        });
    out
}

/// `x * (1 + scale[b]) + shift[b]` in place for x (B, T, D); `shift(b)` / `scale(b)` give row b.
pub fn modulate<'a>(
    x: &mut [f32],
    shift: impl Fn(usize) -> &'a [f32] + Sync,
    scale: impl Fn(usize) -> &'a [f32] + Sync,
    t: usize,
    d: usize,
) {
    x.par_chunks_mut(t * d).enumerate().for_each(|(b, xb)| {
        let (sh, sc) = (shift(b), scale(b));
        let one_plus: Vec<f32> = sc.iter().map(|&s| 1.0 + s).collect();
        for row in xb.chunks_mut(d) {
            for ((v, &k), &s) in row.iter_mut().zip(&one_plus).zip(sh) {
                *v = *v * k + s;
            }
        }
    });
}
