//! A whole sweep on the CUDA backend (the emulated device in CI): sample, decode with the SD-VAE,
//! the Inception's and a ViT's features, merge. Every metric agrees with the CPU run of the same
//! sweep, and a second run on the GPU gives the same bytes.

use std::path::Path;

use crate::common::{cuda, repo, sitdiv, small_sweep_toml, sweep_results, tmp};

/// The first 8 images of sweeps/tiny-reference.npz (its features are computed by every merge).
fn small_reference(dir: &Path) -> std::path::PathBuf {
    use sitdiv::io::{npy, npz};
    let src = repo().join("sweeps/tiny-reference.npz");
    let members = npz::read(&src).unwrap();
    let get = |k: &str| &members.iter().find(|m| m.key == k).unwrap().npy;
    let images = npy::decode_u8(&src, get("arr_0")).unwrap();
    let labels = npy::decode_i64(&src, get("arr_1")).unwrap();
    let n = 8;
    let per: usize = images.shape[1..].iter().product();
    let mut shape = images.shape.clone();
    shape[0] = n;
    let p = dir.join("reference8.npz");
    npz::write(
        &p,
        &[
            npz::Member {
                key: "arr_0".into(),
                npy: npy::encode_u8(&shape, &images.data[..n * per]).unwrap(),
            },
            npz::Member {
                key: "arr_1".into(),
                npy: npy::encode_i64(&[n], &labels.data[..n]).unwrap(),
            },
        ],
    )
    .unwrap();
    p
}

