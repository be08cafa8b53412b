//! `sitdiv sample`: validate every input up front, run the shard's work units, write the latents
//! (cond half only) and a manifest, atomically.

use std::path::PathBuf;

use anyhow::{bail, ensure, Result};
use serde::Serialize;

use super::decode::Decoder;
use super::inputs::{read_inputs, Inputs, UnitNoise};
use super::progress::Progress;
use super::{shard_units, Unit};
use crate::backend::cpu::Cpu;
use crate::backend::{Backend, Precision};
use crate::io::write_with_manifest;
use crate::io::{npy, npz};
use crate::models::sit::{SiT, SiTConfig};
use crate::models::synthetic;
use crate::pipeline::velocity::SiTVelocity;
use crate::rng;
use crate::sampling::guidance::{Guidance, IntervalMode};
use crate::sampling::ode::{self, OdeMethod, OdeSettings, Tolerances};
use crate::sampling::path::{self, DiffusionForm, PathType};
use crate::sampling::sde::{self, LastStep, SdeMethod, SdeSettings};
use crate::sampling::{grid, Prediction};
use crate::weights::source::TensorSource;
use crate::weights::WeightFile;

/// The sampler, as chosen by `--mode` and `--method`.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Ode(OdeMethod),
    Sde(SdeMethod),
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Ode(m) => write!(f, "ODE {m:?}"),
            Method::Sde(m) => write!(f, "SDE {m:?}"),
        }
    }
}

impl Method {
    pub fn parse(mode: &str, method: &str) -> Result<Method> {
        Ok(
            match (
                mode.to_ascii_lowercase().as_str(),
                method.to_ascii_lowercase().as_str(),
            ) {
                ("ode", "euler") => Method::Ode(OdeMethod::Euler),
                ("ode", "heun" | "heun2") => Method::Ode(OdeMethod::Heun),
                ("ode", "dopri5") => Method::Ode(OdeMethod::Dopri5),
                ("sde", "euler") => Method::Sde(SdeMethod::Euler),
                ("sde", "heun") => Method::Sde(SdeMethod::Heun),
                ("sde", m) => {
                    bail!("--method {m} is not an SDE method; --mode sde takes euler or heun")
                }
                ("ode", m) => bail!(
                    "--method {m} is not an ODE method; --mode ode takes euler, heun or dopri5"
                ),
                (m, _) => bail!("--mode {m}: expected ode or sde"),
            },
        )
    }
}

/// Everything `sitdiv sample` was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct SampleJob {
    pub weights: Option<PathBuf>,
    pub synthetic: bool,
    pub model: String,
    pub image_size: usize,
    pub init_noise: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    pub replay_noise: Option<PathBuf>,
    pub latents_out: Option<PathBuf>,
    /// SD-VAE weights: decode the samples into an ADM-style image batch in `out`.
    pub vae: Option<PathBuf>,
    /// Folder of the image batch `.npz` (named by [`SampleJob::batch_name`]).
    pub out: Option<PathBuf>,
    /// A PNG grid of the first images.
    pub png_grid: Option<PathBuf>,
    pub method: Method,
    pub steps: usize,
    pub atol: f64,
    pub rtol: f64,
    pub cfg: f64,
    pub cfg_interval: Option<(f64, f64)>,
    pub cfg_interval_mode: IntervalMode,
    pub cfg_all_channels: bool,
    pub path: PathType,
    pub prediction: Prediction,
    pub diffusion_form: DiffusionForm,
    pub diffusion_norm: f64,
    pub last_step: LastStep,
    pub last_step_size: f64,
    pub sample_eps: Option<f64>,
    pub seed: u64,
    pub num_samples: Option<usize>,
    /// Classes to sample (default: all); with `samples_per_class`, class-major blocks.
    pub classes: Option<Vec<i64>>,
    /// K samples of every class: N = K · |classes|, sample i has class `classes[i / K]`.
    pub samples_per_class: Option<usize>,
    pub unit_size: usize,
    pub shard_index: usize,
    pub num_shards: usize,
    /// Recorded in the manifest; the backend applies it.
    pub precision: Precision,
}

/// The solver's time interval and grid for a job.
pub struct Schedule {
    pub t0: f64,
    pub t1: f64,
    pub grid: Vec<f32>,
    /// ℓ actually used (0 with `--last-step none`, as upstream forces).
    pub last_step_size: f64,
    /// The transport's sample eps: `--sample-eps`, or `create_transport`'s default.
    pub sample_eps: f64,
}

