//! Percentile bootstrap intervals: a statistic recomputed on resamples (with replacement) of the
//! images, drawn from Philox with a recorded seed, so an interval is the same bits on every run.
//! Resampling is stratified by class when labels are given, so every class keeps its size (and
//! intra-class statistics stay defined).

use anyhow::{ensure, Result};
use serde::Serialize;

use crate::rng;

/// An estimate with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The statistic on the full set.
    pub estimate: f64,
    /// Percentile interval of the resampled statistic at `level`.
    pub lo: f64,
    pub hi: f64,
    /// Mean of the resampled statistic minus the estimate: large for biased estimators (FID, pair
    /// means with duplicated resamples), which the percentile interval does not correct.
    pub bias: f64,
    pub level: f64,
    pub reps: usize,
}

/// The `q` quantile of sorted values, linearly interpolated (numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < sorted.len() {
        sorted[i] + frac * (sorted[i + 1] - sorted[i])
    } else {
        sorted[i]
    }
}

/// Resample `r` of n items: within each stratum (label) when `strata` is given, else over all.
/// Item k of resample r draws counter r·n + k of the bootstrap stream.
pub fn resample(n: usize, strata: Option<&[i64]>, seed: u64, r: usize) -> Vec<usize> {
    let base = (r * n) as u64;
    match strata {
        None => (0..n)
            .map(|k| rng::below(seed, base + k as u64, rng::STREAM_BOOTSTRAP, n))
            .collect(),
        Some(labels) => {
            let mut groups: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
            for (i, &l) in labels.iter().enumerate() {
                groups.entry(l).or_default().push(i);
            }
            let mut out = vec![0; n];
            // Each item is replaced by a draw from its own class, in place.
            for members in groups.values() {
                for &i in members {
                    let k = rng::below(seed, base + i as u64, rng::STREAM_BOOTSTRAP, members.len());
                    out[i] = members[k];
                }
            }
            out
        }
    }
}

/// The percentile interval of `stat` over `reps` resamples of n items.
pub fn bootstrap(
    n: usize,
    strata: Option<&[i64]>,
    reps: usize,
    level: f64,
    seed: u64,
    stat: impl Fn(&[usize]) -> Result<f64>,
) -> Result<Interval> {
    ensure!(
        n >= 1 && reps >= 2,
        "bootstrap: need items and at least 2 resamples"
    );
    ensure!(
        level > 0.0 && level < 1.0,
        "bootstrap: level {level} outside (0, 1)"
    );
    ensure!(
        strata.is_none_or(|s| s.len() == n),
        "bootstrap: {n} items but other strata"
    );
    let all: Vec<usize> = (0..n).collect();
    let estimate = stat(&all)?;
    let mut boot = Vec::with_capacity(reps);
    for r in 0..reps {
        let v = stat(&resample(n, strata, seed, r))?;
        if v.is_finite() {
            boot.push(v);
        }
    }
    ensure!(
        boot.len() >= 2,
        "bootstrap: fewer than 2 resamples gave a finite value"
    );
    boot.sort_by(f64::total_cmp);
    let mean = boot.iter().sum::<f64>() / boot.len() as f64;
    Ok(Interval {
        estimate,
        lo: quantile(&boot, (1.0 - level) / 2.0),
        hi: quantile(&boot, (1.0 + level) / 2.0),
        bias: mean - estimate,
        level,
        reps: boot.len(),
    })
}
