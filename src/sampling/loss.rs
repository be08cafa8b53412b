//! The training loss of `Transport.training_losses` (transport/transport.py) at given times and
//! noise: x_t and the target on the path, then each sample's mean squared error of the model's
//! output (loss weight none). The validation loss evaluates it on held-out latents.

use anyhow::{ensure, Result};

use super::path::PathType;
use super::Prediction;

/// `path_sampler.plan(t, x0, x1)`: x_t = α_t·x1 + σ_t·x0 and u_t = α'_t·x1 + σ'_t·x0, for
/// samples of `x1.len() / t.len()` values each (noise x0, data x1), in f32 as the reference
/// evaluates them.
pub fn plan(path: PathType, t: &[f32], x0: &[f32], x1: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
    let per = per_sample(t, x1)?;
    ensure!(
        x0.len() == x1.len(),
        "plan: {} noise values for {} data values",
        x0.len(),
        x1.len()
    );
    let (mut xt, mut ut) = (Vec::with_capacity(x1.len()), Vec::with_capacity(x1.len()));
    for ((&t, a), b) in t.iter().zip(x1.chunks_exact(per)).zip(x0.chunks_exact(per)) {
        let ((alpha, d_alpha), (sigma, d_sigma)) = (path.alpha(t), path.sigma(t));
        for (&x1, &x0) in a.iter().zip(b) {
            xt.push(alpha * x1 + sigma * x0);
            ut.push(d_alpha * x1 + d_sigma * x0);
        }
    }
    Ok((xt, ut))
}

/// Each sample's loss for the model's `output` at x_t: the mean of (output − u_t)² for a
/// velocity model, (output − x0)² for a noise model, (output·σ_t + x0)² for a score model; the
/// squares in f32 as the reference takes them, their mean in f64.
pub fn loss(
    path: PathType,
    prediction: Prediction,
    t: &[f32],
    x0: &[f32],
    ut: &[f32],
    output: &[f32],
) -> Result<Vec<f64>> {
    let per = per_sample(t, output)?;
    ensure!(
        x0.len() == output.len() && ut.len() == output.len(),
        "loss: {} outputs for {} targets",
        output.len(),
        ut.len()
    );
    let rows = output
        .chunks_exact(per)
        .zip(x0.chunks_exact(per))
        .zip(ut.chunks_exact(per));
    Ok(rows
        .zip(t)
        .map(|(((o, x0), u), &t)| {
            let sigma = path.sigma(t).0;
            let sq = |d: f32| f64::from(d * d);
            let sum: f64 = match prediction {
                Prediction::Velocity => o.iter().zip(u).map(|(o, u)| sq(o - u)).sum(),
                Prediction::Noise => o.iter().zip(x0).map(|(o, z)| sq(o - z)).sum(),
                Prediction::Score => o.iter().zip(x0).map(|(o, z)| sq(o * sigma + z)).sum(),
            };
            sum / per as f64
        })
        .collect())
}

fn per_sample(t: &[f32], x: &[f32]) -> Result<usize> {
    ensure!(
        !t.is_empty() && x.len().is_multiple_of(t.len()),
        "{} values for {} samples",
        x.len(),
        t.len()
    );
    Ok(x.len() / t.len())
}
