//! Jobs on the CUDA backend (the emulated device in CI, a GPU on a GPU node): a job whose
//! networks need an op the backend lacks fails before its first unit, naming the op and the
//! network (the test build hides an op); and the device work of one SiT-S/2 forward, counted by
//! the stand-in driver.

#[cfg(any(feature = "cuda", feature = "cuda12"))]
mod on_cuda {
    use crate::common::cuda;
    use crate::common::CaseResult;
    use crate::common::{golden, golden_dir, tmp};
    use sitdiv::backend::cpu::Cpu;
    use sitdiv::backend::cuda::{standin, Cuda, CudaOptions};
    use sitdiv::backend::Precision;
    use sitdiv::models::sit::{SiT, SiTConfig};
    use sitdiv::models::synthetic;
    use sitdiv::pipeline::velocity::SiTVelocity;
    use sitdiv::rng;
    use sitdiv::sampling::guidance::Guider;
    use sitdiv::sampling::Velocity;

    /// Runs the binary; on the stand-in, also returns the driver's counters for the process.
    fn sitdiv(
        args: &[&str],
        dir: &std::path::Path,
        env: &[(&str, &str)],
    ) -> (std::process::Output, Option<serde_json::Value>) {
        let counts = dir.join("counts.json");
        let bin =
            std::env::var_os("SITDIV_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_sitdiv").into());
        let out = std::process::Command::new(bin)
            .args(args)
            .env("RUST_LOG", "warn")
            .env("SITDIV_STANDIN_COUNTS", &counts)
            .envs(env.iter().copied())
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
        // The device shared with the other tests of this binary that only use it.
        let _device = cuda::shared();
        if cuda::device().is_none() {
            return;
        }
        // The backend has every op: the test build hides one (the `fault-injection` feature).
        let missing = ["group_norm"];
        let hide = [("SITDIV_FAULT_UNSUPPORTED", missing[0])];
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
            &hide,
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
            &hide,
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

    /// What one forward after the first asks of the device, as the stand-in driver saw it, and
    /// as the backend counted it.
    struct Work {
        device: serde_json::Value,
        host: sitdiv::backend::cuda::Counts,
    }

    fn forward_work(cfg: &SiTConfig, precision: Precision, graphs: bool) -> Work {
        let gpu = Cuda::with_options(
            0,
            CudaOptions {
                graphs,
                ..CudaOptions::new(precision)
            },
        )
        .unwrap();
        let model = SiT::load(&gpu, &synthetic::sit(cfg, 0), cfg.clone()).unwrap();
        let n = 2;
        let x = rng::gaussian(1, 0, 0, 0, n * cfg.sample_len());
        let (t, y) = ([0.25f32, 0.75], [1i64, cfg.num_classes as i64]);
        model.forward(&gpu, &x, &t, &y).unwrap();
        standin::reset_counts();
        let before = gpu.counts();
        let out = model.forward(&gpu, &x, &t, &y).unwrap();
        assert!(
            out.iter().all(|v| v.is_finite()),
            "{precision:?}: non-finite output"
        );
        let after = gpu.counts();
        let host = sitdiv::backend::cuda::Counts {
            launches: after.launches - before.launches,
            graph_launches: after.graph_launches - before.graph_launches,
            gemms: after
                .gemms
                .iter()
                .map(|(k, v)| (k.clone(), v - before.gemms.get(k).copied().unwrap_or(0)))
                .collect(),
            macs: after.macs - before.macs,
            allocations: after.allocations - before.allocations,
            host_syncs: after.host_syncs - before.host_syncs,
        };
        Work {
            device: standin::counts().expect("stand-in counters"),
            host,
        }
    }

    /// Kernel launches and products: the device's work items of a forward.
    fn items(w: &Work) -> u64 {
        count(&w.device, "launches") + count(&w.device, "gemms")
    }

