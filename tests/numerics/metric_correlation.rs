//! Metric agreement coefficients against scipy (tests/golden/correlation.safetensors, made by
//! `scripts/dump_metric_golden.py --correlation`): pearsonr, spearmanr and kendalltau (τ-b) of
//! every column pair of a 14 × 8 table with ties, monotone and unrelated columns.

use crate::common::open;
use sitdiv::metrics::correlation::{kendall_tau_b, pearson, spearman};

#[test]
fn coefficients_equal_scipy() {
    let f = open("correlation.safetensors");
    let t = f.f64("table").unwrap();
    let (n, m) = (14, 8);
    let col = |j: usize| (0..n).map(|i| t[i * m + j]).collect::<Vec<f64>>();
    for (name, coef) in [
        ("pearson", pearson as fn(&[f64], &[f64]) -> Option<f64>),
        ("spearman", spearman),
        ("kendall", kendall_tau_b),
    ] {
        let want = f.f64(name).unwrap();
        let mut worst = 0f64;
        for i in 0..m {
            for j in 0..m {
                let got = coef(&col(i), &col(j)).unwrap();
                worst = worst.max((got - want[i * m + j]).abs());
            }
        }
        println!("{name}: worst |Δ| over {m}×{m} pairs = {worst:.2e}");
        assert!(worst <= 1e-12, "{name}: {worst}");
    }
    // Undefined where scipy returns NaN: a constant column, fewer than two values.
    assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
    assert_eq!(kendall_tau_b(&[2.0, 2.0], &[1.0, 2.0]), None);
    assert_eq!(spearman(&[1.0], &[2.0]), None);
}
