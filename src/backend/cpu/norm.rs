//! LayerNorm (plain and affine), the adaLN modulate and GroupNorm.

use rayon::prelude::*;

use super::math;

/// `F.layer_norm(x, (D,), eps)` with no weight or bias: mean and biased variance per row, both
/// accumulated in f64 over interleaved partial sums ([`math::mean_var_f64`]).
pub fn layer_norm(x: &[f32], d: usize, eps: f32) -> Vec<f32> {
    // No rows, or rows of no features (D = 0, where rayon refuses chunks of 0).
    if x.is_empty() {
        return Vec::new();
    }
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .for_each(|(o, r)| {
            let (mean, var) = math::simd(|| math::mean_var_f64(r));
            let rstd = 1.0 / (var + eps as f64).sqrt();
            for (o, &v) in o.iter_mut().zip(r) {
                *o = ((v as f64 - mean) * rstd) as f32;
            }
        });
    out
}

/// `F.layer_norm(x, (D,), gamma, beta, eps)`: statistics in f64 as in [`layer_norm`], then
/// `x̂·γ + β` in f32.
pub fn layer_norm_affine(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
    let d = gamma.len();
    let mut out = layer_norm(x, d, eps);
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(d).for_each(|r| {
        for ((v, &g), &b) in r.iter_mut().zip(gamma).zip(beta) {
            *v = *v * g + b;
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
    // T = 0 or D = 0: nothing to modulate (and rayon refuses chunks of 0).
    if x.is_empty() {
        return;
    }
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

/// `x += gate[b] ⊙ y` (when `y` is given), then `layer_norm(x)·(1 + scale[b]) + shift[b]` into a
/// new buffer, one pass per row: the fused end of one adaLN branch and input of the next, with
/// the bits of [`crate::backend::cpu::elementwise::gated_add`], [`layer_norm`] and [`modulate`].
#[allow(clippy::too_many_arguments)]
pub fn gated_add_layer_norm_modulate<'a>(
    x: &mut [f32],
    y: Option<(&[f32], &(dyn Fn(usize) -> &'a [f32] + Sync))>,
    shift: impl Fn(usize) -> &'a [f32] + Sync,
    scale: impl Fn(usize) -> &'a [f32] + Sync,
    t: usize,
    d: usize,
    eps: f32,
) -> Vec<f32> {
    if x.is_empty() {
        return Vec::new();
    }
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(d)
        .zip(x.par_chunks_mut(d))
        .enumerate()
        .with_min_len(16)
        .for_each(|(row, (o, xr))| {
            let b = row / t;
            if let Some((y, gate)) = y {
                for ((a, &v), &g) in xr.iter_mut().zip(&y[row * d..][..d]).zip(gate(b)) {
                    *a += g * v;
                }
            }
            let (mean, var) = math::simd(|| math::mean_var_f64(xr));
            let rstd = 1.0 / (var + eps as f64).sqrt();
            for (((o, &v), &sc), &sh) in o.iter_mut().zip(xr.iter()).zip(scale(b)).zip(shift(b)) {
                *o = ((v as f64 - mean) * rstd) as f32 * (1.0 + sc) + sh;
            }
        });
    out
}

/// `F.group_norm(x, groups, gamma, beta, eps)` for x (N, C, HW), statistics per (sample, group)
/// in f64, optionally followed by SiLU with the vectorisable [`math::exp`] (the decoder applies
/// one after all its norms but one).
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    c: usize,
    hw: usize,
    groups: usize,
    eps: f32,
    silu: bool,
) -> Vec<f32> {
    let cg = c / groups;
    // C = 0 or HW = 0 leaves groups of no values (and rayon refuses chunks of 0).
    if x.is_empty() {
        return Vec::new();
    }
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(cg * hw)
        .zip(x.par_chunks(cg * hw))
        .enumerate()
        .for_each(|(ng, (yo, xi))| {
            let g = ng % groups;
            let (mean, var) = math::simd(|| math::mean_var_f64(xi));
            let rstd = 1.0 / (var + eps as f64).sqrt();
            for (cc, (yr, xr)) in yo.chunks_mut(hw).zip(xi.chunks(hw)).enumerate() {
                let ch = g * cg + cc;
                let (ga, be) = (gamma[ch], beta[ch]);
                math::simd(|| {
                    for (o, &v) in yr.iter_mut().zip(xr) {
                        let z = ((v as f64 - mean) * rstd) as f32 * ga + be;
                        *o = if silu { z / (1.0 + math::exp(-z)) } else { z };
                    }
                })
            }
        });
    y
}
