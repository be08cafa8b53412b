//! Fréchet distance: closed forms and an independent matrix square root.

#[path = "common/ops.rs"]
mod ops;

use faer::linalg::solvers::DenseSolveCore;
use faer::Mat;
use sitdiv::metrics::fid::{frechet_distance, trace_sqrt_product};

fn matmul(a: &Mat<f64>, b: &Mat<f64>) -> Mat<f64> {
    let (n, k, m) = (a.nrows(), a.ncols(), b.ncols());
    Mat::from_fn(n, m, |i, j| (0..k).map(|l| a[(i, l)] * b[(l, j)]).sum())
}

fn random_spd(seed: u64, d: usize) -> Mat<f64> {
    let g = ops::randn(seed, d * d);
    let a = Mat::from_fn(d, d, |i, j| g[i * d + j] as f64);
    let at = a.transpose().to_owned();
    let mut s = matmul(&a, &at);
    for i in 0..d {
        s[(i, i)] += 0.1; // full rank
    }
    s
}

/// √M by the Denman–Beavers iteration (a general square root, like scipy's sqrtm route).
fn sqrtm_db(m: &Mat<f64>) -> Mat<f64> {
    let d = m.nrows();
    let inv = |x: &Mat<f64>| x.partial_piv_lu().inverse();
    let (mut y, mut z) = (m.clone(), Mat::<f64>::identity(d, d));
    for _ in 0..60 {
        let (yi, zi) = (inv(&y), inv(&z));
        let ny = Mat::from_fn(d, d, |i, j| 0.5 * (y[(i, j)] + zi[(i, j)]));
        let nz = Mat::from_fn(d, d, |i, j| 0.5 * (z[(i, j)] + yi[(i, j)]));
        y = ny;
        z = nz;
    }
    y
}

#[test]
fn commuting_covariances_follow_the_closed_form() {
    // Σ₁ = Q A Qᵀ, Σ₂ = Q B Qᵀ with diagonal A, B: tr √(Σ₁Σ₂) = Σ √(aᵢbᵢ).
    let d = 40;
    let q = random_spd(1, d)
        .self_adjoint_eigen(faer::Side::Lower)
        .unwrap()
        .U()
        .to_owned();
    let a: Vec<f64> = (0..d).map(|i| 0.5 + i as f64).collect();
    let b: Vec<f64> = (0..d).map(|i| 2.0 + (i % 7) as f64).collect();
    let rot = |diag: &[f64]| {
        let qd = Mat::from_fn(d, d, |i, j| q[(i, j)] * diag[j]);
        matmul(&qd, &q.transpose().to_owned())
    };
    let (s1, s2) = (rot(&a), rot(&b));
    let want: f64 = a.iter().zip(&b).map(|(x, y)| (x * y).sqrt()).sum();
    let got = trace_sqrt_product(s1.as_ref(), s2.as_ref()).unwrap();
    assert!(((got - want) / want).abs() < 1e-12, "{got} vs {want}");
    let mu1: Vec<f64> = (0..d).map(|i| i as f64 * 0.1).collect();
    let mu2 = vec![0.0; d];
    let fid = frechet_distance(&mu1, s1.as_ref(), &mu2, s2.as_ref()).unwrap();
    let closed: f64 = mu1.iter().map(|m| m * m).sum::<f64>()
        + a.iter()
            .zip(&b)
            .map(|(x, y)| x + y - 2.0 * (x * y).sqrt())
            .sum::<f64>();
    assert!(((fid - closed) / closed).abs() < 1e-12, "{fid} vs {closed}");
    assert!(
        frechet_distance(&mu1, s1.as_ref(), &mu1, s1.as_ref())
            .unwrap()
            .abs()
            < 1e-9,
        "FID(x, x) ≠ 0"
    );
}

#[test]
fn general_covariances_match_a_general_square_root() {
    let d = 24;
    let (s1, s2) = (random_spd(2, d), random_spd(3, d));
    let root = sqrtm_db(&matmul(&s1, &s2));
    let want: f64 = (0..d).map(|i| root[(i, i)]).sum();
    let got = trace_sqrt_product(s1.as_ref(), s2.as_ref()).unwrap();
    assert!(((got - want) / want).abs() < 1e-10, "{got} vs {want}");
}

#[test]
fn bad_statistics_are_refused() {
    let s = random_spd(4, 3);
    let mut bad = s.clone();
    bad[(1, 2)] = f64::NAN;
    assert!(
        frechet_distance(&[0.0; 3], s.as_ref(), &[0.0; 3], bad.as_ref())
            .unwrap_err()
            .to_string()
            .contains("non-finite")
    );
    assert!(
        frechet_distance(&[0.0; 3], s.as_ref(), &[0.0; 2], s.as_ref())
            .unwrap_err()
            .to_string()
            .contains("different widths")
    );
}

#[test]
fn the_distance_does_not_depend_on_the_thread_count() {
    let d = 300;
    let (s1, s2) = (random_spd(5, d), random_spd(6, d));
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| trace_sqrt_product(s1.as_ref(), s2.as_ref()).unwrap())
    };
    let one = run(1);
    for t in [2, 3, 8] {
        assert_eq!(
            run(t).to_bits(),
            one.to_bits(),
            "{t} threads changed the bits"
        );
    }
}