/// The small sweep of tests/common with FID, IS, precision/recall and density/coverage.
fn small_sweep(dir: &Path) -> std::path::PathBuf {
    let text = small_sweep_toml(
        "small-gpu",
        &small_reference(dir),
        r#""fid", "is", "pr", "dc""#,
    );
    let p = dir.join("small.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `sweep run` and `merge` on `device`, the backbones in `eval_precision` (their GPU default:
/// tf32).
fn run(sweep: &Path, out: &Path, device: &str, eval_precision: Option<&str>) {
    for step in ["run", "merge"] {
        let mut args = vec![
            "sweep",
            step,
            sweep.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--device",
            device,
        ];
        if let Some(p) = eval_precision {
            args.extend(["--eval-precision", p]);
        }
        let o = sitdiv(&args);
        assert!(
            o.status.success(),
            "sitdiv {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// (config, backbone, metric, scope, statistic) → value, from results.csv.
fn values(out: &Path) -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |n: &str| head.iter().position(|h| *h == n).unwrap();
    let key = ["config", "backbone", "metric", "scope", "statistic"].map(col);
    let value = col("value");
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let k = key.map(|i| f[i]).join(" ");
            (k, f[value].parse().unwrap())
        })
        .collect()
}

/// The worst relative difference of `got` from `want`, with its key and values.
fn worst(want: &[(String, f64)], got: &[(String, f64)]) -> (f64, String) {
    assert_eq!(want.len(), got.len());
    let mut worst = (0.0f64, String::new());
    for ((k, w), (k2, g)) in want.iter().zip(got) {
        assert_eq!(k, k2);
        // Relative to the value, or to 1e-6 for values that are zero up to rounding (the
        // diversity of identical samples).
        let e = (g - w).abs() / w.abs().max(1e-6);
        if e > worst.0 || e.is_nan() {
            worst = (e, format!("{k}: cpu {w}, gpu {g}"));
        }
    }
    worst
}

/// The configs of two runs whose units' Inception `pool` features differ by more than fp32
/// noise (1e-5 of the largest value): those units saw other decoded pixels.
fn flipped_configs(a: &Path, b: &Path) -> Vec<String> {
    use sitdiv::io::{npy, npz};
    let pool = |f: &Path| {
        let m = npz::read(f).unwrap();
        let p = &m.iter().find(|x| x.key == "pool").unwrap().npy;
        npy::decode_f32(f, p).unwrap().data
    };
    let mut out = Vec::new();
    for config in std::fs::read_dir(a.join("units")).unwrap() {
        let config = config.unwrap();
        let name = config.file_name().to_string_lossy().into_owned();
        for unit in std::fs::read_dir(config.path()).unwrap() {
            let unit = unit.unwrap().path();
            if !unit.to_string_lossy().ends_with(".npz") {
                continue;
            }
            let (x, y) = (
                pool(&unit),
                pool(&b.join("units").join(&name).join(unit.file_name().unwrap())),
            );
            let scale = y.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
            let diff = x
                .iter()
                .zip(&y)
                .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            if diff > 1e-5 * scale && !out.contains(&name) {
                out.push(name.clone());
            }
        }
    }
    out.sort();
    out
}

/// The `(precision, eval_precision)` every unit manifest of `out` records.
fn unit_precisions(out: &Path) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = std::fs::read_dir(out.join("units"))
        .unwrap()
        .flat_map(|c| std::fs::read_dir(c.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .filter(|f| f.to_string_lossy().ends_with(".manifest.json"))
        .map(|m| {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(m).unwrap()).unwrap();
            let get = |k: &str| v[k].as_str().unwrap_or("absent").to_string();
            (get("precision"), get("eval_precision"))
        })
        .collect();
    seen.dedup();
    seen
}

#[test]
fn a_sweep_on_cuda_matches_the_cpu_and_reruns_to_the_byte() {
    let _device = cuda::shared();
    if cuda::device().is_none() {
        return;
    }
    let dir = tmp("sweep-on-cuda");
    let sweep = small_sweep(&dir);
    let (cpu, gpu, again) = (dir.join("cpu"), dir.join("gpu"), dir.join("gpu-again"));
    run(&sweep, &cpu, "cpu", None);
    // The test mode: the backbones in fp32 too.
    run(&sweep, &gpu, "cuda", Some("fp32"));
    run(&sweep, &again, "cuda", Some("fp32"));
    assert!(
        sweep_results(&gpu) == sweep_results(&again),
        "two runs on the GPU differ"
    );
    // A decoded value that sits on a uint8 rounding boundary may round apart on the two
    // backends (their last bits differ); the unit then embeds other pixels. Such configs are
    // reported, not compared: at most one may occur in this sweep.
    let flipped = flipped_configs(&cpu, &gpu);
    println!("configs whose decoded images differ between the CPU and the GPU: {flipped:?}");
    assert!(flipped.len() <= 1, "decoded images differ in {flipped:?}");
    let same_images = |v: Vec<(String, f64)>| -> Vec<(String, f64)> {
        v.into_iter()
            .filter(|(k, _)| !flipped.iter().any(|c| k.starts_with(&format!("{c} "))))
            .collect()
    };
    let want = same_images(values(&cpu));
    let (e, what) = worst(&want, &same_images(values(&gpu)));
    println!(
        "{} metric values; worst relative difference {e:.2e} ({what})",
        want.len()
    );
    assert!(!want.is_empty() && e <= 1e-4, "{what}");

    // The GPU default: backbones in tf32, recorded in every unit; the merge embeds the
    // reference in the same precision.
    let tf32 = dir.join("gpu-tf32");
    run(&sweep, &tf32, "cuda", None);
    let recorded = unit_precisions(&tf32);
    assert_eq!(recorded, [("fp32".to_string(), "tf32".to_string())]);
    let got = same_images(values(&tf32));
    for ((k, w), (_, g)) in want.iter().zip(&got) {
        if k.contains(" fid ") && k.ends_with(" value") || k.contains(" inception_score ") {
            println!(
                "tf32 {k}: cpu {w:.6}, gpu {g:.6} ({:.1e} rel)",
                (g - w).abs() / w.abs()
            );
        }
    }
    let (e, what) = worst(&want, &got);
    println!("backbones in tf32: worst relative difference {e:.2e} ({what})");
    assert!(
        e > 0.0,
        "tf32 backbones gave the fp32 metrics to the bit: not in tf32?"
    );
    // Features move by ≤ 3e-3 in tf32 (tests/models/model_cuda.rs); statistics of 4 samples
    // a class amplify that.
    assert!(e <= 2e-2, "{what}");
}
