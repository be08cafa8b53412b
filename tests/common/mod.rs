//! Shared helpers of the integration tests, one copy per test binary (each binary's main.rs
//! declares `#[path = "../common/mod.rs"] mod common;`): file locations, the golden README's
//! error metric, a runner that replays any sampler file through the library, and in submodules
//! the op tests' inputs and references (`ops`), a recording backend (`recording`) and the CUDA
//! device (`cuda`).
#![allow(dead_code)]

#[cfg(any(feature = "cuda", feature = "cuda12"))]
pub mod cuda;
pub mod ops;
pub mod recording;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use sitdiv::backend::cpu::Cpu;
use sitdiv::models::sit::{SiT, SiTConfig};
use sitdiv::pipeline::velocity::SiTVelocity;
use sitdiv::sampling::guidance::{Guidance, Guider, IntervalMode, Rule};
use sitdiv::sampling::ode::{self, OdeMethod, OdeResult, OdeSettings, Tolerances};
use sitdiv::sampling::path::{DiffusionForm, PathType};
use sitdiv::sampling::sde::{self, LastStep, NoiseSource, SdeMethod, SdeResult, SdeSettings};
use sitdiv::sampling::{grid, Prediction, Velocity};
use sitdiv::weights::WeightFile;

/// The repository's root, where `sweeps/`, `scripts/` and `assets/` are.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// tests/golden, or `SITDIV_GOLDEN_DIR` when test binaries run away from the source tree.
pub fn golden_dir() -> PathBuf {
    match std::env::var_os("SITDIV_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => repo().join("tests/golden"),
    }
}

/// A golden file's path, as a command-line argument.
pub fn golden(name: &str) -> String {
    golden_dir().join(name).display().to_string()
}

pub fn open(name: &str) -> WeightFile {
    WeightFile::open(golden_dir().join(name)).expect("golden file")
}

/// A fresh, empty scratch folder for one test. Each call gets its own folder, also when tests of
/// different modules of one binary (one process) pick the same name.
pub fn tmp(name: &str) -> PathBuf {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("sitdiv-test-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch folder");
    d
}

/// Runs the binary (`SITDIV_BIN` overrides it, for test executables run away from the build
/// tree); `SITDIV_TEST_DEVICE=cuda` runs every `sample` command on that device, and
/// `SITDIV_TEST_PRECISION=tf32` in that precision.
pub fn sitdiv(args: &[&str]) -> std::process::Output {
    let bin = std::env::var_os("SITDIV_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_sitdiv").into());
    let mut cmd = Command::new(bin);
    cmd.args(args).env("RUST_LOG", "warn");
    if let Ok(dev) = std::env::var("SITDIV_TEST_DEVICE") {
        if args.first() == Some(&"sample") && !args.contains(&"--device") {
            cmd.args(["--device", &dev]);
        }
    }
    if let Ok(p) = std::env::var("SITDIV_TEST_PRECISION") {
        if args.first() == Some(&"sample") && !args.contains(&"--precision") {
            cmd.args(["--precision", &p]);
        }
    }
    cmd.output().expect("run sitdiv")
}

/// Writes a golden tensor as .npy (float32 keeps its shape; int64 likewise).
pub fn golden_npy(file: &str, tensor: &str, dir: &std::path::Path) -> String {
    use sitdiv::io::npy;
    let f = open(file);
    let info = f.info(tensor).unwrap().clone();
    let p = dir.join(format!("{tensor}.npy"));
    if tensor == "y" {
        npy::write_i64(&p, &info.shape, &f.i64(tensor).unwrap()).unwrap();
    } else {
        npy::write_f32(&p, &info.shape, &f.f32(tensor).unwrap()).unwrap();
    }
    p.display().to_string()
}

