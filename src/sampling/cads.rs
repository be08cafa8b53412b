//! Condition-annealed sampling (CADS, Sadat et al. ICLR 2024, Algorithm 1): the class embedding
//! fed to the conditional prediction is blended with Gaussian noise early in sampling,
//!
//! ```text
//! ŷ = √γ(τ)·y + s·√(1 − γ(τ))·n,   γ(τ) = 1 (τ ≤ τ₁), (τ₂ − τ)/(τ₂ − τ₁) (τ₁ < τ < τ₂), 0 (τ ≥ τ₂)
//! ŷ ← ψ·((ŷ − mean ŷ)/std ŷ·std y + mean y) + (1 − ψ)·ŷ        (rescaling; ψ = 0 skips it)
//! ```
//!
//! in the paper's time τ = 1 − t (τ = 1 is noise; SiT's t = 0 is noise). Mean and standard
//! deviation (unbiased, as `torch.std`) run over each sample's embedding; the arithmetic is f64,
//! rounded to f32 once. The noise n is a function of (seed, sample, t) (see `rng`), so the
//! annealed velocity is a function of (x, t) like the model's, whatever the solver.

use serde::Serialize;

use crate::rng;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CadsParams {
    /// τ₁: below it (late in sampling) the condition is clean.
    pub tau1: f64,
    /// τ₂: above it (early in sampling) the condition is noise alone.
    pub tau2: f64,
    /// s: the noise scale.
    pub noise_scale: f64,
    /// ψ: how much of the rescaled embedding to keep; 0 skips the rescaling.
    pub psi: f64,
}

impl CadsParams {
    /// γ at SiT time t.
    pub fn gamma(&self, t: f32) -> f64 {
        let tau = 1.0 - t as f64;
        let (t1, t2) = (self.tau1, self.tau2);
        if tau <= t1 {
            1.0
        } else if tau >= t2 {
            0.0
        } else {
            (t2 - tau) / (t2 - t1)
        }
    }

    /// The annealed embeddings (n, D) at SiT time t from the clean ones `y` (n, D) and the noise
    /// `noise` (n, D).
    pub fn anneal(&self, y: &[f32], noise: &[f32], d: usize, t: f32) -> Vec<f32> {
        let g = self.gamma(t);
        let (a, b) = (g.sqrt(), self.noise_scale * (1.0 - g).sqrt());
        let psi = self.psi;
        let mut out = Vec::with_capacity(y.len());
        for (y, n) in y.chunks_exact(d).zip(noise.chunks_exact(d)) {
            let yh: Vec<f64> = y
                .iter()
                .zip(n)
                .map(|(&y, &n)| a * y as f64 + b * n as f64)
                .collect();
            if psi == 0.0 {
                out.extend(yh.iter().map(|&v| v as f32));
                continue;
            }
            let y64: Vec<f64> = y.iter().map(|&v| v as f64).collect();
            let (my, sy) = mean_std(&y64);
            let (mh, sh) = mean_std(&yh);
            out.extend(yh.iter().map(|&v| {
                let rescaled = (v - mh) / sh * sy + my;
                (psi * rescaled + (1.0 - psi) * v) as f32
            }));
        }
        out
    }

    /// The noise of sample `index` at SiT time t: D standard normals of the CADS stream, drawn
    /// by t's bit pattern.
    pub fn noise(seed: u64, index: u64, t: f32, d: usize) -> Vec<f32> {
        rng::gaussian(seed, index, t.to_bits(), rng::STREAM_CADS, d)
    }
}

/// Mean and unbiased standard deviation.
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}
