//! Every metric against the reference tools on the same small feature sets
//! (tests/golden/metrics_small.safetensors, made by scripts/dump_metric_golden.py).

mod common;

use common::open;
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