impl SampleJob {
    /// Checks the sampler settings (no files touched) and computes the time grid.
    pub fn schedule(&self) -> Result<Schedule> {
        ensure!(
            self.steps >= 2,
            "--steps {} : the time grid needs at least 2 points",
            self.steps
        );
        ensure!(
            self.cfg >= 1.0 && self.cfg.is_finite(),
            "--cfg {} : the guidance scale must be ≥ 1 (1 disables guidance)",
            self.cfg
        );
        if let Some((lo, hi)) = self.cfg_interval {
            ensure!(
                lo <= hi && lo.is_finite() && hi.is_finite(),
                "--cfg-interval {lo},{hi} : LO must not exceed HI"
            );
            ensure!(self.cfg > 1.0, "--cfg-interval needs --cfg above 1");
        }
        ensure!(self.unit_size > 0, "--unit-size must be at least 1");
        ensure!(
            self.num_shards > 0 && self.shard_index < self.num_shards,
            "--shard-index {} must be below --num-shards {}",
            self.shard_index,
            self.num_shards
        );
        let velocity = self.prediction == Prediction::Velocity;
        let eps = self
            .sample_eps
            .unwrap_or_else(|| path::default_sample_eps(self.path, velocity));
        ensure!(
            (0.0..0.5).contains(&eps),
            "--sample-eps {eps} : expected a value in [0, 0.5)"
        );
        let (t0, t1, ell) = match self.method {
            Method::Ode(m) => {
                if m == OdeMethod::Dopri5 {
                    ensure!(
                        self.atol > 0.0 && self.rtol > 0.0,
                        "--atol {} --rtol {} : dopri5 needs positive tolerances",
                        self.atol,
                        self.rtol
                    );
                }
                ensure!(
                    self.replay_noise.is_none(),
                    "--replay-noise replays SDE noise; the ODE draws none"
                );
                let (t0, t1) = path::sample_interval(self.path, velocity, None, eps);
                (t0, t1, 0.0)
            }
            Method::Sde(m) => {
                ensure!(
                    self.diffusion_norm.is_finite() && self.diffusion_norm >= 0.0,
                    "--diffusion-norm {} : expected a finite value ≥ 0",
                    self.diffusion_norm
                );
                let ell = if self.last_step == LastStep::None {
                    0.0
                } else {
                    self.last_step_size
                };
                ensure!(
                    (0.0..1.0).contains(&ell),
                    "--last-step-size {ell} : expected a value in [0, 1)"
                );
                let (t0, t1) = path::sample_interval(
                    self.path,
                    velocity,
                    Some((self.diffusion_form, ell)),
                    eps,
                );
                if self.diffusion_form == DiffusionForm::Sbdm && self.path != PathType::Vp {
                    ensure!(
                        t0 > 0.0,
                        "--diffusion-form SBDM starts at t0 = 0 here, where its diffusion (1−t)/t is infinite and the reference returns NaN samples; pass --sample-eps 1e-3 (or another small positive value)"
                    );
                }
                // The Linear path's score divides by 1 − t: nothing may evaluate it at t = 1.
                if self.path == PathType::Linear && t1 >= 1.0 {
                    if m == SdeMethod::Heun {
                        bail!("--mode sde --method heun with --last-step none evaluates the score at t = 1, where it divides by zero (NaN in the reference); choose a last step (mean, tweedie or euler)");
                    }
                    if matches!(self.last_step, LastStep::Mean | LastStep::Tweedie) {
                        bail!("--last-step-size 0 puts the {:?} last step at t = 1, where the score divides by zero; use a positive size or --last-step none", self.last_step);
                    }
                }
                (t0, t1, ell)
            }
        };
        ensure!(t0 < t1, "the sampling interval ({t0}, {t1}) is empty");
        if !velocity && self.path != PathType::Vp {
            ensure!(
                t0 > 0.0 && t1 < 1.0,
                "--prediction {:?} on the {:?} path needs t0 > 0 and t1 < 1 (its drift divides by t and by σ_t); --sample-eps {eps} gives ({t0}, {t1})",
                self.prediction,
                self.path
            );
        }
        Ok(Schedule {
            t0,
            t1,
            grid: grid::linspace_f32(t0, t1, self.steps),
            last_step_size: ell,
            sample_eps: eps,
        })
    }

