//! Fréchet distance: closed forms and an independent matrix square root.

use crate::common::ops;

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

/// Fewer rows than dimensions: the n × n route against a closed form (Σ₂ = c·I: tr √(Σ₁Σ₂) =
/// √c · Σ σᵢ(A), singular values by faer's SVD of A, an independent algorithm), and against the
/// d × d route, which adds √(rounding noise) for each of Σ₁'s d − n + 1 zero eigenvalues, hence
/// the looser bound there. More rows than dimensions take the d × d route, bit for bit.
#[test]
fn few_rows_take_the_small_eigenproblem_with_the_same_value() {
    use sitdiv::metrics::fid::frechet_distance_of_rows;
    use sitdiv::metrics::stats::FeatureStats;
    let d = 48;
    for n in [2, 5, 12, 48] {
        let x: Vec<f32> = ops::randn(100 + n as u64, n * d);
        let st = FeatureStats::from_batch(&x, d).unwrap();
        let c = 2.5f64;
        let s2 = Mat::<f64>::from_fn(d, d, |i, j| if i == j { c } else { 0.0 });
        let mu2 = vec![0.3; d];
        let small = frechet_distance_of_rows(&x, d, &mu2, s2.as_ref()).unwrap();
        let scale = 1.0 / ((n - 1) as f64).sqrt();
        let a = Mat::<f64>::from_fn(n, d, |i, j| (x[i * d + j] as f64 - st.mean[j]) * scale);
        let sv: f64 = a.singular_values().unwrap().iter().sum();
        let tr1: f64 = (0..d).map(|j| st.covariance().unwrap()[(j, j)]).sum();
        let diff: f64 = st.mean.iter().map(|m| (m - 0.3) * (m - 0.3)).sum();
        let exact = diff + tr1 + c * d as f64 - 2.0 * c.sqrt() * sv;
        let full = frechet_distance(
            &st.mean,
            st.covariance().unwrap().as_ref(),
            &mu2,
            s2.as_ref(),
        )
        .unwrap();
        let (e_small, e_full) = ((small - exact).abs() / exact, (full - exact).abs() / exact);
        println!("n {n}, d {d}: closed form {exact:.12}; n×n route rel {e_small:.1e}, d×d route rel {e_full:.1e}");
        assert!(e_small < 1e-12, "n {n}: {small} vs {exact}");
        assert!(e_full < 1e-7, "n {n}: d×d route {full} vs {exact}");
    }
    // A low-rank reference too: both routes agree.
    let (x, y): (Vec<f32>, Vec<f32>) = (ops::randn(3, 10 * d), ops::randn(4, 7 * d));
    let (sx, sy) = (
        FeatureStats::from_batch(&x, d).unwrap(),
        FeatureStats::from_batch(&y, d).unwrap(),
    );
    let full = frechet_distance(
        &sx.mean,
        sx.covariance().unwrap().as_ref(),
        &sy.mean,
        sy.covariance().unwrap().as_ref(),
    )
    .unwrap();
    let small =
        frechet_distance_of_rows(&x, d, &sy.mean, sy.covariance().unwrap().as_ref()).unwrap();
    assert!((full - small).abs() / full < 1e-7, "{full} vs {small}");
    // n > d: exactly the statistics route.
    let x: Vec<f32> = ops::randn(9, 60 * d);
    let st = FeatureStats::from_batch(&x, d).unwrap();
    let s2 = random_spd(8, d);
    let mu2 = vec![0.0; d];
    let a = frechet_distance(
        &st.mean,
        st.covariance().unwrap().as_ref(),
        &mu2,
        s2.as_ref(),
    )
    .unwrap();
    let b = frechet_distance_of_rows(&x, d, &mu2, s2.as_ref()).unwrap();
    assert_eq!(a.to_bits(), b.to_bits());
}
