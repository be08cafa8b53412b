//! 2-D convolution (any kernel size, stride and zero padding) as tiled im2col + GEMM, with an
//! optional fused ReLU; nearest upsampling.

use rayon::prelude::*;

use super::gemm::{matmul, View};
use crate::backend::{Nchw, Window};

/// Output pixels per tile: each tile builds its own im2col block, so memory stays bounded at any
/// resolution. Tiles depend on the shape alone, so the bits do not depend on the thread count.
const TILE: usize = 2048;
/// Output channels per job on maps smaller than one tile: late, small layers then still spread
/// over every core. Like the pixel tiles, this depends on the shape alone.
const CO_TILE: usize = 64;

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tiles write disjoint column ranges of the output (see `conv2d`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// `F.conv2d(x, w, b, stride, padding)` (+ ReLU): x (N, Ci, H, W), w (Co, Ci, kh, kw), b (Co) →
/// (N, Co, H', W'). The caller has checked that the window fits (`Window::output`).
pub fn conv2d(
    x: &[f32],
    d: Nchw,
    w: &[f32],
    b: &[f32],
    co: usize,
    win: Window,
    relu: bool,
) -> Vec<f32> {
    let Some((ho, wo)) = win.output(d.h, d.w) else {
        return Vec::new();
    };
    let (kk, hw) = (d.c * win.kh * win.kw, ho * wo);
    // No samples or no output channels: nothing to tile (Co = 0 would make a tile of 0 channels).
    if d.n * co * hw == 0 {
        return Vec::new();
    }
    // A 1×1 stride-1 unpadded convolution reads its input as the GEMM operand directly.
    let pointwise = win == Window::square(1, 1, 0);
    let mut y: Vec<f32> = Vec::with_capacity(d.n * co * hw);
    let out = OutPtr(y.as_mut_ptr());
    let tiles = hw.div_ceil(TILE);
    let co_tile = if hw >= TILE { co } else { CO_TILE.min(co) };
    let co_tiles = co.div_ceil(co_tile);
    (0..d.n * tiles * co_tiles).into_par_iter().for_each(|job| {
        #[allow(clippy::redundant_locals)]
        let out = out;
        let (s, t, ct) = (
            job / (tiles * co_tiles),
            job / co_tiles % tiles,
            job % co_tiles,
        );
        let (p0, p1) = (t * TILE, ((t + 1) * TILE).min(hw));
        let (o0, o1) = (ct * co_tile, ((ct + 1) * co_tile).min(co));
        let cols_n = p1 - p0;
        let xs = &x[s * d.c * d.h * d.w..(s + 1) * d.c * d.h * d.w];
        let cols;
        let rhs = if pointwise {
            View {
                data: &xs[p0..],
                rs: hw,
                cs: 1,
            }
        } else {
            cols = im2col(xs, d, win, wo, p0, p1);
            View {
                data: &cols,
                rs: cols_n,
                cs: 1,
            }
        };
        // (o1 − o0, cols_n) = w[o0..o1] (·, kk) · cols (kk, cols_n): channels o0..o1, columns
        // p0..p1 of sample s.
        let mut tile = vec![0f32; (o1 - o0) * cols_n];
        for (o, row) in tile.chunks_mut(cols_n).enumerate() {
            row.fill(b[o0 + o]);
        }
        matmul(
            &mut tile,
            true,
            View {
                data: &w[o0 * kk..],
                rs: kk,
                cs: 1,
            },
            rhs,
            o1 - o0,
            cols_n,
            kk,
            1.0,
            false,
        );
        if relu {
            // `v < 0` keeps NaN, as torch.relu does.
            tile.iter_mut().filter(|v| **v < 0.0).for_each(|v| *v = 0.0);
        }
        for (o, row) in tile.chunks(cols_n).enumerate() {
            // SAFETY: sample s, channel o0 + o, pixels p0..p1 belong to this job alone; the
            // capacity covers N·Co·HW.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    row.as_ptr(),
                    out.0.add((s * co + o0 + o) * hw + p0),
                    cols_n,
                )
            };
        }
    });
    // SAFETY: the tiles wrote every element.
    unsafe { y.set_len(d.n * co * hw) };
    y
}

/// The im2col block (Ci·kh·kw, p1 − p0) of one sample's output pixels p0..p1, rows ordered
/// (c, ky, kx) like the weight, zeros where the window reads padding. Filled one output-row span
/// at a time.
fn im2col(xs: &[f32], d: Nchw, win: Window, wo: usize, p0: usize, p1: usize) -> Vec<f32> {
    let (kh, kw, st) = (win.kh, win.kw, win.stride);
    let cols_n = p1 - p0;
    let mut cols = vec![0f32; d.c * kh * kw * cols_n];
    let mut p = p0;
    while p < p1 {
        let (oy, ox0) = (p / wo, p % wo);
        let span = (wo - ox0).min(p1 - p);
        let at = p - p0;
        for c in 0..d.c {
            for ky in 0..kh {
                let iy = (oy * st + ky) as isize - win.ph as isize;
                if iy < 0 || iy as usize >= d.h {
                    continue;
                }
                let src_row = &xs[(c * d.h + iy as usize) * d.w..][..d.w];
                for kx in 0..kw {
                    let dst = &mut cols[((c * kh + ky) * kw + kx) * cols_n + at..][..span];
                    if st == 1 {
                        // ix = ox + kx − pw must lie in 0..W: one contiguous copy.
                        let lo = win.pw.saturating_sub(ox0 + kx).min(span);
                        let hi = (d.w + win.pw).saturating_sub(ox0 + kx).min(span).max(lo);
                        // A span entirely in the padding (narrow maps) copies nothing.
                        if hi > lo {
                            let ix0 = ox0 + lo + kx - win.pw;
                            dst[lo..hi].copy_from_slice(&src_row[ix0..ix0 + (hi - lo)]);
                        }
                    } else {
                        for (j, v) in dst.iter_mut().enumerate() {
                            let ix = ((ox0 + j) * st + kx) as isize - win.pw as isize;
                            if ix >= 0 && (ix as usize) < d.w {
                                *v = src_row[ix as usize];
                            }
                        }
                    }
                }
            }
        }
        p += span;
    }
    cols
}

/// `F.interpolate(x, scale_factor=2, mode='nearest')`: (N, C, H, W) → (N, C, 2H, 2W).
pub fn upsample_nearest2x(x: &[f32], nc: usize, h: usize, w: usize) -> Vec<f32> {
    // H = 0 or W = 0: maps of nothing (and rayon refuses chunks of 0).
    if nc * h * w == 0 {
        return Vec::new();
    }
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
