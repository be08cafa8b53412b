//! The settings of a sampling run in named parts — the model, the sampler, guidance, inputs,
//! outputs and the shard — filled from flags by `sitdiv sample` and from a run config by a sweep.
//! Defaults live here once; validation names each setting the way its user wrote it.

use std::path::PathBuf;

use anyhow::{bail, ensure, Result};
use serde::Serialize;

use super::guidance_settings::GuidanceSettings;
pub use super::origin::{py_float, Origin};
use crate::backend::Precision;
use crate::rng;
use crate::sampling::guidance::{GuidanceMethod, IntervalMode};
use crate::sampling::ode::OdeMethod;
use crate::sampling::path::{self, DiffusionForm, PathType};
use crate::sampling::repa::{self, RepaMethod};
use crate::sampling::sde::{LastStep, SdeMethod};
use crate::sampling::{grid, Prediction};

/// The sampler: `--mode` and `--method` together, e.g. `ode-euler` in a sweep file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Ode(OdeMethod),
    Sde(SdeMethod),
    /// REPA's own samplers and time convention (t = 1 noise): `repa-ode` Euler or Heun,
    /// `repa-sde` Euler–Maruyama.
    Repa(RepaMethod),
}

impl Method {
    /// `ode` or `sde`.
    pub fn mode(self) -> &'static str {
        match self {
            Method::Ode(_) => "ode",
            Method::Sde(_) => "sde",
            Method::Repa(RepaMethod::EulerMaruyama) => "repa-sde",
            Method::Repa(_) => "repa-ode",
        }
    }

    /// The method's name within its mode.
    pub fn name(self) -> &'static str {
        match self {
            Method::Ode(OdeMethod::Euler)
            | Method::Sde(SdeMethod::Euler)
            | Method::Repa(RepaMethod::Euler | RepaMethod::EulerMaruyama) => "euler",
            Method::Ode(OdeMethod::Heun)
            | Method::Sde(SdeMethod::Heun)
            | Method::Repa(RepaMethod::Heun) => "heun",
            Method::Ode(OdeMethod::Dopri5) => "dopri5",
        }
    }

    /// `mode` × `method` in any case; ODE `heun2` is torchdiffeq's name for `heun`.
    pub fn parse(mode: &str, method: &str, origin: Origin) -> Result<Method> {
        let (mode, method) = (mode.to_ascii_lowercase(), method.to_ascii_lowercase());
        Ok(match (mode.as_str(), method.as_str()) {
            ("ode", "euler") => Method::Ode(OdeMethod::Euler),
            ("ode", "heun" | "heun2") => Method::Ode(OdeMethod::Heun),
            ("ode", "dopri5") => Method::Ode(OdeMethod::Dopri5),
            ("sde", "euler") => Method::Sde(SdeMethod::Euler),
            ("sde", "heun") => Method::Sde(SdeMethod::Heun),
            ("repa-ode", "euler") => Method::Repa(RepaMethod::Euler),
            ("repa-ode", "heun") => Method::Repa(RepaMethod::Heun),
            ("repa-sde", "euler") => Method::Repa(RepaMethod::EulerMaruyama),
            _ if origin == Origin::SweepFile => bail!(
                "sampler {:?}: expected ode-euler, ode-heun, ode-dopri5, sde-euler, sde-heun, repa-ode-euler, repa-ode-heun or repa-sde-euler",
                format!("{mode}-{method}")
            ),
            ("repa-sde", m) => {
                bail!("--method {m}: --mode repa-sde takes euler (REPA's Euler–Maruyama)")
            }
            ("repa-ode", m) => {
                bail!("--method {m}: --mode repa-ode takes euler or heun")
            }
            ("sde", m) => {
                bail!("--method {m} is not an SDE method; --mode sde takes euler or heun")
            }
            ("ode", m) => {
                bail!("--method {m} is not an ODE method; --mode ode takes euler, heun or dopri5")
            }
            (m, _) => bail!("--mode {m}: expected ode, sde, repa-ode or repa-sde"),
        })
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.mode(), self.name())
    }
}

/// Serialised as the two fields `mode` and `method`.
impl Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Method", 2)?;
        st.serialize_field("mode", self.mode())?;
        st.serialize_field("method", self.name())?;
        st.end()
    }
}

/// Which SiT: a weights file (whose metadata config wins over the preset) or seeded synthetic
/// weights of a preset.
#[derive(Debug, Clone, Serialize)]
pub struct ModelChoice {
    pub weights: Option<PathBuf>,
    /// Autoguidance's guide: a weaker SiT of the same family (same input and output shapes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guide_weights: Option<PathBuf>,
    pub synthetic: bool,
    /// Upstream preset name, e.g. SiT-XL/2.
    pub model: String,
    pub image_size: usize,
}

