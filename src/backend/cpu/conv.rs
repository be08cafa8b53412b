//! 2-D convolution (stride 1, zero padding) as tiled im2col + GEMM, and nearest upsampling.

use rayon::prelude::*;

use super::gemm::{matmul, View};

/// Output pixels per tile: each tile builds its own im2col block, so memory stays bounded at any
/// resolution. Tiles depend on the shape alone, so the bits do not depend on the thread count.
const TILE: usize = 2048;

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tiles write disjoint column ranges of the output (see `conv2d`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// `F.conv2d(x, w, b, stride=1, padding=pad)`: x (N, Ci, H, W), w (Co, Ci, k, k), b (Co) →
/// (N, Co, H', W') with H' = H + 2·pad − k + 1.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    n: usize,
    ci: usize,
    h: usize,
    wd: usize,
    co: usize,
    k: usize,
    pad: usize,
) -> Vec<f32> {
    let (ho, wo) = (h + 2 * pad + 1 - k, wd + 2 * pad + 1 - k);
    let (kk, hw) = (ci * k * k, ho * wo);
    let mut y: Vec<f32> = Vec::with_capacity(n * co * hw);
    let out = OutPtr(y.as_mut_ptr());
    let tiles = hw.div_ceil(TILE);
    (0..n * tiles).into_par_iter().for_each(|job| {
        #[allow(clippy::redundant_locals)]
        let out = out;
        let (s, t) = (job / tiles, job % tiles);
        let (p0, p1) = (t * TILE, ((t + 1) * TILE).min(hw));
        let cols_n = p1 - p0;
        let xs = &x[s * ci * h * wd..(s + 1) * ci * h * wd];
        // im2col block (Ci·k·k, cols_n), rows ordered (c, ky, kx) like the weight; filled one
        // output-row span at a time (a contiguous input span, zero borders).
        let mut cols = vec![0f32; kk * cols_n];
        let mut p = p0;
        while p < p1 {
            let (oy, ox0) = (p / wo, p % wo);
            let span = (wo - ox0).min(p1 - p);
            let at = p - p0;
            for c in 0..ci {
                for ky in 0..k {
                    let iy = (oy + ky) as isize - pad as isize;
                    if iy < 0 || iy as usize >= h {
                        continue;
                    }
                    let src_row = &xs[(c * h + iy as usize) * wd..][..wd];
                    for kx in 0..k {
                        let dst = &mut cols[((c * k + ky) * k + kx) * cols_n + at..][..span];
                        // ix = ox + kx − pad must lie in 0..wd.
                        let lo = pad.saturating_sub(ox0 + kx).min(span);
                        let hi = (wd + pad).saturating_sub(ox0 + kx).min(span).max(lo);
                        let ix0 = ox0 + lo + kx - pad;
                        dst[lo..hi].copy_from_slice(&src_row[ix0..ix0 + (hi - lo)]);
                    }
                }
            }
            p += span;
        }
        // (Co, cols_n) = w (Co, kk) · cols (kk, cols_n), written into columns p0..p1 of sample s.
        let mut tile = vec![0f32; co * cols_n];
        for (o, row) in tile.chunks_mut(cols_n).enumerate() {
            row.fill(b[o]);
        }
        matmul(
            &mut tile,
            true,
            View {
                data: w,
                rs: kk,
                cs: 1,
            },
            View {
                data: &cols,
                rs: cols_n,
                cs: 1,
            },
            co,
            cols_n,
            kk,
            1.0,
            false,
        );
        for (o, row) in tile.chunks(cols_n).enumerate() {
            // SAFETY: sample s, channel o, pixels p0..p1 belong to this tile alone; capacity covers N·Co·HW.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    row.as_ptr(),
                    out.0.add((s * co + o) * hw + p0),
                    cols_n,
                )
            };
        }
    });
    // SAFETY: the tiles wrote every element.
    unsafe { y.set_len(n * co * hw) };
    y
}

/// `F.interpolate(x, scale_factor=2, mode='nearest')`: (N, C, H, W) → (N, C, 2H, 2W).
pub fn upsample_nearest2x(x: &[f32], nc: usize, h: usize, w: usize) -> Vec<f32> {
    let mut y = vec![0f32; nc * 4 * h * w];
    y.par_chunks_mut(4 * h * w)
        .zip(x.par_chunks(h * w))
        .for_each(|(yo, xi)| {
            for oy in 0..2 * h {
                let src = &xi[(oy / 2) * w..][..w];
                let dst = &mut yo[oy * 2 * w..][..2 * w];
                for (ox, v) in dst.iter_mut().enumerate() {
                    *v = src[ox / 2];
                }
            }
        });
    y
}