/// Replays a sampler golden case (tests/golden/sampler_*.io.safetensors: initial noise, labels,
/// replayed SDE noise) through `sitdiv sample` with the tiny SiT, `flags` and `device` flags;
/// returns the sample's error against the golden one.
pub fn replay_golden_case(file: &str, flags: &[&str], device: &[&str]) -> f64 {
    let dir = tmp(&format!(
        "{}{}",
        file.trim_end_matches(".io.safetensors"),
        device.join("")
    ));
    let (z, y) = (golden_npy(file, "z", &dir), golden_npy(file, "y", &dir));
    let out = dir.join("x.npy").display().to_string();
    let w = golden_dir()
        .join("sit_tiny.weights.safetensors")
        .display()
        .to_string();
    let mut args = vec![
        "sample",
        "--weights",
        &w,
        "--init-noise",
        &z,
        "--labels",
        &y,
    ];
    let noise;
    if open(file).info("noise").is_some() {
        noise = golden_npy(file, "noise", &dir);
        args.extend(["--replay-noise", noise.as_str()]);
    }
    args.extend(["--latents-out", out.as_str()]);
    args.extend(flags);
    args.extend(device);
    let r = sitdiv(&args);
    assert!(
        r.status.success(),
        "{file}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let got = sitdiv::io::npy::read_f32(std::path::Path::new(&out))
        .unwrap()
        .data;
    rel_err(&got, &open(file).f32("sample").unwrap())
}

/// Runs the binary expecting success; returns its stdout. A failure shows the command and stderr.
pub fn succeeds(args: &[&str]) -> String {
    let r = sitdiv(args);
    assert!(
        r.status.success(),
        "sitdiv {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&r.stdout).into_owned()
}

/// `sitdiv sweep run SWEEP --out OUT --shard-index I --num-shards N` for each of `shards`, which
/// must succeed.
pub fn run_sweep_shards(sweep: &std::path::Path, out: &std::path::Path, shards: &[&str], n: &str) {
    for i in shards {
        succeeds(&[
            "sweep",
            "run",
            &sweep.display().to_string(),
            "--out",
            &out.display().to_string(),
            "--shard-index",
            i,
            "--num-shards",
            n,
        ]);
    }
}

/// Runs the binary expecting failure: a non-zero exit, `needle` in stderr, and `out` not written.
pub fn fails(args: &[&str], needle: &str, out: &std::path::Path) {
    let r = sitdiv(args);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains(needle),
        "{needle:?} not in {err}"
    );
    assert!(!out.exists(), "output written despite the error");
    println!("{}", err.trim());
}

/// max|a − r| / max|r|, the golden README's metric.
pub fn rel_err(a: &[f32], r: &[f32]) -> f64 {
    assert_eq!(a.len(), r.len(), "length mismatch");
    let num = a
        .iter()
        .zip(r)
        .map(|(&a, &r)| (a as f64 - r as f64).abs())
        .fold(0.0, f64::max);
    let den = r.iter().map(|&r| (r as f64).abs()).fold(0.0, f64::max);
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

/// Compares named tensors; prints each as a % of its tolerance and fails naming the first that
/// exceeds it.
pub struct Report {
    pub what: String,
    pub rows: Vec<(String, f64, f64)>,
}

impl Report {
    pub fn new(what: &str) -> Self {
        Report {
            what: what.to_string(),
            rows: Vec::new(),
        }
    }
    pub fn check(&mut self, name: &str, a: &[f32], r: &[f32], tol: f64) {
        self.rows.push((name.to_string(), rel_err(a, r), tol));
    }
    pub fn finish(self) {
        // Share of the tolerance used; exact (zero-tolerance) checks count only when they fail.
        let share = |&(_, e, t): &(String, f64, f64)| {
            if t > 0.0 {
                e / t
            } else if e == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        };
        if let Some(w) = self
            .rows
            .iter()
            .filter(|r| r.2 > 0.0)
            .max_by(|a, b| share(a).total_cmp(&share(b)))
        {
            println!(
                "{}: worst tensor {}: rel {:.3e} = {:.1}% of tolerance {:.0e}",
                self.what,
                w.0,
                w.1,
                100.0 * share(w),
                w.2
            );
        }
        if let Some((n, e, t)) = self.rows.iter().find(|(_, e, t)| e.is_nan() || e > t) {
            panic!(
                "{}: first failing tensor {n}: rel {e:.3e} > tolerance {t:.0e}",
                self.what
            );
        }
    }
}

/// A sampler case's `config` metadata.
pub fn case_config(f: &WeightFile) -> serde_json::Value {
    serde_json::from_str(&f.metadata()["config"]).expect("config json")
}

pub fn load_tiny(weights: &str) -> SiT<Cpu> {
    let w = open(weights);
    let cfg = SiTConfig::from_metadata(&w)
        .unwrap()
        .expect("config in metadata");
    SiT::load(&Cpu, &w, cfg).unwrap()
}

/// The toy drift of the model-free dopri5 case: `a = t*12 − 6; v = (a*x − (x*x)*x) + 0.5`.
pub fn toy_cubic(x: &[f32], t: f32) -> anyhow::Result<Vec<f32>> {
    let a = t * 12.0 - 6.0;
    Ok(x.iter().map(|&x| (a * x - (x * x) * x) + 0.5).collect())
}

struct Replay {
    noise: Vec<f32>,
    per_draw: usize,
}

impl NoiseSource for Replay {
    fn draw(&mut self, step: usize) -> anyhow::Result<Vec<f32>> {
        Ok(self.noise[step * self.per_draw..(step + 1) * self.per_draw].to_vec())
    }
}

pub enum CaseResult {
    Ode(OdeResult),
    Sde(SdeResult),
}

/// Replays a sampler golden file through the library (settings from its metadata) and returns
/// the port's result plus the grid it built.
pub fn run_case(file: &str) -> (WeightFile, CaseResult, Vec<f32>) {
    run_case_on(file, None)
}

/// The solver batch's labels and the guidance of a sampler golden file: what its velocity
/// function needs.
pub fn case_labels_and_guidance(file: &str) -> (Vec<i64>, Option<Guidance>) {
    let f = open(file);
    let c = case_config(&f);
    let cfg_scale = c["cfg_scale"].as_f64().unwrap();
    let guidance = (cfg_scale > 1.0).then(|| {
        let interval = c.get("cfg_interval").filter(|v| !v.is_null());
        Guidance {
            scale: cfg_scale as f32,
            interval: interval.map(|i| {
                (
                    i["cfg_start"].as_f64().unwrap() as f32,
                    i["cfg_end"].as_f64().unwrap() as f32,
                )
            }),
            mode: match interval.map(|i| i["semantics"].as_str().unwrap()) {
                Some("fork") => IntervalMode::Fork,
                _ => IntervalMode::Published,
            },
            all_channels: false,
            rule: Rule::Cfg,
        }
    });
    (f.i64("y_model").unwrap(), guidance)
}

/// [`run_case`] with `velocity` in place of the golden SiT on the CPU (or the toy function):
/// one built from [`case_labels_and_guidance`].
pub fn run_case_on(
    file: &str,
    velocity: Option<&mut dyn Velocity>,
) -> (WeightFile, CaseResult, Vec<f32>) {
    let f = open(file);
    let c = case_config(&f);
    let path = match c["path_type"].as_str().unwrap() {
        "Linear" => PathType::Linear,
        "GVP" => PathType::Gvp,
        "VP" => PathType::Vp,
        p => panic!("path {p}"),
    };
    let (t0, t1) = (c["t0"].as_f64().unwrap(), c["t1"].as_f64().unwrap());
    let steps = c["num_steps"].as_u64().unwrap() as usize;
    let grid = grid::linspace_f32(t0, t1, steps);
    let x_init = f.f32("x_init").unwrap();
    let (y_model, guidance) = case_labels_and_guidance(file);
    let weights = c["weights"].as_str().map(str::to_string);
    let model = weights.as_deref().map(load_tiny);
    let mut toy = toy_cubic;
    let mut vel;
    let velocity: &mut dyn Velocity = match (velocity, &model) {
        (Some(v), _) => v,
        (None, Some(m)) => {
            vel = SiTVelocity::new(&Cpu, m, y_model);
            vel.guider = guidance.map(Guider::new);
            &mut vel
        }
        (None, None) => &mut toy,
    };
    let res = if c["mode"] == "ODE" {
        let method = match c["sampling_method"].as_str().unwrap() {
            "euler" => OdeMethod::Euler,
            "heun2" => OdeMethod::Heun,
            "dopri5" => OdeMethod::Dopri5,
            m => panic!("method {m}"),
        };
        let tol = Tolerances {
            atol: c["atol"].as_f64().unwrap(),
            rtol: c["rtol"].as_f64().unwrap(),
        };
        let s = OdeSettings {
            method,
            path,
            prediction: Prediction::Velocity,
            tol,
        };
        CaseResult::Ode(ode::sample(velocity, s, x_init, &grid, true).unwrap())
    } else {
        let form = match c["diffusion_form"].as_str().unwrap() {
            "constant" => DiffusionForm::Constant,
            "SBDM" => DiffusionForm::Sbdm,
            "sigma" => DiffusionForm::Sigma,
            "linear" => DiffusionForm::Linear,
            "decreasing" => DiffusionForm::Decreasing,
            "increasing-decreasing" => DiffusionForm::IncreasingDecreasing,
            d => panic!("form {d}"),
        };
        let last_step = match c["last_step"].as_str() {
            None => LastStep::None,
            Some("Mean") => LastStep::Mean,
            Some("Tweedie") => LastStep::Tweedie,
            Some("Euler") => LastStep::Euler,
            Some(l) => panic!("last step {l}"),
        };
        let s = SdeSettings {
            method: if c["sampling_method"] == "Heun" {
                SdeMethod::Heun
            } else {
                SdeMethod::Euler
            },
            path,
            prediction: Prediction::Velocity,
            form,
            norm: c["diffusion_norm"].as_f64().unwrap(),
            last_step,
            last_step_size: c["last_step_size_effective"].as_f64().unwrap(),
        };
        let noise = f.f32("noise").unwrap();
        let per_draw = noise.len() / (steps - 1);
        let mut replay = Replay { noise, per_draw };
        CaseResult::Sde(sde::sample(velocity, s, x_init, &grid, &mut replay, true).unwrap())
    };
    (f, res, grid)
}

/// The script's formula images (its docstring has the table): (pixels, H, W).
pub fn formula_image(name: &str) -> (Vec<u8>, usize, usize) {
    if name == "noise" || name == "big" {
        let (side, seed) = if name == "noise" { (256, 9) } else { (512, 10) };
        let px = sitdiv::rng::uniform(seed, 0, 0, 0, side * side * 3)
            .iter()
            .map(|u| (256.0 * u).floor() as u8)
            .collect();
        return (px, side, side);
    }
    let (h, w) = if name == "wide" {
        (200, 320)
    } else {
        (256, 256)
    };
    let mut px = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let v = match name {
                    "gradient" => (x + y + 64 * c) % 256,
                    "checker" => 255 * ((x / 8 + y / 8 + c) % 2),
                    "edges" => {
                        let on = match c {
                            0 => x > 100,
                            1 => y > 150,
                            _ => x + y > 256,
                        };
                        235 * on as usize + 20
                    }
                    _ => (2 * x + y + 50 * c) % 256,
                };
                px.push(v as u8);
            }
        }
    }
    (px, h, w)
}