    /// The design of the GPU forward, asserted on the emulated device for every precision: at
    /// most 10 launches per transformer block and 40 outside them; after the first forward no
    /// allocation and no host synchronisation but the result's copy; every product on tensor
    /// cores in tf32 and bf16 (attention's two included; bf16's conditioning on TF32's); with
    /// graphs, one graph launch and no
    /// launch from the host per forward. Per-block counts come from depths 12 and 13.
    #[test]
    fn sit_forward_design_counters() {
        // The stand-in's counters are process-wide: the device alone while they are read.
        let _device = cuda::exclusive();
        let Some(_) = cuda::device() else { return };
        if !standin::active() {
            println!("SKIPPED: counters come from the emulated device's stand-in driver");
            return;
        }
        // SiT-S/2's widths on 8×8 latents (64 px): counts do not depend on the resolution.
        let mut cfg = SiTConfig::preset("SiT-S/2", 256).unwrap();
        cfg.input_size = 8;
        assert_eq!(cfg.depth, 12);
        println!("SiT-S/2 forward, batch 2, after the first, on the emulated device:");
        println!(
            "| precision | graphs | launches + GEMMs (depth 12) | per block | outside blocks | allocations | host syncs | graph launches | launches from the host | GEMMs by compute type |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for precision in [Precision::Fp32, Precision::Tf32, Precision::Bf16] {
            for graphs in [false, true] {
                cfg.depth = 12;
                let w12 = forward_work(&cfg, precision, graphs);
                cfg.depth = 13;
                let w13 = forward_work(&cfg, precision, graphs);
                let per_block = items(&w13) - items(&w12);
                let outside = items(&w12) - 12 * per_block;
                let gemms = &w12.device["gemms_by_compute"];
                println!(
                    "| {precision:?} | {} | {} | {per_block} | {outside} | {} | {} | {} | {} | {gemms} |",
                    if graphs { "on" } else { "off" },
                    items(&w12),
                    count(&w12.device, "allocations"),
                    count(&w12.device, "host_syncs"),
                    count(&w12.device, "graph_launches"),
                    w12.host.launches,
                );
                assert!(
                    per_block <= 10,
                    "{precision:?}: {per_block} launches per block: {}",
                    w12.device
                );
                assert!(
                    outside <= 40,
                    "{precision:?}: {outside} launches outside the blocks: {}",
                    w12.device
                );
                assert_eq!(
                    count(&w12.device, "allocations"),
                    0,
                    "{precision:?}: {}",
                    w12.device
                );
                assert_eq!(w12.host.allocations, 0, "{precision:?}");
                // The result's copy to the host is the forward's one wait.
                assert_eq!(
                    count(&w12.device, "host_syncs"),
                    1,
                    "{precision:?}: {}",
                    w12.device
                );
                // Under bf16 the conditioning's products (patch embedding, timestep MLP, the 13
                // adaLNs) are 3xTF32: TF32 tensor cores too.
                let by_type = |t: &str| gemms[t].as_u64().unwrap_or(0);
                let tf32 = by_type("COMPUTE_32F_FAST_TF32/32F");
                let (main, conditioning) = match precision {
                    Precision::Fp32 => (by_type("COMPUTE_32F/32F"), 0),
                    Precision::Tf32 => (tf32, 0),
                    Precision::Bf16 => (by_type("COMPUTE_32F/16BF"), tf32),
                };
                assert_eq!(
                    main + conditioning,
                    count(&w12.device, "gemms"),
                    "{precision:?}: {gemms}"
                );
                if precision == Precision::Bf16 {
                    assert_eq!(conditioning, 3 + 12 + 1, "bf16: {gemms}");
                }
                if graphs {
                    assert_eq!(
                        count(&w12.device, "graph_launches"),
                        1,
                        "{precision:?}: {}",
                        w12.device
                    );
                    assert_eq!(
                        w12.host.launches, 0,
                        "{precision:?}: launches from the host in a replayed forward"
                    );
                }
            }
        }
    }

