//! The Fréchet distance between two Gaussians, as the ADM evaluator and pytorch-fid define it:
//! ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂).
//!
//! tr √(Σ₁Σ₂) is computed from symmetric eigendecompositions, not a general `sqrtm`:
//! with R = Σ₁^{1/2}, the matrix R Σ₂ R is symmetric positive semi-definite and similar to Σ₁Σ₂,
//! so tr √(Σ₁Σ₂) = Σ √λᵢ(R Σ₂ R). Negative eigenvalues from rounding are clamped to 0.

use anyhow::{ensure, Context, Result};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};

/// A fixed split of the work, whatever the machine: faer's parallel results depend on how many
/// parts the work is cut into, and the distance must be the same bits on every node.
const FID_THREADS: usize = 2;

pub(crate) fn fixed_par() -> Par {
    Par::rayon(FID_THREADS)
}

fn check(name: &str, s: MatRef<'_, f64>, d: usize) -> Result<()> {
    ensure!(
        s.nrows() == d && s.ncols() == d,
        "{name}: covariance is {}×{}, expected {d}×{d}",
        s.nrows(),
        s.ncols()
    );
    for i in 0..d {
        for j in 0..d {
            ensure!(
                s[(i, j)].is_finite(),
                "{name}: covariance has a non-finite entry at ({i}, {j})"
            );
        }
    }
    Ok(())
}

/// Symmetrised copy (Σ + Σᵀ)/2, so rounding asymmetry cannot leak into the eigensolver.
fn symmetric(s: MatRef<'_, f64>) -> Mat<f64> {
    Mat::from_fn(s.nrows(), s.ncols(), |i, j| 0.5 * (s[(i, j)] + s[(j, i)]))
}

/// tr √(Σ₁Σ₂) for symmetric positive semi-definite Σ₁, Σ₂.
pub fn trace_sqrt_product(s1: MatRef<'_, f64>, s2: MatRef<'_, f64>) -> Result<f64> {
    let d = s1.nrows();
    // The eigensolvers take faer's global setting.
    faer::set_global_parallelism(fixed_par());
    let e1 = symmetric(s1)
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| anyhow::anyhow!("eigendecomposition of Σ₁: {e:?}"))?;
    let (u, lam) = (e1.U(), e1.S());
    // R = U diag(√λ) Uᵀ
    let us = Mat::from_fn(d, d, |i, j| u[(i, j)] * lam[j].max(0.0).sqrt());
    let mut r = Mat::<f64>::zeros(d, d);
    matmul(
        r.as_mut(),
        Accum::Replace,
        us.as_ref(),
        u.transpose(),
        1.0,
        fixed_par(),
    );
    let mut t = Mat::<f64>::zeros(d, d);
    matmul(t.as_mut(), Accum::Replace, r.as_ref(), s2, 1.0, fixed_par());
    let mut m = Mat::<f64>::zeros(d, d);
    matmul(
        m.as_mut(),
        Accum::Replace,
        t.as_ref(),
        r.as_ref(),
        1.0,
        fixed_par(),
    );
    let mu = symmetric(m.as_ref())
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| anyhow::anyhow!("eigenvalues of R Σ₂ R: {e:?}"))?;
    Ok(mu.iter().map(|&v| v.max(0.0).sqrt()).sum())
}

/// The Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂).
pub fn frechet_distance(
    mu1: &[f64],
    s1: MatRef<'_, f64>,
    mu2: &[f64],
    s2: MatRef<'_, f64>,
) -> Result<f64> {
    let d = mu1.len();
    ensure!(
        mu2.len() == d,
        "means of different widths: {d} vs {}",
        mu2.len()
    );
    ensure!(
        mu1.iter().chain(mu2).all(|v| v.is_finite()),
        "a mean has non-finite entries"
    );
    check("Σ₁", s1, d)?;
    check("Σ₂", s2, d)?;
    let diff: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let tr = |s: MatRef<'_, f64>| (0..d).map(|i| s[(i, i)]).sum::<f64>();
    let covmean = trace_sqrt_product(s1, s2).context("tr √(Σ₁Σ₂)")?;
    Ok(diff + tr(s1) + tr(s2) - 2.0 * covmean)
}

/// The Fréchet distance between the Gaussian of feature rows x (n, d) (mean, unbiased
/// covariance) and N(μ₂, Σ₂). With more rows than dimensions this is [`frechet_distance`] on
/// the rows' statistics. With n ≤ d, Σ₁ = AᵀA for the centred rows A = (x − μ₁)/√(n − 1), and
/// the nonzero eigenvalues of Σ₁Σ₂ are those of the n × n matrix A Σ₂ Aᵀ: the same value from
/// an n × n eigenproblem instead of two d × d ones.
pub fn frechet_distance_of_rows(
    x: &[f32],
    d: usize,
    mu2: &[f64],
    s2: MatRef<'_, f64>,
) -> Result<f64> {
    let n = x.len() / d.max(1);
    if n > d {
        let st = crate::metrics::stats::FeatureStats::from_batch(x, d)?;
        return frechet_distance(&st.mean, st.covariance()?.as_ref(), mu2, s2);
    }
    let mean = crate::metrics::stats::row_mean(x, d)?;
    ensure!(
        n >= 2,
        "the Fréchet distance needs at least 2 feature rows, got {n}"
    );
    ensure!(
        mu2.len() == d && mu2.iter().all(|v| v.is_finite()),
        "means of different widths or non-finite: {d} vs {}",
        mu2.len()
    );
    check("Σ₂", s2, d)?;
    // B = Hᵀ(x − 1μᵀ)/√(n − 1) with H the n × (n − 1) Helmert basis (orthonormal, ⟂ 1):
    // BᵀB = Σ₁, and B has full row rank, so no eigenvalue is a rounded zero whose square root
    // would add noise. Row k: (Σ_{i<k} a_i − k·a_k)/√(k(k + 1)).
    let m = n - 1;
    let scale = 1.0 / (m as f64).sqrt();
    let mut a = Mat::<f64>::zeros(m, d);
    let mut prefix = vec![0f64; d];
    for k in 0..n {
        let row = &x[k * d..(k + 1) * d];
        if k > 0 {
            let c = scale / ((k * (k + 1)) as f64).sqrt();
            for j in 0..d {
                a[(k - 1, j)] = (prefix[j] - k as f64 * (row[j] as f64 - mean[j])) * c;
            }
        }
        for j in 0..d {
            prefix[j] += row[j] as f64 - mean[j];
        }
    }
    faer::set_global_parallelism(fixed_par());
    let mut t = Mat::<f64>::zeros(m, d);
    matmul(t.as_mut(), Accum::Replace, a.as_ref(), s2, 1.0, fixed_par());
    let mut g = Mat::<f64>::zeros(m, m);
    matmul(
        g.as_mut(),
        Accum::Replace,
        t.as_ref(),
        a.transpose(),
        1.0,
        fixed_par(),
    );
    let lam = symmetric(g.as_ref())
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| anyhow::anyhow!("eigenvalues of A Σ₂ Aᵀ: {e:?}"))?;
    let covmean: f64 = lam.iter().map(|&v| v.max(0.0).sqrt()).sum();
    let diff: f64 = mean.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let tr1: f64 = (0..m)
        .flat_map(|i| (0..d).map(move |j| (i, j)))
        .map(|(i, j)| a[(i, j)] * a[(i, j)])
        .sum();
    let tr2: f64 = (0..d).map(|i| s2[(i, i)]).sum();
    Ok(diff + tr1 + tr2 - 2.0 * covmean)
}
