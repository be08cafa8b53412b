//! Max and average pooling over NCHW maps, and channel concatenation.

use rayon::prelude::*;

use crate::backend::{Nchw, Pool, Window};

/// `F.max_pool2d` / `F.avg_pool2d(count_include_pad=False)`: (N, C, H, W) → (N, C, H', W').
/// The average sums the window's inputs in row-major order in f32 and divides once, as ATen's
/// CPU kernel does. The caller has checked that the window fits (`Window::output`).
pub fn pool2d(x: &[f32], d: Nchw, win: Window, pool: Pool) -> Vec<f32> {
    let Some((ho, wo)) = win.output(d.h, d.w) else {
        return Vec::new();
    };
    let mut y = vec![0f32; d.n * d.c * ho * wo];
    y.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(d.h * d.w))
        .for_each(|(yp, xp)| {
            for oy in 0..ho {
                // The window's rows and columns inside the map.
                let y0 = (oy * win.stride).saturating_sub(win.ph);
                let y1 = (oy * win.stride + win.kh).saturating_sub(win.ph).min(d.h);
                for ox in 0..wo {
                    let x0 = (ox * win.stride).saturating_sub(win.pw);
                    let x1 = (ox * win.stride + win.kw).saturating_sub(win.pw).min(d.w);
                    let rows = (y0..y1).flat_map(|iy| &xp[iy * d.w + x0..iy * d.w + x1]);
                    yp[oy * wo + ox] =
                        match pool {
                            Pool::Max => rows.fold(f32::NEG_INFINITY, |m, &v| {
                                if v > m || v.is_nan() {
                                    v
                                } else {
                                    m
                                }
                            }),
                            Pool::Avg => {
                                let count = ((y1 - y0) * (x1 - x0)) as f32;
                                rows.fold(0f32, |s, &v| s + v) / count
                            }
                        };
                }
            }
        });
    y
}

/// `torch.cat(parts, dim=1)` for parts (N, C_i, HW).
pub fn concat_channels(parts: &[(&[f32], usize)], n: usize, hw: usize) -> Vec<f32> {
    let c: usize = parts.iter().map(|p| p.1).sum();
    let mut y = vec![0f32; n * c * hw];
    // No channels or empty maps (and rayon refuses chunks of 0).
    if y.is_empty() {
        return y;
    }
    y.par_chunks_mut(c * hw).enumerate().for_each(|(s, ys)| {
        let mut at = 0;
        for &(p, ci) in parts {
            ys[at..at + ci * hw].copy_from_slice(&p[s * ci * hw..(s + 1) * ci * hw]);
            at += ci * hw;
        }
    });
    y
}
