//! Cosine-distance diversity (intra-, inter-class, mixed) and the Vendi score against a direct
//! double loop and `vendi_score` (tests/golden/diversity_small.safetensors).

use crate::common::open;
use sitdiv::metrics::diversity::{cosine_diversity, vendi, vendi_by_class, Diversity};
use sitdiv::rng;

/// The study's definitions by a direct double loop in f64.
fn double_loop(x: &[f32], d: usize, labels: &[i64]) -> [f64; 6] {
    let n = x.len() / d;
    let unit: Vec<Vec<f64>> = x
        .chunks(d)
        .map(|r| {
            let norm = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            r.iter().map(|&v| v as f64 / norm).collect()
        })
        .collect();
    let (mut mixed, mut inter) = (Vec::new(), Vec::new());
    let mut per_class = std::collections::BTreeMap::<i64, Vec<f64>>::new();
    for i in 0..n {
        for j in i + 1..n {
            let dist = 1.0
                - unit[i]
                    .iter()
                    .zip(&unit[j])
                    .map(|(a, b)| a * b)
                    .sum::<f64>();
            mixed.push(dist);
            if labels[i] == labels[j] {
                per_class.entry(labels[i]).or_default().push(dist);
            } else {
                inter.push(dist);
            }
        }
    }
    let stats = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64;
        (m, var.sqrt())
    };
    let means: Vec<f64> = per_class.values().map(|v| stats(v).0).collect();
    let (im, is) = stats(&means);
    let (em, es) = stats(&inter);
    let (mm, ms) = stats(&mixed);
    [im, is, em, es, mm, ms]
}

fn values(d: &Diversity) -> [f64; 6] {
    [
        d.intra_mean.unwrap(),
        d.intra_std.unwrap(),
        d.inter_mean.unwrap(),
        d.inter_std.unwrap(),
        d.mixed_mean.unwrap(),
        d.mixed_std.unwrap(),
    ]
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn diversity_and_vendi_match_the_references() {
    let f = open("diversity_small.safetensors");
    let x = f.f32("embedding").unwrap();
    let labels = f.i64("labels").unwrap();
    let d = x.len() / labels.len();
    let got = cosine_diversity(&x, d, Some(&labels)).unwrap();
    let names = [
        "intra_mean",
        "intra_std",
        "inter_mean",
        "inter_std",
        "mixed_mean",
        "mixed_std",
    ];
    let mine = double_loop(&x, d, &labels);
    for ((name, v), l) in names.iter().zip(values(&got)).zip(mine) {
        let r = f.f64(&format!("ref.{name}")).unwrap()[0];
        println!(
            "{name}: {v} (reference {r}, rel {:.1e}; Rust double loop rel {:.1e})",
            rel(v, r),
            rel(v, l)
        );
        // f32 cosines from the GEMM against f64 dot products.
        assert!(
            rel(v, r) < 1e-6 && rel(v, l) < 1e-6,
            "{name}: {v} vs {r} / {l}"
        );
    }
    assert_eq!(
        got.classes_excluded,
        vec![9],
        "the one-sample class is reported"
    );
    assert_eq!(got.classes_used, 6);
    assert_eq!(got.num_pairs, (61 * 60 / 2) as u64);
    let (vm, vi) = vendi_by_class(&x, d, &labels).unwrap();
    let vs = vendi(&x[..8 * d], d).unwrap();
    for (name, v) in [
        ("vendi_mixed", vm),
        ("vendi_intra_mean", vi.unwrap()),
        ("vendi_small", vs),
    ] {
        let r = f.f64(&format!("ref.{name}")).unwrap()[0];
        println!("{name}: {v} (vendi_score {r}, rel {:.1e})", rel(v, r));
        assert!(rel(v, r) < 1e-9, "{name}: {v} vs {r}");
    }
}

#[test]
fn blocks_threads_and_missing_labels() {
    // More rows than one Gram block (512), 40 classes.
    let (n, d) = (1100, 32);
    let x: Vec<f32> = rng::uniform(5, 0, 0, 0, n * d)
        .iter()
        .map(|&u| (u - 0.3) as f32)
        .collect();
    let labels: Vec<i64> = (0..n).map(|i| (i * 7 % 40) as i64).collect();
    let got = cosine_diversity(&x, d, Some(&labels)).unwrap();
    let want = double_loop(&x, d, &labels);
    for (v, w) in values(&got).iter().zip(want) {
        assert!(rel(*v, w) < 1e-11, "{v} vs {w}");
    }
    // The bits do not depend on the thread count.
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let again = pool.install(|| cosine_diversity(&x, d, Some(&labels)).unwrap());
        assert_eq!(again, got, "{threads} threads");
        let v = pool.install(|| vendi(&x, d).unwrap());
        assert_eq!(
            v.to_bits(),
            vendi(&x, d).unwrap().to_bits(),
            "vendi, {threads} threads"
        );
    }
    // Without labels only the mixed values exist; they are the same numbers.
    let blind = cosine_diversity(&x, d, None).unwrap();
    assert_eq!(blind.mixed_mean, got.mixed_mean);
    assert!(blind.intra_mean.is_none() && blind.inter_mean.is_none());
}

#[test]
fn degenerate_sets_give_no_nan() {
    let d = 3;
    // Every class a singleton: no intra-class value, never NaN.
    let x = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0];
    let got = cosine_diversity(&x, d, Some(&[1, 2, 3])).unwrap();
    assert!(got.intra_mean.is_none() && got.intra_std.is_none());
    assert_eq!(got.classes_excluded, vec![1, 2, 3]);
    assert!(got.inter_mean.unwrap().is_finite());
    // One class: no inter-class pair.
    let one = cosine_diversity(&x, d, Some(&[4, 4, 4])).unwrap();
    assert!(one.inter_mean.is_none() && one.intra_mean.is_some());
    // Identical rows: Vendi 1.
    assert!((vendi(&[1.0, 2.0, 1.0, 2.0], 2).unwrap() - 1.0).abs() < 1e-12);
    // Errors name the problem.
    let e = cosine_diversity(&x[..3], d, None).unwrap_err();
    assert!(e.to_string().contains("at least 2 samples"), "{e}");
    let e = cosine_diversity(&[0.0; 6], d, None).unwrap_err();
    assert!(e.to_string().contains("all zeros"), "{e}");
    let e = cosine_diversity(&x, d, Some(&[1, 2])).unwrap_err();
    assert!(e.to_string().contains("2 labels for 3"), "{e}");
}