    /// The golden SiT's forward on the GPU in every precision against the CPU's fp32 forward
    /// (max|a−r|/max|r|), eager and replayed from a graph: fp32 within the golden tolerance
    /// (1e-5), tf32 ≤ 3e-3, bf16 ≤ 2e-2, and a replay gives the eager bits. The tf32/bf16 errors
    /// are those of rounding the products' inputs (see the README).
    #[test]
    fn cuda_precisions_against_the_cpu_forward() {
        // The device shared with the other tests of this binary that only use it.
        let _device = cuda::shared();
        let Some(_) = cuda::device() else { return };
        let w =
            sitdiv::weights::WeightFile::open(golden_dir().join("sit_tiny.weights.safetensors"))
                .unwrap();
        let cfg = SiTConfig::from_metadata(&w).unwrap().unwrap();
        let io = sitdiv::weights::WeightFile::open(golden_dir().join("sit_tiny.io.safetensors"))
            .unwrap();
        let (x, t, y) = (
            io.f32("x").unwrap(),
            io.f32("t").unwrap(),
            io.i64("y").unwrap(),
        );
        let cpu = SiT::load(&sitdiv::backend::cpu::Cpu, &w, cfg.clone()).unwrap();
        let want = cpu.forward(&sitdiv::backend::cpu::Cpu, &x, &t, &y).unwrap();
        for precision in [Precision::Fp32, Precision::Tf32, Precision::Bf16] {
            let mut outs = Vec::new();
            for graphs in [false, true] {
                let gpu = Cuda::with_options(
                    0,
                    CudaOptions {
                        graphs,
                        ..CudaOptions::new(precision)
                    },
                )
                .unwrap();
                let model = SiT::load(&gpu, &w, cfg.clone()).unwrap();
                // Twice: a graph is captured on the first call and replayed on the second.
                model.forward(&gpu, &x, &t, &y).unwrap();
                outs.push(model.forward(&gpu, &x, &t, &y).unwrap());
            }
            let e = crate::common::rel_err(&outs[0], &want);
            println!("sit_tiny forward, {precision:?}: rel {e:.3e} against the CPU's fp32; graph replay bit-identical: {}", outs[0] == outs[1]);
            assert!(
                outs.iter().flatten().all(|v| v.is_finite()),
                "{precision:?}: non-finite output"
            );
            assert!(
                outs[0] == outs[1],
                "{precision:?}: the graph's replay differs from the eager forward"
            );
            let bound = match precision {
                Precision::Fp32 => 1e-5,
                Precision::Tf32 => 3e-3,
                Precision::Bf16 => 2e-2,
            };
            assert!(e <= bound, "{precision:?}: rel {e:.3e} > {bound:.0e}");
        }
    }