impl Default for ModelChoice {
    fn default() -> Self {
        ModelChoice {
            weights: None,
            guide_weights: None,
            synthetic: false,
            model: "SiT-XL/2".into(),
            image_size: 256,
        }
    }
}

/// How the transport is integrated.
#[derive(Debug, Clone, Serialize)]
pub struct SamplerSettings {
    #[serde(flatten)]
    pub method: Method,
    /// Time-grid points (upstream `--num-sampling-steps`).
    pub steps: usize,
    /// dopri5's tolerances.
    pub atol: f64,
    pub rtol: f64,
    pub path: PathType,
    pub prediction: Prediction,
    pub diffusion_form: DiffusionForm,
    pub diffusion_norm: f64,
    pub last_step: LastStep,
    pub last_step_size: f64,
    /// Overrides the transport's sample eps.
    pub sample_eps: Option<f64>,
}

impl Default for SamplerSettings {
    fn default() -> Self {
        SamplerSettings {
            method: Method::Ode(OdeMethod::Euler),
            steps: 250,
            atol: 1e-6,
            rtol: 1e-3,
            path: PathType::Linear,
            prediction: Prediction::Velocity,
            diffusion_form: DiffusionForm::Sigma,
            diffusion_norm: 1.0,
            last_step: LastStep::Mean,
            last_step_size: 0.04,
            sample_eps: None,
        }
    }
}

/// The solver's time interval and grid.
pub struct Schedule {
    pub t0: f64,
    pub t1: f64,
    pub grid: Vec<f32>,
    /// ℓ actually used (0 with last step `none`, as upstream forces).
    pub last_step_size: f64,
    /// The transport's sample eps: the setting, or `create_transport`'s default.
    pub sample_eps: f64,
}