    /// The image batch's file stem: the reference's name
    /// (`{model}-{ckpt}-cfg-{cfg}-{batch}-{MODE}-{steps}-{method}`, SDE: `-{form}-{last}-{size}-{norm}`)
    /// plus what it leaves out: `-seed{K}`, the guidance interval and mode, all-channel guidance,
    /// a non-Linear path and the shard (`-shard{I}of{S}`).
    pub fn batch_name(&self) -> String {
        let model = self.model.replace('/', "-");
        let ckpt = match &self.weights {
            Some(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            None => "synthetic".into(),
        };
        let mut name = format!(
            "{model}-{ckpt}-cfg-{}-{}",
            py_float(self.cfg),
            self.unit_size
        );
        match self.method {
            Method::Ode(m) => {
                let method = match m {
                    OdeMethod::Euler => "euler",
                    OdeMethod::Heun => "heun2",
                    OdeMethod::Dopri5 => "dopri5",
                };
                name += &format!("-ODE-{}-{method}", self.steps);
            }
            Method::Sde(m) => {
                let last = match self.last_step {
                    LastStep::None => "None",
                    LastStep::Mean => "Mean",
                    LastStep::Tweedie => "Tweedie",
                    LastStep::Euler => "Euler",
                };
                let form = self.diffusion_form.name();
                name += &format!(
                    "-SDE-{}-{m:?}-{form}-{last}-{}-{}",
                    self.steps,
                    py_float(self.last_step_size),
                    py_float(self.diffusion_norm)
                );
            }
        }
        name += &format!("-seed{}", self.seed);
        if let Some((lo, hi)) = self.cfg_interval {
            name += &format!(
                "-interval-{}-{}-{}",
                py_float(lo),
                py_float(hi),
                self.cfg_interval_mode
            );
        }
        if self.cfg_all_channels {
            name += "-cfgall";
        }
        if self.path != PathType::Linear {
            name += &format!("-{}", self.path);
        }
        if self.num_shards > 1 {
            name += &format!("-shard{}of{}", self.shard_index, self.num_shards);
        }
        name
    }

    /// The class of global sample `i` when no `--labels` file is given: a pure function of
    /// (seed, i, class selection), so every shard count gives the same set.
    pub fn label_of(&self, i: usize, num_classes: usize) -> i64 {
        match (&self.classes, self.samples_per_class) {
            (Some(c), Some(k)) => c[(i / k) % c.len()],
            (None, Some(k)) => ((i / k) % num_classes) as i64,
            (Some(c), None) => c[rng::label(self.seed, i as u64, c.len()) as usize],
            (None, None) => rng::label(self.seed, i as u64, num_classes),
        }
    }

    pub fn guidance(&self) -> Option<Guidance> {
        (self.cfg > 1.0).then(|| Guidance {
            scale: self.cfg as f32,
            interval: self.cfg_interval.map(|(lo, hi)| (lo as f32, hi as f32)),
            mode: self.cfg_interval_mode,
            all_channels: self.cfg_all_channels,
        })
    }
}

/// Loads the model named by the job: a weights file (its metadata config wins over `--model`) or
/// seeded synthetic weights.
pub fn load_model<B: Backend>(be: &B, job: &SampleJob) -> Result<(SiT<B>, String)> {
    match (&job.weights, job.synthetic) {
        (Some(_), true) => bail!("--weights and --synthetic exclude each other"),
        (None, false) => bail!("give --weights FILE (safetensors, upstream key names) or --synthetic for seeded random weights"),
        (Some(p), false) => {
            // The name must be valid even when the file's metadata config wins over it.
            let preset = SiTConfig::preset(&job.model, job.image_size);
            let file = WeightFile::open(p)?;
            let cfg = match SiTConfig::from_metadata(&file)? {
                Some(c) => {
                    preset?;
                    c
                }
                None => preset?,
            };
            let sha = crate::io::sha256_hex(file.bytes());
            let model = SiT::load(be, &file as &dyn TensorSource, cfg)?;
            Ok((model, sha))
        }
        (None, true) => {
            let cfg = SiTConfig::preset(&job.model, job.image_size)?;
            log::warn!("using synthetic weights (seeded random init of {}): samples are not images of anything", job.model);
            let src = synthetic::sit(&cfg, 0);
            Ok((SiT::load(be, &src, cfg)?, "synthetic-seed-0".to_string()))
        }
    }
}

/// Runs the job on the CPU backend.
pub fn run(job: &SampleJob) -> Result<()> {
    run_on(&Cpu, job)
}

pub fn run_on<B: Backend>(be: &B, job: &SampleJob) -> Result<()> {
    let schedule = job.schedule()?;
    match (&job.vae, &job.out) {
        (Some(_), None) => bail!(
            "--vae needs --out: the VAE decodes the samples into an image batch in --out"
        ),
        (None, None) if job.latents_out.is_none() => bail!(
            "nothing to write: give --latents-out FILE, or --out DIR (with --vae FILE for a latent model)"
        ),
        _ => {}
    }
    if job.png_grid.is_some() && job.out.is_none() {
        bail!("--png-grid needs images: give --out DIR (and --vae FILE for a latent model)");
    }
    let (model, weights_sha) = load_model(be, job)?;
    let cfg = model.config.clone();
    // The decoder is loaded before any sampling, so a bad file fails fast.
    let decoder = match &job.out {
        Some(_) => Some(Decoder::load(be, job.vae.as_deref(), cfg.in_channels)?),
        None => None,
    };
    // Output folders are checked before any compute.
    if let Some(dir) = &job.out {
        crate::io::probe_folder(dir)?;
    }
    for f in [&job.latents_out, &job.png_grid].into_iter().flatten() {
        if let Some(dir) = f.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::io::probe_folder(dir)?;
        }
    }
    check_guidance(job, &cfg)?;
    let inputs = read_inputs(job, &cfg, job.guidance().is_some())?;
    let units = shard_units(
        inputs.num_samples,
        job.unit_size,
        job.shard_index,
        job.num_shards,
    )?;
    let len = cfg.sample_len();
    log::info!(
        "{} on {}: {} samples in {} unit(s) of shard {}/{}, grid ({}, {}) × {}",
        job.method,
        be.name(),
        units.iter().map(Unit::len).sum::<usize>(),
        units.len(),
        job.shard_index,
        job.num_shards,
        schedule.t0,
        schedule.t1,
        job.steps
    );