/// `count` RGB images of `side`², image n of `seed`: pixel (y, x, c) = ⌊256 · u(seed, n,
/// (y·W + x)·3 + c)⌋.
pub fn uniform_images(seed: u64, count: usize, side: usize) -> Vec<u8> {
    (0..count)
        .flat_map(|n| sitdiv::rng::uniform(seed, n as u64, 0, 0, side * side * 3))
        .map(|u| (256.0 * u).floor() as u8)
        .collect()
}

/// A merged sweep's result files by name: `results.csv` and every `results/*.json` (not the
/// manifests, which hold hosts and times).
pub fn sweep_results(out: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut v = vec![(
        "results.csv".to_string(),
        std::fs::read(out.join("results.csv")).unwrap(),
    )];
    let mut files: Vec<_> = std::fs::read_dir(out.join("results"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.to_string_lossy().ends_with(".manifest.json"))
        .collect();
    files.sort();
    for f in files {
        v.push((
            f.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read(&f).unwrap(),
        ));
    }
    v
}

/// LPIPS-Alex weights in `dir`: the AlexNet trunk from the formula, the v0.1 heads from the
/// golden file.
pub fn lpips_alex_weights(dir: &std::path::Path) -> PathBuf {
    let g = WeightFile::open(golden_dir().join("lpips_formula.io.safetensors")).unwrap();
    let net = sitdiv::models::lpips::LpipsNet::Alex;
    let (trunk, rest): (Vec<_>, Vec<_>) = net
        .expected_tensors()
        .into_iter()
        .partition(|e| e.name.starts_with("net."));
    let mut t: Vec<_> = sitdiv::models::synthetic::formula_weights(trunk, 2017)
        .unwrap()
        .tensors
        .into_iter()
        .map(|(k, (s, d))| (k, s, d))
        .collect();
    for e in rest {
        t.push((
            e.name.clone(),
            e.shape.clone(),
            g.f32(&format!("alex.{}", e.name)).unwrap(),
        ));
    }
    let w = dir.join("lpips-alex.safetensors");
    sitdiv::weights::write_f32_safetensors(&w, &t, None).unwrap();
    w
}

/// The tiny SiT (autoguidance's guide in the tests) with every tensor scaled by `k`, written
/// to `dir`.
pub fn scaled_tiny_weights(dir: &std::path::Path, k: f32) -> PathBuf {
    let w = open("sit_tiny.weights.safetensors");
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = w
        .names()
        .map(|n| {
            let v = w.f32(n).unwrap().iter().map(|&x| x * k).collect();
            (n.to_string(), w.info(n).unwrap().shape.clone(), v)
        })
        .collect();
    let meta = w.metadata().clone().into_iter().collect();
    let path = dir.join(format!("sit_tiny_x{k}.safetensors"));
    sitdiv::weights::write_f32_safetensors(&path, &tensors, Some(meta)).unwrap();
    path
}

/// A small sweep of the tiny goldens: two run configs (cfg 1 and 2, ODE Euler 4 steps) × 2
/// classes × 2 samples, units of 2; the formula Inception against `reference` for `metrics`,
/// and DINOv2's diversity and Vendi.
pub fn small_sweep_toml(name: &str, reference: &std::path::Path, metrics: &str) -> String {
    small_sweep_with(
        name,
        &format!(
            r#"inception = "formula"
reference = "{}"
metrics = [{metrics}]
bootstrap = 10
backbones = [{{ backbone = "dinov2-b14", weights = "{}", metrics = ["diversity", "vendi"] }}]"#,
            reference.display(),
            golden("dinov2_tiny.weights.safetensors"),
        ),
    )
}

/// [`small_sweep_toml`] with the `[evaluation]` section's body given.
pub fn small_sweep_with(name: &str, evaluation: &str) -> String {
    format!(
        r#"name = "{name}"
[model]
weights = "{}"
vae = "{}"
[evaluation]
{evaluation}
[run]
unit_size = 2
[defaults]
steps = [4]
classes = [0, 1]
samples_per_class = [2]
[[grid]]
cfg = [1.0, 2.0]
sampler = ["ode-euler"]
"#,
        golden("sit_tiny.weights.safetensors"),
        golden("vae_tiny.weights.safetensors"),
    )
}

/// The formula SD-VAE encoder of tests/golden/vae_encoder.io.safetensors (seed 2018 over the
/// sorted encoder.* and quant_conv.* names) and its config.
pub fn vae_encoder_weights() -> (
    sitdiv::weights::source::Synthetic,
    sitdiv::models::vae::VaeConfig,
) {
    let io = open("vae_encoder.io.safetensors");
    let cfg: sitdiv::models::vae::VaeConfig =
        serde_json::from_str(&io.metadata()["config"]).unwrap();
    let w = sitdiv::models::synthetic::vae_encoder(&cfg, 2018).unwrap();
    (w, cfg)
}
