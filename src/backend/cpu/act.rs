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
