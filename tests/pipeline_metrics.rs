//! `sitdiv metrics`: the JSON contract on the golden feature sets, ADM reference statistics, and
//! bad input.

mod common;

use std::path::Path;

use common::{open, sitdiv, tmp};
use sitdiv::pipeline::{npy, npz};

/// Writes set `a` or `b` of the golden file as a features .npz, with `edit` applied.
fn features(dir: &Path, set: &str, edit: impl Fn(&str, &mut Vec<usize>, &mut Vec<f32>)) -> String {
    let f = open("metrics_small.safetensors");
    let members: Vec<npz::Member> = ["pool", "spatial", "logits"]
        .iter()
        .map(|k| {
            let name = format!("{set}.{k}");
            let (mut shape, mut data) =
                (f.info(&name).unwrap().shape.clone(), f.f32(&name).unwrap());
            edit(k, &mut shape, &mut data);
            npz::Member {
                key: k.to_string(),
                npy: npy::encode_f32(&shape, &data),
            }
        })
        .collect();
    let p = dir.join(format!("{set}.npz"));
    npz::write(&p, &members).unwrap();
    p.display().to_string()
}

fn run_json(args: &[&str]) -> serde_json::Value {
    let r = sitdiv(args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let json = args
        .iter()
        .position(|a| *a == "--json")
        .map(|i| args[i + 1])
        .unwrap();
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

#[test]
fn metrics_json_carries_every_requested_number() {
    let dir = tmp("json");
    let (a, b) = (
        features(&dir, "a", |_, _, _| {}),
        features(&dir, "b", |_, _, _| {}),
    );
    let all = |json: &str| {
        run_json(&[
            "metrics",
            "--features",
            &a,
            "--ref-features",
            &b,
            "--metrics",
            "fid,sfid,is,pr,dc,kid",
            "--kid-subsets",
            "4",
            "--kid-subset-size",
            "100",
            "--is-split-size",
            "150",
            "--json",
            json,
        ])
    };
    let out = dir.join("m.json").display().to_string();
    let v = all(&out);
    let g = open("metrics_small.safetensors");
    let want = |n: &str| g.f64(&format!("ref.{n}")).unwrap()[0];
    let rel = |k: &str, w: f64| ((v[k].as_f64().unwrap() - w) / w).abs();
    assert!(
        rel("fid", want("fid")) < 1e-6 && rel("sfid", want("sfid")) < 1e-6,
        "{v}"
    );
    assert!(rel("inception_score", want("inception_score")) < 1e-12);
    for k in ["precision", "recall", "density", "coverage"] {
        assert!(rel(k, want(k)) < 1e-12, "{k}: {}", v[k]);
    }
    assert!(v["kid_mean"].as_f64().unwrap().is_finite() && v["kid_std"].as_f64().unwrap() >= 0.0);
    // Same seed, same subsets: identical bytes.
    let out2 = dir.join("m2.json").display().to_string();
    all(&out2);
    let strip = |p: &str| {
        let mut j: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        j.as_object_mut().unwrap().remove("settings");
        j
    };
    assert_eq!(strip(&out), strip(&out2));
}

#[test]
fn adm_reference_statistics_give_the_same_fid() {
    let dir = tmp("adm");
    let a = features(&dir, "a", |_, _, _| {});
    let g = open("metrics_small.safetensors");
    let stats = |key: &str| {
        let x = g.f32(key).unwrap();
        let d = g.info(key).unwrap().shape[1];
        let s = sitdiv::metrics::stats::FeatureStats::from_batch(&x, d).unwrap();
        let c = s.covariance().unwrap();
        let cov: Vec<f64> = (0..d * d).map(|k| c[(k / d, k % d)]).collect();
        (s.mean, cov, d)
    };
    let enc64 =
        |shape: &[usize], data: &[f64]| npy::encode_raw("<f8", shape, bytemuck::cast_slice(data));
    let (mu, sigma, d) = stats("b.pool");
    let (mu_s, sigma_s, ds) = stats("b.spatial");
    let reference = dir.join("VIRTUAL_ref.npz");
    npz::write(
        &reference,
        &[
            npz::Member {
                key: "mu".into(),
                npy: enc64(&[d], &mu),
            },
            npz::Member {
                key: "sigma".into(),
                npy: enc64(&[d, d], &sigma),
            },
            npz::Member {
                key: "mu_s".into(),
                npy: enc64(&[ds], &mu_s),
            },
            npz::Member {
                key: "sigma_s".into(),
                npy: enc64(&[ds, ds], &sigma_s),
            },
        ],
    )
    .unwrap();
    let out = dir.join("m.json").display().to_string();
    let v = run_json(&[
        "metrics",
        "--features",
        &a,
        "--ref-features",
        reference.to_str().unwrap(),
        "--metrics",
        "fid,sfid",
        "--json",
        &out,
    ]);
    let want = g.f64("ref.fid").unwrap()[0];
    assert!(
        ((v["fid"].as_f64().unwrap() - want) / want).abs() < 1e-6,
        "{v}"
    );
}

fn fails(args: &[&str], needle: &str, out: &Path) {
    let r = sitdiv(args);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains(needle),
        "{needle:?} not in {err}"
    );
    assert!(!out.exists(), "output written despite the error");
    println!("{}", err.trim());
}

#[test]
fn bad_metric_inputs_fail_clearly() {
    let dir = tmp("bad");
    let out = dir.join("m.json");
    let o = out.display().to_string();
    let a = features(&dir, "a", |_, _, _| {});
    // A reference batch without the expected keys.
    let empty = dir.join("empty.npz");
    npz::write(
        &empty,
        &[npz::Member {
            key: "arr_0".into(),
            npy: npy::encode_f32(&[1, 1], &[0.0]),
        }],
    )
    .unwrap();
    fails(
        &[
            "metrics",
            "--features",
            &a,
            "--ref-features",
            empty.to_str().unwrap(),
            "--metrics",
            "fid",
            "--json",
            &o,
        ],
        "neither `mu`/`sigma` statistics nor `pool` features",
        &out,
    );
    // Mismatched width.
    let narrow = tmp("narrow");
    let b = features(&narrow, "b", |k, shape, data| {
        if k == "pool" {
            let w = shape[1];
            *data = data.chunks(w).flat_map(|r| r[..w - 1].to_vec()).collect();
            shape[1] = w - 1;
        }
    });
    fails(
        &[
            "metrics",
            "--features",
            &a,
            "--ref-features",
            &b,
            "--metrics",
            "pr",
            "--json",
            &o,
        ],
        "width 64 but the reference has width 63",
        &out,
    );
    // NaN features.
    let nan = tmp("nan");
    let b = features(&nan, "b", |k, _, data| {
        if k == "pool" {
            data[5] = f32::NAN
        }
    });
    fails(
        &[
            "metrics",
            "--features",
            &a,
            "--ref-features",
            &b,
            "--metrics",
            "fid",
            "--json",
            &o,
        ],
        "NaN",
        &out,
    );
    // Fewer samples than k + 1.
    let few = tmp("few");
    let b = features(&few, "b", |_, shape, data| {
        let w = shape[1];
        data.truncate(3 * w);
        shape[0] = 3;
    });
    fails(
        &[
            "metrics",
            "--features",
            &a,
            "--ref-features",
            &b,
            "--metrics",
            "pr",
            "--json",
            &o,
        ],
        "needs at least 4",
        &out,
    );
}
