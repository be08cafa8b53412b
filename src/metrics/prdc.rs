//! Manifold metrics on feature sets: the ADM evaluator's precision/recall (Kynkäänniemi et al.,
//! k = 3, squared L2, `<=`) and density/coverage (Naeem et al., prdc: k = 5, Euclidean, strict `<`).
//!
//! Distances are exact: f32 dot products (the GEMM), f64 norms, ‖a‖² − 2a·b + ‖b‖² clamped at 0.
//! ADM computes its distance blocks in fp16 first (fp32 only when a block overflows), so its
//! precision/recall can differ from these in the third decimal.

use anyhow::{ensure, Result};
use rayon::prelude::*;

use crate::backend::cpu::gemm::linear;

/// Row blocks of the distance matrices, to bound memory at 50k × 50k.
const BLOCK: usize = 1024;

fn check(name: &str, x: &[f32], d: usize) -> Result<usize> {
    ensure!(
        d > 0 && x.len().is_multiple_of(d),
        "{name}: {} values are not rows of width {d}",
        x.len()
    );
    ensure!(
        x.iter().all(|v| v.is_finite()),
        "{name}: features contain NaN or infinite values"
    );
    Ok(x.len() / d)
}

fn norms(x: &[f32], d: usize) -> Vec<f64> {
    x.chunks(d)
        .map(|r| r.iter().map(|&v| v as f64 * v as f64).sum())
        .collect()
}

/// Calls `f(i, row)` with row i of the squared distances between `a` rows and all `b` rows.
fn for_each_row(a: &[f32], b: &[f32], d: usize, f: impl Fn(usize, &[f64]) + Sync) {
    let (na, nb) = (norms(a, d), norms(b, d));
    let m = b.len() / d;
    a.par_chunks(BLOCK * d).enumerate().for_each(|(blk, ab)| {
        let rows = ab.len() / d;
        let dots = linear(ab, b, None, rows, d, m); // (rows, m) = a·bᵀ
        let mut row = vec![0f64; m];
        for r in 0..rows {
            let i = blk * BLOCK + r;
            for (j, v) in row.iter_mut().enumerate() {
                *v = (na[i] - 2.0 * dots[r * m + j] as f64 + nb[j]).max(0.0);
            }
            f(i, &row);
        }
    });
}

/// The (k+1)-th smallest squared distance from each row to the set itself (index k when sorted,
/// the point itself being index 0): the radius of its k-nearest-neighbour ball.
pub fn radii(x: &[f32], d: usize, k: usize) -> Result<Vec<f64>> {
    let n = check("features", x, d)?;
    ensure!(
        n > k,
        "{n} feature rows; the k = {k} nearest-neighbour radius needs at least {}",
        k + 1
    );
    let out: Vec<std::sync::Mutex<f64>> = (0..n).map(|_| std::sync::Mutex::new(0.0)).collect();
    for_each_row(x, x, d, |i, row| {
        let mut r = row.to_vec();
        r.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
        if let Ok(mut o) = out[i].lock() {
            *o = r[k];
        }
    });
    Ok(out
        .into_iter()
        .map(|m| m.into_inner().unwrap_or(f64::NAN))
        .collect())
}

/// ADM precision and recall of `fake` against `real`, k = 3 by default.
pub fn precision_recall(real: &[f32], fake: &[f32], d: usize, k: usize) -> Result<(f64, f64)> {
    let (nr, nf) = (
        check("reference features", real, d)?,
        check("sample features", fake, d)?,
    );
    let (rr, rf) = (radii(real, d, k)?, radii(fake, d, k)?);
    let fake_in: Vec<std::sync::atomic::AtomicBool> = (0..nf).map(|_| Default::default()).collect();
    let real_in: Vec<std::sync::atomic::AtomicBool> = (0..nr).map(|_| Default::default()).collect();
    use std::sync::atomic::Ordering::Relaxed;
    for_each_row(real, fake, d, |i, row| {
        for (j, &dist) in row.iter().enumerate() {
            if dist <= rr[i] {
                fake_in[j].store(true, Relaxed);
            }
            if dist <= rf[j] {
                real_in[i].store(true, Relaxed);
            }
        }
    });
    let frac = |v: &[std::sync::atomic::AtomicBool]| {
        v.iter().filter(|b| b.load(Relaxed)).count() as f64 / v.len() as f64
    };
    Ok((frac(&fake_in), frac(&real_in)))
}

/// prdc's density and coverage of `fake` against `real` (k = 5 by default).
pub fn density_coverage(real: &[f32], fake: &[f32], d: usize, k: usize) -> Result<(f64, f64)> {
    let (nr, nf) = (
        check("reference features", real, d)?,
        check("sample features", fake, d)?,
    );
    let rr = radii(real, d, k)?;
    let counts: Vec<std::sync::Mutex<(usize, bool)>> =
        (0..nr).map(|_| std::sync::Mutex::new((0, false))).collect();
    for_each_row(real, fake, d, |i, row| {
        // Euclidean distances with strict `<`: compare the square roots, as prdc does.
        let r = rr[i].sqrt();
        let inside = row.iter().filter(|&&dist| dist.sqrt() < r).count();
        let nearest = row.iter().fold(f64::INFINITY, |a, &b| a.min(b)).sqrt();
        if let Ok(mut c) = counts[i].lock() {
            *c = (inside, nearest < r);
        }
    });
    let (mut inside, mut covered) = (0usize, 0usize);
    for c in counts {
        let (a, b) = c.into_inner().unwrap_or((0, false));
        inside += a;
        covered += b as usize;
    }
    Ok((inside as f64 / (k * nf) as f64, covered as f64 / nr as f64))
}
