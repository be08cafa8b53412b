//! CMMD (Jayasumana et al. 2024, "Rethinking FID"): the biased MMD² with a Gaussian RBF kernel
//! between CLIP embeddings of the samples and of the reference, scaled by 1000:
//!
//!   k(a, b) = exp(−γ (‖a‖² + ‖b‖² − 2⟨a, b⟩)),  γ = 1/(2σ²),  σ = 10
//!   CMMD = 1000 · (mean k(xᵢ, xⱼ) + mean k(yᵢ, yⱼ) − 2 mean k(xᵢ, yⱼ))
//!
//! every mean over all pairs, the diagonals included. Kernel values are summed in f64, row by
//! row, without holding an n × m matrix; each row's sum runs over the other set in ascending
//! order and the row sums are added in ascending order, so the value does not depend on the
//! thread count.

use anyhow::{ensure, Result};
use rayon::prelude::*;

/// The kernel bandwidth σ of the paper.
pub const SIGMA: f64 = 10.0;
/// The paper reports MMD² × 1000.
pub const SCALE: f64 = 1000.0;

/// Rows of `a` handled by one task: each task reads the other set once per block.
const ROW_BLOCK: usize = 32;

/// ⟨a, b⟩ in f64 with four interleaved partial sums (a fixed order, so deterministic).
fn dot(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (p, q) in ca.zip(cb) {
        for ((s, &u), &v) in acc.iter_mut().zip(p).zip(q) {
            *s += u as f64 * v as f64;
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(&p, &q)| p as f64 * q as f64).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Σᵢⱼ k(aᵢ, bⱼ) over every row pair of a (·, d) and b (·, d), given their squared norms.
fn kernel_sum(a: &[f32], na: &[f64], b: &[f32], nb: &[f64], d: usize) -> f64 {
    let gamma = 1.0 / (2.0 * SIGMA * SIGMA);
    let row_sums: Vec<f64> = a
        .par_chunks(ROW_BLOCK * d)
        .zip(na.par_chunks(ROW_BLOCK))
        .flat_map_iter(|(rows, norms)| {
            let mut sums = vec![0f64; norms.len()];
            // j outermost: row bⱼ is read once per block; each row's sum still runs j = 0, 1, …
            for (y, &ny) in b.chunks_exact(d).zip(nb) {
                for ((s, x), &nx) in sums.iter_mut().zip(rows.chunks_exact(d)).zip(norms) {
                    *s += (-gamma * (nx + ny - 2.0 * dot(x, y))).exp();
                }
            }
            sums
        })
        .collect(); // (N,)
    row_sums.iter().sum()
}

fn squared_norms(x: &[f32], d: usize) -> Vec<f64> {
    x.par_chunks(d).map(|r| dot(r, r)).collect()
}

/// CMMD of sample rows `x` (n, d) against reference rows `y` (m, d), both row-major f32.
pub fn cmmd(x: &[f32], y: &[f32], d: usize) -> Result<f64> {
    ensure!(d > 0, "CMMD: feature width 0");
    ensure!(
        x.len().is_multiple_of(d) && y.len().is_multiple_of(d),
        "CMMD: {} sample values and {} reference values are not rows of width {d}",
        x.len(),
        y.len()
    );
    let (n, m) = (x.len() / d, y.len() / d);
    ensure!(
        n >= 1 && m >= 1,
        "CMMD needs at least one sample and one reference row (got {n} and {m})"
    );
    let (nx, ny) = (squared_norms(x, d), squared_norms(y, d));
    let kxx = kernel_sum(x, &nx, x, &nx, d) / (n as f64 * n as f64);
    let kyy = kernel_sum(y, &ny, y, &ny, d) / (m as f64 * m as f64);
    let kxy = kernel_sum(x, &nx, y, &ny, d) / (n as f64 * m as f64);
    Ok(SCALE * (kxx + kyy - 2.0 * kxy))
}