    /// A velocity on the GPU that also evaluates the CPU's fp32 velocity at every state it is
    /// asked for, and keeps the worst differences along the GPU's own trajectory: of the SiT
    /// forward (the batch the velocity feeds it: [x; x] with guidance) and of the velocity
    /// (after guidance).
    struct Shadow<'a> {
        gpu: SiTVelocity<'a, Cuda>,
        cpu: SiTVelocity<'a, Cpu>,
        worst_forward: f64,
        worst: f64,
    }

    impl Velocity for Shadow<'_> {
        fn eval(&mut self, x: &[f32], t: f32) -> anyhow::Result<Vec<f32>> {
            let y = &self.gpu.y;
            let xin = if self.gpu.guider.is_some() {
                let cond = &x[..x.len() / 2];
                [cond, cond].concat()
            } else {
                x.to_vec()
            };
            let tv = vec![t; y.len()];
            let g = self.gpu.model.forward(self.gpu.be, &xin, &tv, y)?;
            let c = self.cpu.model.forward(&Cpu, &xin, &tv, y)?;
            self.worst_forward = self.worst_forward.max(crate::common::rel_err(&g, &c));
            let g = self.gpu.eval(x, t)?;
            let c = self.cpu.eval(x, t)?;
            self.worst = self.worst.max(crate::common::rel_err(&g, &c));
            Ok(g)
        }
        fn begin_step(&mut self, step: usize) {
            self.gpu.begin_step(step);
            self.cpu.begin_step(step);
        }
    }

    /// Four sampler golden cases (ODE and SDE, with and without guidance 4) on the GPU in tf32 and
    /// bf16, measured and printed: along the GPU's trajectory, each SiT forward and each velocity
    /// (guided where the case guides, upstream's `forward_with_cfg`) against the CPU's fp32 one
    /// of the same state, and the end sample against the golden fp32 sample. The bounds
    /// (3e-3 / 2e-2) hold for the golden forward (`cuda_precisions_against_the_cpu_forward`); on
    /// these random weights a single bf16 forward is already near its bound, and guidance 4
    /// multiplies the forward's error in the velocity.
    #[test]
    fn cuda_sampler_golden_cases_in_tf32_and_bf16() {
        let _device = cuda::shared();
        let Some(_) = cuda::device() else { return };
        let w = golden_dir().join("sit_tiny.weights.safetensors");
        let file = sitdiv::weights::WeightFile::open(&w).unwrap();
        let cfg = SiTConfig::from_metadata(&file).unwrap().unwrap();
        let cpu = SiT::load(&Cpu, &file, cfg.clone()).unwrap();
        let cases = [
            "sampler_ode_euler_n10.io.safetensors",
            "sampler_ode_euler_n10_cfg4.0_interval0.3-0.7_published.io.safetensors",
            "sampler_sde_heun_sigma_norm1.0_tweedie.io.safetensors",
            "sampler_sde_euler_sigma_norm1.0_mean_cfg4.0.io.safetensors",
        ];
        println!("| case | precision | worst forward | worst velocity | end sample vs golden |");
        println!("|---|---|---|---|---|");
        for precision in [Precision::Tf32, Precision::Bf16] {
            let gpu = Cuda::with_options(0, CudaOptions::new(precision)).unwrap();
            let model = SiT::load(&gpu, &file, cfg.clone()).unwrap();
            for case in cases {
                let (y, guidance) = crate::common::case_labels_and_guidance(case);
                let mut shadow = Shadow {
                    gpu: SiTVelocity::new(&gpu, &model, y.clone()),
                    cpu: SiTVelocity::new(&Cpu, &cpu, y),
                    worst_forward: 0.0,
                    worst: 0.0,
                };
                shadow.gpu.guider = guidance.map(Guider::new);
                shadow.cpu.guider = guidance.map(Guider::new);
                let (f, res, _) = crate::common::run_case_on(case, Some(&mut shadow));
                let sample = match res {
                    CaseResult::Ode(r) => r.sample,
                    CaseResult::Sde(r) => r.sample,
                };
                let end = crate::common::rel_err(&sample, &f.f32("sample_full_batch").unwrap());
                let (forward, worst) = (shadow.worst_forward, shadow.worst);
                println!("| {case} | {precision:?} | {forward:.3e} | {worst:.3e} | {end:.3e} |");
                assert!(
                    forward.is_finite() && worst.is_finite() && end.is_finite(),
                    "{case} in {precision:?}"
                );
            }
        }
    }

    /// Every guidance method through `sitdiv sample` on the device (fp32) against the CPU: the
    /// same latents within 1e-4 rel (APG's and CFG-Zero*'s per-sample reductions, CADS's
    /// embeddings fed in place of the label rows, autoguidance's second model).
    #[test]
    fn guidance_methods_on_cuda_match_the_cpu() {
        let _device = cuda::shared();
        let Some(_) = cuda::device() else { return };
        let dir = tmp("cuda-guidance");
        let w = golden("sit_tiny.weights.safetensors");
        let guide = crate::common::scaled_tiny_weights(&dir, 0.8);
        let g = guide.display().to_string();
        let cases: [(&str, Vec<&str>); 5] = [
            ("apg", vec!["--guidance", "apg", "--cfg", "4"]),
            (
                "cfg-zero-star",
                vec![
                    "--guidance",
                    "cfg-zero-star",
                    "--cfg",
                    "4",
                    "--method",
                    "heun",
                ],
            ),
            (
                "cads",
                vec!["--guidance", "cads", "--cfg", "3", "--mode", "sde"],
            ),
            ("cads-unguided", vec!["--guidance", "cads"]),
            (
                "autoguidance",
                vec![
                    "--guidance",
                    "autoguidance",
                    "--cfg",
                    "2",
                    "--guide-weights",
                    &g,
                ],
            ),
        ];
        for (name, flags) in cases {
            let run = |device: &str| {
                let out = dir.join(format!("{name}-{device}.npy"));
                let o = out.display().to_string();
                let mut a = vec![
                    "sample",
                    "--weights",
                    &w,
                    "--num-samples",
                    "3",
                    "--steps",
                    "6",
                ];
                a.extend(flags.iter().copied());
                a.extend(["--device", device, "--latents-out", &o]);
                let (r, _) = sitdiv(&a, &dir, &[]);
                assert!(
                    r.status.success(),
                    "{name} on {device}: {}",
                    String::from_utf8_lossy(&r.stderr)
                );
                sitdiv::io::npy::read_f32(&out).unwrap().data
            };
            let (cpu, gpu) = (run("cpu"), run("cuda"));
            let e = crate::common::rel_err(&gpu, &cpu);
            println!("{name}: CUDA against CPU rel {e:.3e}");
            assert!(e <= 1e-4, "{name}: rel {e:.3e} > 1e-4");
        }
    }
}
