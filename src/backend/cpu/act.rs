//! Activations: SiLU, tanh-GELU, exact (erf) GELU, CLIP's quick GELU and ReLU.

use rayon::prelude::*;

use super::math;

const CHUNK: usize = 1 << 14;

/// `F.silu(x)`: x / (1 + e^-x).
pub fn silu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| v / (1.0 + (-v).exp())).collect()
}

/// `F.gelu(x, approximate='tanh')` in place, with PyTorch's operation order:
/// `0.5·x·(1 + tanh(√2·(2/√π)·0.5·(x + 0.044715·x³)))`.
pub fn gelu_tanh(x: &mut [f32]) {
    x.par_chunks_mut(CHUNK).for_each(gelu_tanh_run);
}

/// [`gelu_tanh`] on the calling thread (a product's epilogue).
pub fn gelu_tanh_run(x: &mut [f32]) {
    const BETA: f32 = (std::f64::consts::SQRT_2 * std::f64::consts::FRAC_2_SQRT_PI * 0.5) as f32;
    const KAPPA: f32 = 0.044715;
    math::simd(|| {
        for v in x.iter_mut() {
            let x = *v;
            let inner = BETA * (x + KAPPA * (x * x * x));
            *v = 0.5 * x * (1.0 + math::tanh(inner));
        }
    })
}

/// `F.gelu(x)` (exact) in place: 0.5·x·(1 + erf(x/√2)), evaluated in f64 and rounded
/// ([`math::gelu_erf`]).
pub fn gelu_erf(x: &mut [f32]) {
    x.par_chunks_mut(CHUNK).for_each(gelu_erf_run);
}

/// [`gelu_erf`] on the calling thread.
pub fn gelu_erf_run(x: &mut [f32]) {
    math::gelu_erf(x)
}

/// CLIP's `quick_gelu` in place: x·sigmoid(1.702·x), in f32 as PyTorch evaluates it, with the
/// vectorisable [`math::exp`] (within 2 ulp).
pub fn quick_gelu(x: &mut [f32]) {
    x.par_chunks_mut(CHUNK).for_each(quick_gelu_run);
}

/// [`quick_gelu`] on the calling thread.
pub fn quick_gelu_run(x: &mut [f32]) {
    math::simd(|| {
        for v in x.iter_mut() {
            let x = *v;
            *v = x * (1.0 / (1.0 + math::exp(-(1.702f32 * x))));
        }
    })
}

/// `F.relu(x)` in place; `v < 0` keeps NaN, as torch.relu does.
pub fn relu(x: &mut [f32]) {
    x.par_chunks_mut(CHUNK).for_each(|c| {
        c.iter_mut().filter(|v| **v < 0.0).for_each(|v| *v = 0.0);
    });
}

/// `v` in TF32 as `cvt.rna.tf32.f32` rounds: 10 mantissa bits, nearest with ties away from zero;
/// ±∞ and NaN kept.
pub fn tf32(v: f32) -> f32 {
    let u = v.to_bits();
    if u & 0x7f80_0000 == 0x7f80_0000 {
        return v;
    }
    f32::from_bits(u.wrapping_add(0x1000) & 0xffff_e000)
}

/// Which operand of a 3xTF32 product a split matrix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Rows [hi | hi | lo].
    Left,
    /// Rows [hi | lo | hi].
    Right,
}

/// Rows of `k` values (`x` is (R, k)) as (R, 3k): the TF32 parts of each value, hi = tf32(v) and
/// lo = tf32(v − hi), laid out so that one TF32 product of a left and a right split over 3k sums
/// hi·hi + hi·lo + lo·hi. The CPU twin of kernels/act.cu `split_tf32` (the left side); the right
/// side is how a GPU stores the weights of its 3xTF32 products.
pub fn split_tf32(x: &[f32], k: usize, side: Side) -> Vec<f32> {
    let mut y = vec![0f32; x.len() * 3];
    if k == 0 {
        return y;
    }
    for (row, out) in x.chunks(k).zip(y.chunks_mut(3 * k)) {
        let (a, rest) = out.split_at_mut(k);
        let (b, c) = rest.split_at_mut(k);
        for (j, &v) in row.iter().enumerate() {
            let hi = tf32(v);
            // ±∞ and NaN are all hi (v − hi would be NaN for ∞).
            let lo = if hi.is_finite() { tf32(v - hi) } else { 0.0 };
            a[j] = hi;
            (b[j], c[j]) = match side {
                Side::Left => (hi, lo),
                Side::Right => (lo, hi),
            };
        }
    }
    y
}
