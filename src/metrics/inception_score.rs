//! Inception Score as the ADM evaluator computes it: softmax of the bias-free logits, split into
//! consecutive chunks (5000 by default, no shuffle), `exp(mean_x KL(p(y|x) ‖ p(y)))` per chunk,
//! averaged over chunks. Here in f64.

use anyhow::{ensure, Result};

/// IS of logits (N, C) in chunks of `split_size` rows.
pub fn inception_score(logits: &[f32], c: usize, split_size: usize) -> Result<f64> {
    ensure!(
        c > 0 && logits.len().is_multiple_of(c) && !logits.is_empty(),
        "logits: {} values are not rows of width {c}",
        logits.len()
    );
    ensure!(split_size > 0, "IS split size must be positive");
    ensure!(
        logits.iter().all(|v| v.is_finite()),
        "logits contain NaN or infinite values"
    );
    let n = logits.len() / c;
    let probs: Vec<f64> = logits
        .chunks(c)
        .flat_map(|row| {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
            let z: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / z)
        })
        .collect();
    let mut scores = Vec::new();
    for start in (0..n).step_by(split_size) {
        let part = &probs[start * c..(start + split_size).min(n) * c];
        let rows = part.len() / c;
        let marginal: Vec<f64> = (0..c)
            .map(|j| part.chunks(c).map(|r| r[j]).sum::<f64>() / rows as f64)
            .collect();
        let kl: f64 = part
            .chunks(c)
            .map(|r| {
                r.iter()
                    .zip(&marginal)
                    .map(|(&p, &q)| if p > 0.0 { p * (p.ln() - q.ln()) } else { 0.0 })
                    .sum::<f64>()
            })
            .sum::<f64>()
            / rows as f64;
        scores.push(kl.exp());
    }
    Ok(scores.iter().sum::<f64>() / scores.len() as f64)
}
