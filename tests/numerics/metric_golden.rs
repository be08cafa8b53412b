//! Every metric against the reference tools on the same small feature sets
//! (tests/golden/metrics_small.safetensors, made by scripts/dump_metric_golden.py).

use crate::common::open;
use sitdiv::metrics::fid::frechet_distance;
use sitdiv::metrics::inception_score::inception_score;
use sitdiv::metrics::kid::mmd2;
use sitdiv::metrics::prdc::{density_coverage, precision_recall};
use sitdiv::metrics::stats::FeatureStats;

fn fd(a: &[f32], b: &[f32], d: usize) -> f64 {
    let (sa, sb) = (
        FeatureStats::from_batch(a, d).unwrap(),
        FeatureStats::from_batch(b, d).unwrap(),
    );
    frechet_distance(
        &sa.mean,
        sa.covariance().unwrap().as_ref(),
        &sb.mean,
        sb.covariance().unwrap().as_ref(),
    )
    .unwrap()
}

#[test]
fn metrics_match_the_reference_tools() {
    let f = open("metrics_small.safetensors");
    let cfg: serde_json::Value = serde_json::from_str(&f.metadata()["config"]).unwrap();
    let get = |n: &str| f.f32(n).unwrap();
    let want = |n: &str| f.f64(&format!("ref.{n}")).unwrap()[0];
    let width = |n: &str| f.info(n).unwrap().shape[1];
    let (ap, bp) = (get("a.pool"), get("b.pool"));
    let dp = width("a.pool");
    let rel = |got: f64, w: f64| ((got - w) / w).abs();

    let fid = fd(&ap, &bp, dp);
    let sfid = fd(&get("a.spatial"), &get("b.spatial"), width("a.spatial"));
    println!(
        "fid {fid} vs {} (rel {:.1e}); sfid {sfid} vs {} (rel {:.1e})",
        want("fid"),
        rel(fid, want("fid")),
        want("sfid"),
        rel(sfid, want("sfid"))
    );
    assert!(rel(fid, want("fid")) < 1e-6 && rel(sfid, want("sfid")) < 1e-6);

    let is = inception_score(
        &get("a.logits"),
        width("a.logits"),
        cfg["is_split_size"].as_u64().unwrap() as usize,
    )
    .unwrap();
    assert!(
        rel(is, want("inception_score")) < 1e-12,
        "IS {is} vs {}",
        want("inception_score")
    );

    let (p, r) = precision_recall(&bp, &ap, dp, cfg["pr_k"].as_u64().unwrap() as usize).unwrap();
    assert_eq!(
        (p, r),
        (want("precision"), want("recall")),
        "precision/recall"
    );
    let (dens, cov) =
        density_coverage(&bp, &ap, dp, cfg["dc_k"].as_u64().unwrap() as usize).unwrap();
    assert!(
        rel(dens, want("density")) < 1e-12 && rel(cov, want("coverage")) < 1e-12,
        "density {dens} coverage {cov}"
    );

    let rows = |x: &[f32]| -> Vec<Vec<f32>> { x.chunks(dp).map(|r| r.to_vec()).collect() };
    let (fa, rb) = (rows(&ap), rows(&bp));
    let k = mmd2(
        &fa.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        &rb.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        dp,
    );
    assert!(
        rel(k, want("kid_full")) < 1e-9,
        "KID {k} vs {}",
        want("kid_full")
    );
}

#[test]
fn too_few_samples_for_k_is_refused() {
    let x = vec![0.5f32; 3 * 4];
    let err = precision_recall(&x, &x, 4, 3).unwrap_err().to_string();
    assert!(err.contains("needs at least 4"), "{err}");
}

/// The 5000 × 2048 case: features regenerated from the counter-based formula in
/// scripts/dump_metric_golden.py, reference numbers from scipy, prdc and the ADM formulas.
#[test]
fn large_feature_sets_match_the_reference_tools() {
    use sitdiv::rng;
    let f = open("metrics_large.safetensors");
    let cfg: serde_json::Value = serde_json::from_str(&f.metadata()["config"]).unwrap();
    let (n, d) = (
        cfg["n"].as_u64().unwrap() as usize,
        cfg["d"].as_u64().unwrap() as usize,
    );
    let gen = |seed: u64, warp: bool| -> Vec<f32> {
        (0..n)
            .flat_map(|i| {
                rng::uniform(seed, i as u64, 0, 0, d)
                    .into_iter()
                    .map(move |u| {
                        if warp {
                            (u * (0.8 + 0.2 * u)) as f32
                        } else {
                            u as f32
                        }
                    })
            })
            .collect()
    };
    let (a, b) = (gen(1, true), gen(2, false));
    assert_eq!(
        &a[..16],
        &f.f32("check.a_first_row").unwrap()[..],
        "the feature formula differs from the script's"
    );
    let want = |k: &str| f.f64(&format!("ref.{k}")).unwrap()[0];
    let fid = fd(&a, &b, d);
    println!(
        "large: fid {fid} vs {} (rel {:.1e})",
        want("fid"),
        ((fid - want("fid")) / want("fid")).abs()
    );
    assert!(((fid - want("fid")) / want("fid")).abs() < 1e-6);
    // Exact distances here (f32 products, f64 norms) vs f64 in the script: a near-tie may flip.
    let (p, r) = precision_recall(&b, &a, d, cfg["pr_k"].as_u64().unwrap() as usize).unwrap();
    let (dens, cov) = density_coverage(&b, &a, d, cfg["dc_k"].as_u64().unwrap() as usize).unwrap();
    println!(
        "large: precision {p} vs {}, recall {r} vs {}, density {dens} vs {}, coverage {cov} vs {}",
        want("precision"),
        want("recall"),
        want("density"),
        want("coverage")
    );
    for (got, k) in [
        (p, "precision"),
        (r, "recall"),
        (dens, "density"),
        (cov, "coverage"),
    ] {
        assert!((got - want(k)).abs() <= 1e-3, "{k}: {got} vs {}", want(k));
    }
}
