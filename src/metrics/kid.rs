//! Kernel Inception Distance: the unbiased MMD² with the cubic polynomial kernel
//! k(x, y) = (xᵀy / d + 1)³, averaged over random subsets (chosen from the seed).

use anyhow::{ensure, Result};

use crate::rng;

fn kernel_sums(a: &[&[f32]], b: &[&[f32]], d: usize, same: bool) -> f64 {
    let mut s = 0.0;
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            if same && i == j {
                continue;
            }
            let dot: f64 = x
                .iter()
                .zip(y.iter())
                .map(|(&p, &q)| p as f64 * q as f64)
                .sum();
            s += (dot / d as f64 + 1.0).powi(3);
        }
    }
    s
}

/// Unbiased MMD² between two equal-size sets of rows.
pub fn mmd2(x: &[&[f32]], y: &[&[f32]], d: usize) -> f64 {
    let m = x.len() as f64;
    kernel_sums(x, x, d, true) / (m * (m - 1.0)) + kernel_sums(y, y, d, true) / (m * (m - 1.0))
        - 2.0 * kernel_sums(x, y, d, false) / (m * m)
}

/// `subset_size` distinct rows out of `n`, a pure function of (seed, subset): a partial
/// Fisher–Yates shuffle driven by the counter-based generator.
fn subset(seed: u64, s: usize, n: usize, size: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..size {
        let r = rng::label(seed, (s * n + i) as u64, n - i) as usize;
        idx.swap(i, i + r);
    }
    idx.truncate(size);
    idx
}

/// (mean, std) of the MMD² over `subsets` subsets of `subset_size` rows of each set.
pub fn kid(
    real: &[f32],
    fake: &[f32],
    d: usize,
    subsets: usize,
    subset_size: usize,
    seed: u64,
) -> Result<(f64, f64)> {
    ensure!(
        d > 0 && real.len().is_multiple_of(d) && fake.len().is_multiple_of(d),
        "KID: features are not rows of width {d}"
    );
    let (nr, nf) = (real.len() / d, fake.len() / d);
    ensure!(subsets > 0, "--kid-subsets must be at least 1");
    ensure!(
        subset_size >= 2 && subset_size <= nr.min(nf),
        "--kid-subset-size {subset_size} must lie in 2..={} (the smaller set)",
        nr.min(nf)
    );
    let (r, f): (Vec<&[f32]>, Vec<&[f32]>) = (real.chunks(d).collect(), fake.chunks(d).collect());
    use rayon::prelude::*;
    let vals: Vec<f64> = (0..subsets)
        .into_par_iter()
        .map(|s| {
            let fs: Vec<&[f32]> = subset(seed ^ 0x6b69_6466, s, nf, subset_size)
                .into_iter()
                .map(|i| f[i])
                .collect();
            let rs: Vec<&[f32]> = subset(seed ^ 0x6b69_6472, s, nr, subset_size)
                .into_iter()
                .map(|i| r[i])
                .collect();
            mmd2(&fs, &rs, d)
        })
        .collect();
    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
    let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
    Ok((mean, var.sqrt()))
}
