//! `sitdiv metrics`: the JSON contract on the golden feature sets, ADM reference statistics, and
//! bad input.

use std::path::Path;

use crate::common::{fails, open, sitdiv, tmp};
use sitdiv::io::{npy, npz};

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
                npy: npy::encode_f32(&shape, &data).unwrap(),
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
    let enc64 = |shape: &[usize], data: &[f64]| npy::encode_f64(shape, data).unwrap();
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
            npy: npy::encode_f32(&[1, 1], &[0.0]).unwrap(),
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

/// An `embedding` + `labels` file from the diversity golden, without labels when `labels` is false.
fn embedding_file(dir: &Path, labels: bool) -> String {
    let f = open("diversity_small.safetensors");
    let x = f.f32("embedding").unwrap();
    let l = f.i64("labels").unwrap();
    let mut members = vec![npz::Member {
        key: "embedding".into(),
        npy: npy::encode_f32(&[l.len(), x.len() / l.len()], &x).unwrap(),
    }];
    if labels {
        members.push(npz::Member {
            key: "labels".into(),
            npy: npy::encode_i64(&[l.len()], &l).unwrap(),
        });
    }
    let p = dir.join(format!("emb_{labels}.npz"));
    npz::write(&p, &members).unwrap();
    p.display().to_string()
}

#[test]
fn diversity_contract_keys_and_values() {
    let dir = tmp("diversity");
    let feats = embedding_file(&dir, true);
    let out = dir.join("d.json");
    let o = out.display().to_string();
    let j = run_json(&[
        "metrics",
        "--features",
        &feats,
        "--metrics",
        "diversity,vendi",
        "--json",
        &o,
    ]);
    let f = open("diversity_small.safetensors");
    for key in [
        "intra_mean",
        "intra_std",
        "inter_mean",
        "inter_std",
        "mixed_mean",
        "mixed_std",
    ] {
        let got = j["diversity"][key].as_f64().unwrap();
        let want = f.f64(&format!("ref.{key}")).unwrap()[0];
        assert!(
            (got - want).abs() <= 1e-12 * want.abs(),
            "{key}: {got} vs {want}"
        );
    }
    for (key, name) in [("mixed", "vendi_mixed"), ("intra_mean", "vendi_intra_mean")] {
        let got = j["vendi"][key].as_f64().unwrap();
        let want = f.f64(&format!("ref.{name}")).unwrap()[0];
        assert!(
            (got - want).abs() <= 1e-9 * want,
            "vendi {key}: {got} vs {want}"
        );
    }
    assert_eq!(
        j["diversity_info"]["classes_excluded_single_sample"],
        serde_json::json!([9])
    );
    println!("{}", serde_json::to_string_pretty(&j["diversity"]).unwrap());
    // Without labels: the error names the array and where labels come from.
    let blind = embedding_file(&dir, false);
    let bad = dir.join("bad.json");
    let b = bad.display().to_string();
    fails(
        &[
            "metrics",
            "--features",
            &blind,
            "--metrics",
            "diversity",
            "--json",
            &b,
        ],
        "no `labels` array",
        &bad,
    );
    // Quality metrics without a reference.
    fails(
        &[
            "metrics",
            "--features",
            &feats,
            "--metrics",
            "fid",
            "--json",
            &b,
        ],
        "give --ref-features",
        &bad,
    );
}