    let sampler = UnitSampler {
        be,
        model: &model,
        job,
        inputs: &inputs,
        schedule: &schedule,
    };
    let mut latents = Vec::new();
    let mut labels: Vec<i64> = Vec::new();
    let mut calls = 0usize;
    let total: usize = units.iter().map(Unit::len).sum();
    let progress = Progress::new(total as u64);
    for unit in &units {
        let out = sampler.sample(*unit)?;
        latents.extend(out.latents);
        labels.extend(out.labels);
        calls += out.network_forwards;
        progress.unit_done(unit);
    }
    progress.finish();
    if let Some(bad) = latents.iter().position(|v| !v.is_finite()) {
        bail!(
            "sampling produced a non-finite value (sample {}); nothing was written",
            bad / len
        );
    }
    let rows = latents.len() / len;
    let manifest = serde_json::json!({
        "tool": "sitdiv sample",
        "version": env!("CARGO_PKG_VERSION"),
        "job": job,
        "model_config": cfg,
        "weights_sha256": weights_sha,
        "t0": schedule.t0,
        "t1": schedule.t1,
        "sample_eps": schedule.sample_eps,
        "units": units.iter().map(|u| [u.start, u.end]).collect::<Vec<_>>(),
        "network_forwards": calls,
        "precision": job.precision,
        "device": be.name(),
        "host": crate::io::hostname(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    });
    if let Some(path) = &job.latents_out {
        let shape = [rows, cfg.in_channels, cfg.input_size, cfg.input_size];
        write_with_manifest(path, &manifest, |p| npy::write_f32(p, &shape, &latents))?;
        log::info!("wrote {} ({rows} samples)", path.display());
    }
    if let (Some((decoder, vae_sha)), Some(dir)) = (&decoder, &job.out) {
        let s = cfg.input_size;
        let images = decoder.images(be, &latents, rows, s, job.unit_size)?;
        let (side, ch) = (decoder.side(s), decoder.out_channels());
        let indices: Vec<i64> = units
            .iter()
            .flat_map(|u| u.start as i64..u.end as i64)
            .collect();
        let path = dir.join(format!("{}.npz", job.batch_name()));
        let mut manifest = manifest;
        manifest["vae_sha256"] = serde_json::json!(vae_sha);
        if let (Some(m), serde_json::Value::Object(d)) =
            (manifest.as_object_mut(), decoder.describe())
        {
            m.extend(d);
        }
        let members = [
            npz::Member {
                key: "arr_0".into(),
                npy: npy::encode_u8(&[rows, side, side, ch], &images)?,
            },
            npz::Member {
                key: "arr_1".into(),
                npy: npy::encode_i64(&[rows], &labels)?,
            },
            npz::Member {
                key: "indices".into(),
                npy: npy::encode_i64(&[rows], &indices)?,
            },
        ];
        write_with_manifest(&path, &manifest, |p| npz::write(p, &members))?;
        log::info!("wrote {} ({rows} images, {side}×{side})", path.display());
        if let Some(grid) = &job.png_grid {
            super::grid::write_png_grid(grid, &images, rows, side, side, ch)?;
            log::info!("wrote {}", grid.display());
        }
    }
    Ok(())
}

/// Refuses guidance when the weights have no null-class row.
pub fn check_guidance(job: &SampleJob, cfg: &SiTConfig) -> Result<()> {
    if job.guidance().is_some() && cfg.label_rows() == cfg.num_classes {
        bail!("--cfg {} needs the null-class embedding, but these weights have none (class_dropout_prob = 0)", job.cfg);
    }
    Ok(())
}

/// What one work unit produced.
pub struct UnitSamples {
    /// (n, C, h, w), the conditional half.
    pub latents: Vec<f32>,
    pub labels: Vec<i64>,
    pub network_forwards: usize,
}

/// Samples work units of one job: everything a unit needs besides its index range.
pub struct UnitSampler<'a, B: Backend> {
    pub be: &'a B,
    pub model: &'a SiT<B>,
    pub job: &'a SampleJob,
    pub inputs: &'a Inputs,
    pub schedule: &'a Schedule,
}