impl SamplerSettings {
    /// Checks the settings (no files touched) and computes the time grid.
    pub fn schedule(&self, o: Origin) -> Result<Schedule> {
        ensure!(
            self.steps >= 2 || matches!(self.method, Method::Repa(_)),
            "{}: the time grid needs at least 2 points",
            o.setting("steps", self.steps)
        );
        // Far above any sampler's use (the study's finest grid is 1 000 steps).
        ensure!(
            self.steps <= 1_000_000,
            "{}: at most 1000000 steps",
            o.setting("steps", self.steps)
        );
        let velocity = self.prediction == Prediction::Velocity;
        let eps = self
            .sample_eps
            .unwrap_or_else(|| path::default_sample_eps(self.path, velocity));
        ensure!(
            (0.0..0.5).contains(&eps),
            "{}: expected a value in [0, 0.5)",
            o.setting("sample-eps", eps)
        );
        let (t0, t1, ell) = match self.method {
            Method::Ode(m) => {
                if m == OdeMethod::Dopri5 {
                    ensure!(
                        self.atol > 0.0 && self.rtol > 0.0,
                        "{} {}: dopri5 needs positive tolerances",
                        o.setting("atol", self.atol),
                        o.setting("rtol", self.rtol)
                    );
                }
                let (t0, t1) = path::sample_interval(self.path, velocity, None, eps);
                (t0, t1, 0.0)
            }
            Method::Sde(m) => self.sde_interval(m, eps, o)?,
            Method::Repa(m) => return self.repa_schedule(m, o),
        };
        ensure!(t0 < t1, "the sampling interval ({t0}, {t1}) is empty");
        if !velocity && self.path != PathType::Vp {
            ensure!(
                t0 > 0.0 && t1 < 1.0,
                "{} on the {} path needs t0 > 0 and t1 < 1 (its drift divides by t and by σ_t); {} gives ({t0}, {t1})",
                o.setting("prediction", self.prediction),
                self.path,
                o.setting("sample-eps", eps)
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

    /// REPA's grid (in its time, 1 = noise): `--steps` is its `--num-steps`.
    fn repa_schedule(&self, m: RepaMethod, o: Origin) -> Result<Schedule> {
        ensure!(
            (1..=1_000_000).contains(&self.steps),
            "{}: REPA's samplers take 1 to 1000000 steps",
            o.setting("steps", self.steps)
        );
        ensure!(
            self.prediction == Prediction::Velocity,
            "{}: REPA's samplers take a velocity model",
            o.setting("prediction", self.prediction)
        );
        self.repa_path(o)?;
        let grid: Vec<f32> = repa::time_grid(m, self.steps)
            .iter()
            .map(|&t| t as f32)
            .collect();
        Ok(Schedule {
            t0: 1.0,
            t1: 0.0,
            grid,
            last_step_size: 0.0,
            sample_eps: 0.0,
        })
    }

    /// REPA's `--path-type` for `--path`: linear, or cosine (GVP's interpolant in REPA's time).
    pub fn repa_path(&self, o: Origin) -> Result<repa::RepaPath> {
        match self.path {
            PathType::Linear => Ok(repa::RepaPath::Linear),
            PathType::Gvp => Ok(repa::RepaPath::Cosine),
            PathType::Vp => bail!(
                "{}: REPA's samplers know the linear and cosine (gvp) paths",
                o.setting("path", self.path)
            ),
        }
    }

    /// The SDE's (t0, t1, ℓ), refusing settings whose reference run divides by zero.
    fn sde_interval(&self, m: SdeMethod, eps: f64, o: Origin) -> Result<(f64, f64, f64)> {
        ensure!(
            self.diffusion_norm.is_finite() && self.diffusion_norm >= 0.0,
            "{}: expected a finite value ≥ 0",
            o.setting("diffusion-norm", self.diffusion_norm)
        );
        let ell = if self.last_step == LastStep::None {
            0.0
        } else {
            self.last_step_size
        };
        ensure!(
            (0.0..1.0).contains(&ell),
            "{}: expected a value in [0, 1)",
            o.setting("last-step-size", ell)
        );
        let velocity = self.prediction == Prediction::Velocity;
        let (t0, t1) =
            path::sample_interval(self.path, velocity, Some((self.diffusion_form, ell)), eps);
        if self.diffusion_form == DiffusionForm::Sbdm && self.path != PathType::Vp {
            ensure!(
                t0 > 0.0,
                "{} starts at t0 = 0 here, where its diffusion (1−t)/t is infinite and the reference returns NaN samples; set {} (or another small positive value)",
                o.setting("diffusion-form", "SBDM"),
                o.setting("sample-eps", "1e-3")
            );
        }
        // The Linear path's score divides by 1 − t: nothing may evaluate it at t = 1.
        if self.path == PathType::Linear && t1 >= 1.0 {
            if m == SdeMethod::Heun {
                bail!(
                    "{} with {} evaluates the score at t = 1, where it divides by zero (NaN in the reference); choose a last step (mean, tweedie or euler)",
                    o.setting("method", "sde-heun"),
                    o.setting("last-step", "none")
                );
            }
            if matches!(self.last_step, LastStep::Mean | LastStep::Tweedie) {
                bail!(
                    "{} puts the {} last step at t = 1, where the score divides by zero; use a positive size or {}",
                    o.setting("last-step-size", 0),
                    self.last_step,
                    o.setting("last-step", "none")
                );
            }
        }
        Ok((t0, t1, ell))
    }
}

/// What sampling starts from: the seed and class selection, or given arrays.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InputSettings {
    pub seed: u64,
    pub num_samples: Option<usize>,
    /// Classes to sample (default: all); with `samples_per_class`, class-major blocks.
    pub classes: Option<Vec<i64>>,
    /// K samples of every class: N = K · |classes|, sample i has class `classes[i / K]`.
    pub samples_per_class: Option<usize>,
    /// Initial noise, float32 (N, C, H, W).
    pub init_noise: Option<PathBuf>,
    /// Class labels, int64 (N,).
    pub labels: Option<PathBuf>,
    /// Recorded SDE draws, float32 (steps − 1, B, C, H, W).
    pub replay_noise: Option<PathBuf>,
}

impl InputSettings {
    /// The class of global sample `i` when no labels file is given: a pure function of
    /// (seed, i, class selection), so every shard count gives the same set.
    pub fn label_of(&self, i: usize, num_classes: usize) -> i64 {
        match (&self.classes, self.samples_per_class) {
            (Some(c), Some(k)) => c[(i / k) % c.len()],
            (None, Some(k)) => ((i / k) % num_classes) as i64,
            (Some(c), None) => c[rng::label(self.seed, i as u64, c.len()) as usize],
            (None, None) => rng::label(self.seed, i as u64, num_classes),
        }
    }
}

/// What `sitdiv sample` writes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutputSettings {
    /// Latents, float32 (N, C, h, w) `.npy` (the conditional half).
    pub latents_out: Option<PathBuf>,
    /// SD-VAE weights that decode the samples into the image batch in `out`.
    pub vae: Option<PathBuf>,
    /// Folder of the image batch `.npz` (named by [`SampleJob::batch_name`]).
    pub out: Option<PathBuf>,
    /// A PNG grid of the first images.
    pub png_grid: Option<PathBuf>,
}

/// Which part of the run this process does: units of `unit_size` samples, shard `index` of `count`.
#[derive(Debug, Clone, Serialize)]
pub struct ShardSettings {
    pub unit_size: usize,
    pub shard_index: usize,
    pub num_shards: usize,
}

impl Default for ShardSettings {
    fn default() -> Self {
        ShardSettings {
            unit_size: 32,
            shard_index: 0,
            num_shards: 1,
        }
    }
}

impl ShardSettings {
    pub fn check(&self, o: Origin) -> Result<()> {
        ensure!(
            self.unit_size > 0,
            "{} must be at least 1",
            o.key("unit-size")
        );
        ensure!(
            self.num_shards > 0 && self.shard_index < self.num_shards,
            "--shard-index {} must be below --num-shards {}",
            self.shard_index,
            self.num_shards
        );
        Ok(())
    }
}

/// Everything one sampling run was asked to do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SampleJob {
    #[serde(flatten)]
    pub model: ModelChoice,
    #[serde(flatten)]
    pub sampler: SamplerSettings,
    #[serde(flatten)]
    pub guidance: GuidanceSettings,
    #[serde(flatten)]
    pub inputs: InputSettings,
    #[serde(flatten)]
    pub outputs: OutputSettings,
    #[serde(flatten)]
    pub shard: ShardSettings,
    /// Recorded in the manifest; the backend applies it.
    pub precision: Precision,
    #[serde(skip)]
    pub origin: Origin,
}

