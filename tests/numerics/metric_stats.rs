//! Streaming feature statistics: against a two-pass reference, and shards merging exactly.

use crate::common::ops;

use sitdiv::metrics::stats::FeatureStats;

fn two_pass(x: &[f32], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() / d;
    let mean: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|i| x[i * d + j] as f64).sum::<f64>() / n as f64)
        .collect();
    let mut cov = vec![0f64; d * d];
    for i in 0..n {
        for a in 0..d {
            for b in 0..d {
                cov[a * d + b] += (x[i * d + a] as f64 - mean[a]) * (x[i * d + b] as f64 - mean[b]);
            }
        }
    }
    cov.iter_mut().for_each(|c| *c /= (n - 1) as f64);
    (mean, cov)
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
        / scale
}

#[test]
fn shards_merge_to_the_single_pass_statistics() {
    let (n, d) = (1000, 37);
    // Features with a large common offset, where naive raw-moment sums lose digits.
    let x: Vec<f32> = ops::randn(3, n * d)
        .iter()
        .enumerate()
        .map(|(i, v)| 50.0 + v * (1.0 + (i % d) as f32 * 0.1))
        .collect();
    let one = FeatureStats::from_batch(&x, d).unwrap();
    let mut merged = FeatureStats::new(d);
    for part in [0..130, 130..500, 500..501, 501..1000] {
        let shard = FeatureStats::from_batch(&x[part.start * d..part.end * d], d).unwrap();
        merged.merge(&shard).unwrap();
    }
    assert_eq!(merged.n, n);
    let c1: Vec<f64> = one
        .covariance()
        .unwrap()
        .col_iter()
        .flat_map(|c| c.iter().copied().collect::<Vec<_>>())
        .collect();
    let c4: Vec<f64> = merged
        .covariance()
        .unwrap()
        .col_iter()
        .flat_map(|c| c.iter().copied().collect::<Vec<_>>())
        .collect();
    let (em, ec) = (max_rel(&merged.mean, &one.mean), max_rel(&c4, &c1));
    println!("4 shards vs 1: mean rel {em:.2e}, covariance rel {ec:.2e}");
    assert!(em < 1e-12 && ec < 1e-12);
    let (mean, cov) = two_pass(&x, d);
    let cov_one: Vec<f64> = (0..d * d)
        .map(|k| one.covariance().unwrap()[(k / d, k % d)])
        .collect();
    assert!(max_rel(&one.mean, &mean) < 1e-14 && max_rel(&cov_one, &cov) < 1e-12);
}

#[test]
fn bad_features_are_refused() {
    assert!(FeatureStats::from_batch(&[1.0, f32::NAN, 2.0, 3.0], 2)
        .unwrap_err()
        .to_string()
        .contains("NaN"));
    assert!(
        FeatureStats::from_batch(&[1.0, 2.0, 3.0], 2).is_err(),
        "ragged rows accepted"
    );
    let mut a = FeatureStats::new(2);
    assert!(
        a.merge(&FeatureStats::new(3)).is_err(),
        "width mismatch accepted"
    );
    assert!(
        FeatureStats::from_batch(&[1.0, 2.0], 2)
            .unwrap()
            .covariance()
            .is_err(),
        "covariance of one sample"
    );
}
