//! Bootstrap intervals: the same seed gives the same bits; the 90 % percentile interval of a mean
//! covers the true mean about 90 % of the time; stratified resamples keep every class's size.

use sitdiv::metrics::bootstrap::{bootstrap, resample};
use sitdiv::rng;

fn mean(x: &[f64], idx: &[usize]) -> anyhow::Result<f64> {
    Ok(idx.iter().map(|&i| x[i]).sum::<f64>() / idx.len() as f64)
}

#[test]
fn intervals_are_reproducible_and_cover_at_the_nominal_rate() {
    // 200 data sets of 60 draws from N(2, 1); the true mean is 2.
    let (sets, n, reps) = (200u64, 60usize, 400usize);
    let mut covered = 0;
    for s in 0..sets {
        let x: Vec<f64> = rng::gaussian(77, s, 0, 0, n)
            .iter()
            .map(|&v| 2.0 + v as f64)
            .collect();
        let iv = bootstrap(n, None, reps, 0.9, 1000 + s, |idx| mean(&x, idx)).unwrap();
        if iv.lo <= 2.0 && 2.0 <= iv.hi {
            covered += 1;
        }
        if s == 0 {
            let again = bootstrap(n, None, reps, 0.9, 1000, |idx| mean(&x, idx)).unwrap();
            assert_eq!(
                format!("{iv:?}"),
                format!("{again:?}"),
                "same seed, other bits"
            );
            println!("set 0: {iv:?}");
        }
    }
    let rate = covered as f64 / sets as f64;
    println!(
        "90 % intervals covered the true mean in {covered}/{sets} = {:.1} %",
        100.0 * rate
    );
    assert!((0.85..=0.95).contains(&rate), "coverage {rate}");
}

#[test]
fn stratified_resamples_stay_in_their_class() {
    let labels = [3i64, 3, 7, 7, 7, 9, 3, 9];
    for r in 0..20 {
        let idx = resample(labels.len(), Some(&labels), 5, r);
        for (i, &j) in idx.iter().enumerate() {
            assert_eq!(
                labels[i], labels[j],
                "resample {r}: item {i} drew {j} of another class"
            );
        }
    }
    assert_ne!(
        resample(8, Some(&labels), 5, 0),
        resample(8, Some(&labels), 5, 1)
    );
}
