//! CMMD (`cmmd` on the clip-l14-336 backbone, tests/golden/clip336_tiny.weights.safetensors)
//! through the pipeline: a sweep merges to the same bytes from 1 shard and from 3, with a finite
//! cmmd per run config; `sitdiv eval` equals `features` then `metrics`, and both equal the
//! library's formula on the features.

use std::path::Path;

use crate::common::{
    golden, repo, run_sweep_shards, small_sweep_with, succeeds, sweep_results, tmp,
};
use sitdiv::io::{npy, npz};
use sitdiv::rng;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Two run configs (cfg 1 and 2, ODE Euler 4 steps) × 2 classes × 2 samples, units of 2;
/// CMMD of CLIP-336 embeddings against the tiny reference's images.
fn cmmd_sweep(dir: &Path) -> std::path::PathBuf {
    let text = small_sweep_with(
        "cmmd",
        &format!(
            r#"reference = "{}"
bootstrap = 4
backbones = [{{ backbone = "clip-l14-336", weights = "{}", metrics = ["cmmd"] }}]"#,
            repo().join("sweeps/tiny-reference.npz").display(),
            golden("clip336_tiny.weights.safetensors"),
        ),
    );
    let p = dir.join("cmmd.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn cmmd_sweep_shards_merge_to_the_bytes_of_one_run() {
    let dir = tmp("cmmd-sweep");
    let sweep = cmmd_sweep(&dir);
    let one = dir.join("one");
    succeeds(&["sweep", "run", s(&sweep), "--out", s(&one)]);
    succeeds(&["sweep", "merge", s(&sweep), "--out", s(&one)]);
    let sharded = dir.join("sharded");
    run_sweep_shards(&sweep, &sharded, &["2", "0", "1"], "3");
    succeeds(&["sweep", "merge", s(&sweep), "--out", s(&sharded)]);
    let (a, b) = (sweep_results(&one), sweep_results(&sharded));
    assert_eq!(a.len(), 3, "results.csv and two run configs");
    for ((na, ba), (nb, bb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ba == bb, "{na} differs between 1 shard and 3");
    }
    for (name, bytes) in &a[1..] {
        let doc: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let v = doc["backbones"]["clip-l14-336"]["cmmd"].as_f64();
        println!("{name}: cmmd {v:?}");
        assert!(v.is_some_and(|v| v.is_finite() && v > 0.0), "{name}: {doc}");
    }
    let csv = String::from_utf8_lossy(&a[0].1).into_owned();
    assert!(csv.contains("clip-l14-336,cmmd,all,value,"), "{csv}");
}

#[test]
fn cmmd_through_eval_equals_features_then_metrics() {
    let dir = tmp("cmmd-eval");
    // Samples: five 20 × 24 images (no labels: CMMD needs none); reference: the tiny one.
    let (n, h, w) = (5, 20, 24);
    let imgs: Vec<u8> = (0..n as u64)
        .flat_map(|i| rng::uniform(41, i, 0, 0, h * w * 3))
        .map(|u| (256.0 * u) as u8)
        .collect();
    let b = dir.join("samples.npz");
    let arr = npy::encode_u8(&[n, h, w, 3], &imgs).unwrap();
    npz::write(
        &b,
        &[npz::Member {
            key: "arr_0".into(),
            npy: arr,
        }],
    )
    .unwrap();
    let r = repo().join("sweeps/tiny-reference.npz");
    let wts = golden("clip336_tiny.weights.safetensors");
    let json = dir.join("e.json");
    let bb = ["--backbone", "clip-l14-336"];
    succeeds(
        &[
            &[
                "eval",
                "--samples",
                s(&b),
                "--ref",
                s(&r),
                "--metrics",
                "cmmd",
            ][..],
            &bb,
            &["--backbone-weights", &wts, "--json", s(&json)],
        ]
        .concat(),
    );
    let (fa, fb) = (dir.join("a.npz"), dir.join("b.npz"));
    for (images, out) in [(&b, &fa), (&r, &fb)] {
        let args = ["--weights", &wts, "--images", s(images), "--out", s(out)];
        succeeds(&[&["features"][..], &bb, &args].concat());
    }
    let mj = dir.join("m.json");
    succeeds(&[
        "metrics",
        "--features",
        s(&fa),
        "--ref-features",
        s(&fb),
        "--metrics",
        "cmmd",
        "--json",
        s(&mj),
    ]);
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let (e, m) = (read(&json), read(&mj));
    assert_eq!(e["cmmd"], m["cmmd"]);
    // The library's formula on the written (unit) embeddings.
    let rows =
        |p: &Path| npy::decode_f32(p, &npz::read_only(p, &["embedding"]).unwrap()[0].npy).unwrap();
    let (x, y) = (rows(&fa), rows(&fb));
    assert_eq!((x.shape.clone(), y.shape[0]), (vec![n, 16], 32));
    let want = sitdiv::metrics::cmmd::cmmd(&x.data, &y.data, 16).unwrap();
    println!(
        "cmmd eval {} metrics {} formula {want}",
        e["cmmd"], m["cmmd"]
    );
    assert_eq!(e["cmmd"].as_f64().unwrap(), want);
    assert!(want > 0.0);
}
