//! Jobs on the CUDA backend (the emulated device in CI, a GPU on a GPU node): a job whose
//! networks need an op the backend lacks fails before its first unit, naming the op and the
//! network; and the device work of one SiT-S/2 forward, counted by the stand-in driver.

mod common;

#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[path = "common/cuda.rs"]
mod cuda;

#[cfg(any(feature = "cuda", feature = "cuda12"))]
mod on_cuda {
    use super::common::{golden_dir, tmp};
    use super::cuda;
    use sitdiv::backend::cuda::{standin, Cuda};
    use sitdiv::backend::{Backend, Precision};
    use sitdiv::models::sit::{SiT, SiTConfig};
    use sitdiv::models::synthetic;
    use sitdiv::models::vae::AutoencoderKL;
    use sitdiv::sampling::rng;

    fn golden(name: &str) -> String {
        golden_dir().join(name).display().to_string()
    }

    /// The ops of the SD-VAE decoder this backend lacks (none once it has them all).
    fn vae_missing(gpu: &Cuda) -> Vec<&'static str> {
        AutoencoderKL::<Cuda>::OPS
            .iter()
            .filter(|&&op| !gpu.supports(op))
            .map(|op| op.name())
            .collect()
    }

    /// Runs the binary; on the stand-in, also returns the driver's counters for the process.
    fn sitdiv(
        args: &[&str],
        dir: &std::path::Path,
    ) -> (std::process::Output, Option<serde_json::Value>) {
        let counts = dir.join("counts.json");
        let bin =
            std::env::var_os("SITDIV_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_sitdiv").into());
        let out = std::process::Command::new(bin)
            .args(args)
            .env("RUST_LOG", "warn")
            .env("SITDIV_STANDIN_COUNTS", &counts)
            .output()
            .expect("run sitdiv");
        let c = std::fs::read_to_string(&counts)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok());
        let _ = std::fs::remove_file(&counts);
        (out, c)
    }

    #[test]
    fn jobs_needing_ops_the_backend_lacks_fail_before_their_first_unit() {
        let Some(gpu) = cuda::device() else { return };
        let missing = vae_missing(&gpu);
        if missing.is_empty() {
            println!("the CUDA backend has every op of the SD-VAE decoder: nothing to refuse");
            return;
        }
        drop(gpu);
        let dir = tmp("gpu-missing-op");
        let out = dir.join("images");
        let o = out.display().to_string();
        let (w, vae) = (
            golden("sit_tiny.weights.safetensors"),
            golden("vae_tiny.weights.safetensors"),
        );
        let (r, counts) = sitdiv(
            &[
                "sample",
                "--weights",
                &w,
                "--vae",
                &vae,
                "--out",
                &o,
                "--num-samples",
                "4",
                "--steps",
                "2",
                "--device",
                "cuda",
            ],
            &dir,
        );
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "sample --vae on cuda must fail: {err}");
        assert!(
            err.contains("SD-VAE decoder needs") && err.contains(missing[0]),
            "{err}"
        );
        assert!(!out.exists(), "output written despite the error");
        // Not one kernel ran: the check comes before any sampling.
        if let Some(c) = counts {
            assert_eq!(count(&c, "launches"), 0, "it computed before failing: {c}");
        }
        println!("sample: {}", err.trim());

        // A sweep on the SLURM default device: no unit is computed, none is written.
        let runs = dir.join("runs");
        // Beside tests/golden, also where test binaries run away from the build tree.
        let sweep = golden_dir().join("../../sweeps/tiny.toml");
        let (r, counts) = sitdiv(
            &[
                "sweep",
                "run",
                &sweep.display().to_string(),
                "--out",
                &runs.display().to_string(),
                "--device",
                "cuda",
            ],
            &dir,
        );
        let err = String::from_utf8_lossy(&r.stderr);
        if let Some(c) = counts {
            assert_eq!(count(&c, "launches"), 0, "it computed before failing: {c}");
        }
        assert!(!r.status.success(), "sweep run on cuda must fail: {err}");
        assert!(
            err.contains("SD-VAE decoder needs") && err.contains(missing[0]),
            "{err}"
        );
        let units: Vec<_> = walk(&runs)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "npz"))
            .collect();
        assert!(
            units.is_empty(),
            "units written before the failure: {units:?}"
        );
        println!("sweep run: {}", err.trim());
    }

    fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
        let Ok(rd) = std::fs::read_dir(d) else {
            return Vec::new();
        };
        rd.flatten()
            .flat_map(|e| {
                let p = e.path();
                if p.is_dir() {
                    walk(&p)
                } else {
                    vec![p]
                }
            })
            .collect()
    }

    fn count(c: &serde_json::Value, key: &str) -> u64 {
        c[key].as_f64().unwrap_or(0.0) as u64
    }

    /// What one SiT-S/2 forward (depth 12, 256 px, batch 2) asks of the device: the baseline the
    /// GPU speed work improves on. The counters come from the stand-in driver.
    #[test]
    fn sit_s2_forward_counters() {
        let Some(_) = cuda::device() else { return };
        if !standin::active() {
            println!("SKIPPED: counters come from the emulated device's stand-in driver");
            return;
        }
        let cfg = SiTConfig::preset("SiT-S/2", 256).unwrap();
        assert_eq!(cfg.depth, 12);
        let weights = synthetic::sit(&cfg, 0);
        let n = 2;
        let x = rng::gaussian(1, 0, 0, 0, n * cfg.sample_len());
        let t = [0.25f32, 0.75];
        let y = [1i64, cfg.num_classes as i64];
        println!("SiT-S/2 forward, batch {n}, on the emulated device:");
        println!("| precision | launches | allocations | copies h→d / d→h | host syncs | events | GEMMs by compute type |");
        println!("|---|---|---|---|---|---|---|");
        for precision in [Precision::Fp32, Precision::Tf32] {
            let gpu = Cuda::new(0, precision, false).unwrap();
            let model = SiT::load(&gpu, &weights, cfg.clone()).unwrap();
            standin::reset_counts();
            let out = model.forward(&gpu, &x, &t, &y).unwrap();
            let c = standin::counts().expect("stand-in counters");
            assert_eq!(out.len(), n * cfg.sample_len());
            assert!(out.iter().all(|v| v.is_finite()));
            let gemms = &c["gemms_by_compute"];
            println!(
                "| {precision:?} | {} | {} | {} / {} | {} | {} | {} |",
                count(&c, "launches"),
                count(&c, "allocations"),
                count(&c, "copies_htod"),
                count(&c, "copies_dtoh"),
                count(&c, "host_syncs"),
                count(&c, "events_created"),
                gemms
            );
            println!("launches by kernel: {}", c["launches_by_kernel"]);
            // Five products per block, two in the timestep MLP, the patch embedding and two in
            // the final layer.
            assert_eq!(count(&c, "gemms"), 5 * cfg.depth as u64 + 5, "{c}");
            let want = match precision {
                Precision::Tf32 => "COMPUTE_32F_FAST_TF32/32F",
                _ => "COMPUTE_32F/32F",
            };
            assert_eq!(
                gemms[want].as_u64(),
                Some(count(&c, "gemms")),
                "every GEMM in {want}: {gemms}"
            );
            // The result comes back once (a copy to pageable memory, which waits for the
            // stream); nothing else waits for the device.
            assert_eq!(count(&c, "copies_dtoh"), 1, "{c}");
            assert_eq!(count(&c, "host_syncs"), 1, "{c}");
        }
    }
}