impl SampleJob {
    /// Checks the settings that need no file and computes the time grid.
    pub fn schedule(&self) -> Result<Schedule> {
        self.guidance.check(self.origin)?;
        self.check_repa()?;
        self.shard.check(self.origin)?;
        self.sampler.schedule(self.origin)
    }

    /// REPA's samplers guide by CFG alone, on every channel, with REPA's interval semantics.
    fn check_repa(&self) -> Result<()> {
        let (o, g) = (self.origin, &self.guidance);
        if !matches!(self.sampler.method, Method::Repa(_)) {
            return Ok(());
        }
        ensure!(
            g.method == GuidanceMethod::Cfg,
            "{} runs REPA's own samplers, which guide by CFG only ({})",
            o.setting("mode", self.sampler.method.mode()),
            o.setting("guidance", g.method)
        );
        ensure!(
            g.cfg_interval.is_none() || g.cfg_interval_mode == IntervalMode::Published,
            "{}: REPA's samplers use the conditional prediction outside the interval (published)",
            o.setting("cfg-interval-mode", g.cfg_interval_mode)
        );
        Ok(())
    }

    /// Whether the solver's batch holds an unconditional copy of every sample (guidance on the
    /// reference's samplers; REPA's double the batch inside the model call only).
    pub fn doubled_batch(&self) -> bool {
        self.guidance.guidance().is_some() && !matches!(self.sampler.method, Method::Repa(_))
    }

    /// The image batch's file stem: the reference's name
    /// (`{model}-{ckpt}-cfg-{cfg}-{batch}-{MODE}-{steps}-{method}`, SDE: `-{form}-{last}-{size}-{norm}`)
    /// plus what it leaves out: `-seed{K}`, the guidance interval and mode, all-channel guidance,
    /// the guidance method other than CFG with its parameters, a non-Linear path and the shard (`-shard{I}of{S}`).
    pub fn batch_name(&self) -> String {
        let (s, g) = (&self.sampler, &self.guidance);
        let model = self.model.model.replace('/', "-");
        let ckpt = match &self.model.weights {
            Some(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            None => "synthetic".into(),
        };
        let mut name = format!(
            "{model}-{ckpt}-cfg-{}-{}",
            py_float(g.cfg),
            self.shard.unit_size
        );
        match s.method {
            Method::Ode(m) => {
                let method = match m {
                    OdeMethod::Euler => "euler",
                    OdeMethod::Heun => "heun2",
                    OdeMethod::Dopri5 => "dopri5",
                };
                name += &format!("-ODE-{}-{method}", s.steps);
            }
            Method::Repa(m) => {
                let mode = if m == RepaMethod::EulerMaruyama {
                    "sde"
                } else {
                    "ode"
                };
                name += &format!("-REPA-{mode}-{}-{}", s.steps, m);
            }
            Method::Sde(m) => {
                let last = match s.last_step {
                    LastStep::None => "None",
                    LastStep::Mean => "Mean",
                    LastStep::Tweedie => "Tweedie",
                    LastStep::Euler => "Euler",
                };
                name += &format!(
                    "-SDE-{}-{m:?}-{}-{last}-{}-{}",
                    s.steps,
                    s.diffusion_form.name(),
                    py_float(s.last_step_size),
                    py_float(s.diffusion_norm)
                );
            }
        }
        name += &format!("-seed{}", self.inputs.seed);
        if let Some((lo, hi)) = g.cfg_interval {
            name += &format!(
                "-interval-{}-{}-{}",
                py_float(lo),
                py_float(hi),
                g.cfg_interval_mode
            );
        }
        if g.cfg_all_channels {
            name += "-cfgall";
        }
        name += &g.name_part(self.model.guide_weights.as_deref());
        if s.path != PathType::Linear {
            name += &format!("-{}", s.path);
        }
        if self.shard.num_shards > 1 {
            name += &format!(
                "-shard{}of{}",
                self.shard.shard_index, self.shard.num_shards
            );
        }
        name
    }
}