impl<B: Backend> UnitSampler<'_, B> {
    /// The samples of `unit`: their noise and labels are functions of (seed, global index), so a
    /// unit gives the same bits whichever process runs it.
    pub fn sample(&self, unit: Unit) -> Result<UnitSamples> {
        let (job, model, inputs) = (self.job, self.model, self.inputs);
        let cfg = &model.config;
        let len = cfg.sample_len();
        let guidance = job.guidance();
        let guided = guidance.is_some();
        let n = unit.len();
        let mut z = Vec::with_capacity(n * len);
        let mut y = Vec::with_capacity(n);
        for i in unit.start..unit.end {
            match &inputs.z {
                Some(a) => z.extend_from_slice(&a.data[i * len..(i + 1) * len]),
                None => z.extend(rng::gaussian(job.seed, i as u64, 0, rng::STREAM_COND, len)),
            }
            y.push(match &inputs.y {
                Some(l) => l[i],
                None => job.label_of(i, cfg.num_classes),
            });
        }
        let labels = y.clone();
        if guided {
            z.extend_from_within(..);
            y.extend(std::iter::repeat_n(model.null_class() as i64, n));
        }
        let mut vel = SiTVelocity {
            be: self.be,
            model,
            y,
            guidance,
        };
        let (out, network_forwards) = match job.method {
            Method::Ode(m) => {
                let settings = OdeSettings {
                    method: m,
                    path: job.path,
                    prediction: job.prediction,
                    tol: Tolerances {
                        atol: job.atol,
                        rtol: job.rtol,
                    },
                };
                let r = ode::sample(&mut vel, settings, z, &self.schedule.grid, false)?;
                let nfe = r.nfe();
                (r.sample, nfe)
            }
            Method::Sde(m) => {
                let settings = SdeSettings {
                    method: m,
                    path: job.path,
                    prediction: job.prediction,
                    form: job.diffusion_form,
                    norm: job.diffusion_norm,
                    last_step: job.last_step,
                    last_step_size: self.schedule.last_step_size,
                };
                let mut noise = UnitNoise {
                    replay: inputs.replay.as_ref(),
                    seed: job.seed,
                    unit,
                    guided,
                    num_samples: inputs.num_samples,
                    len,
                };
                let r = sde::sample(
                    &mut vel,
                    settings,
                    z,
                    &self.schedule.grid,
                    &mut noise,
                    false,
                )?;
                let nfe = r.eval_t.len();
                (r.sample, nfe)
            }
        };
        // Keep the conditional half (`samples.chunk(2)[0]`).
        let mut latents = out;
        latents.truncate(n * len);
        Ok(UnitSamples {
            latents,
            labels,
            network_forwards,
        })
    }
}

/// A float as Python prints it (`1.0`, `1.5`, `0.04`), as the reference's folder names do.
fn py_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}
