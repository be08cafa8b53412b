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

fn run(sweep: &Path, out: &Path, device: &str) {
    for step in ["run", "merge"] {
        let args = [
            "sweep",
            step,
            sweep.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--device",
            device,
        ];
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

#[test]
fn a_sweep_on_cuda_matches_the_cpu_and_reruns_to_the_byte() {
    let _device = cuda::shared();
    if cuda::device().is_none() {
        return;
    }
    let dir = tmp("sweep-on-cuda");
    let sweep = small_sweep(&dir);
    let (cpu, gpu, again) = (dir.join("cpu"), dir.join("gpu"), dir.join("gpu-again"));
    run(&sweep, &cpu, "cpu");
    run(&sweep, &gpu, "cuda");
    run(&sweep, &again, "cuda");
    assert!(
        sweep_results(&gpu) == sweep_results(&again),
        "two runs on the GPU differ"
    );
    let (want, got) = (values(&cpu), values(&gpu));
    assert_eq!(want.len(), got.len());
    let mut worst = (0.0f64, String::new());
    for ((k, w), (k2, g)) in want.iter().zip(&got) {
        assert_eq!(k, k2);
        // Relative to the value, or to 1e-6 for values that are zero up to rounding (the
        // diversity of identical samples).
        let e = (g - w).abs() / w.abs().max(1e-6);
        if e > worst.0 || e.is_nan() {
            worst = (e, format!("{k}: cpu {w}, gpu {g}"));
        }
    }
    println!(
        "{} metric values; worst relative difference {:.2e} ({})",
        want.len(),
        worst.0,
        worst.1
    );
    assert!(worst.0 <= 1e-4, "{}", worst.1);
}
