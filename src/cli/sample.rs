//! `sitdiv sample`'s flags, one group per part of the library's `SampleJob`, each converted into
//! its settings struct. Defaults come from the settings' `Default`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::args::{one_of, parse_classes, parse_interval, ClassList};
use super::device::DeviceArgs;
use sitdiv::pipeline::guidance_settings::{GuidanceSettings, MethodParams};
use sitdiv::pipeline::settings::{
    InputSettings, Method, ModelChoice, Origin, OutputSettings, SampleJob, SamplerSettings,
    ShardSettings,
};
use sitdiv::sampling::guidance::{GuidanceMethod, IntervalMode};
use sitdiv::sampling::path::{DiffusionForm, PathType};
use sitdiv::sampling::sde::LastStep;
use sitdiv::sampling::Prediction;

#[derive(Args)]
pub struct SampleArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    inputs: InputArgs,
    #[command(flatten)]
    outputs: OutputArgs,
    #[command(flatten)]
    sampler: SamplerArgs,
    #[command(flatten)]
    guidance: GuidanceArgs,
    #[command(flatten)]
    shard: ShardArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Args)]
struct ModelArgs {
    /// SiT weights (safetensors, upstream state_dict keys); a `config` in its metadata wins over --model.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Autoguidance's guide: a weaker SiT of the same family (safetensors), for --guidance autoguidance.
    #[arg(long)]
    guide_weights: Option<PathBuf>,
    /// Use seeded random weights for --model instead of a weights file (for trying the tool out).
    #[arg(long)]
    synthetic: bool,
    /// Upstream model name, e.g. SiT-XL/2.
    #[arg(long, default_value_t = ModelChoice::default().model)]
    model: String,
    /// Image size of the preset (256 or 512); latents are a factor 8 smaller.
    #[arg(long, default_value_t = ModelChoice::default().image_size)]
    image_size: usize,
}

#[derive(Args)]
struct InputArgs {
    /// Initial noise, float32 (N, C, H, W); default: counter-based draws from --seed.
    #[arg(long)]
    init_noise: Option<PathBuf>,
    /// Class labels, int64 (N,); default: derived from --seed and the sample index.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Recorded SDE draws, float32 (steps−1, B, C, H, W), B = 2N with guidance.
    #[arg(long)]
    replay_noise: Option<PathBuf>,
    #[arg(long, default_value_t = InputSettings::default().seed)]
    seed: u64,
    /// Number of samples (default: the rows of --init-noise).
    #[arg(long)]
    num_samples: Option<usize>,
    /// Classes to sample: ranges and lists, e.g. 0-999 or 1,7,88-90 (default: all).
    #[arg(long, value_parser = parse_classes)]
    classes: Option<ClassList>,
    /// K samples of each selected class, in class-major order (N = K · classes).
    #[arg(long)]
    samples_per_class: Option<usize>,
}

#[derive(Args)]
struct OutputArgs {
    /// Output latents, float32 (N, C, H, W) .npy (conditional half only).
    #[arg(long)]
    latents_out: Option<PathBuf>,
    /// SD-VAE weights: decode the samples into an ADM-style image batch (.npz) in --out.
    #[arg(long)]
    vae: Option<PathBuf>,
    /// Folder for the image batch (`arr_0` uint8 images, `arr_1` labels, `indices`) and its manifest.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write a PNG grid of the first 64 images.
    #[arg(long)]
    png_grid: Option<PathBuf>,
}

#[derive(Args)]
struct SamplerArgs {
    /// ode | sde (the reference's transport samplers) | repa-ode | repa-sde (REPA's).
    #[arg(long, default_value_t = SamplerSettings::default().method.mode().to_string())]
    mode: String,
    /// ode: euler | heun (torchdiffeq heun2) | dopri5; sde: euler (Euler–Maruyama) | heun;
    /// repa-ode: euler | heun; repa-sde: euler (REPA's samplers, t = 1 noise, --steps = its --num-steps).
    #[arg(long, default_value_t = SamplerSettings::default().method.name().to_string())]
    method: String,
    /// Time-grid points (upstream --num-sampling-steps).
    #[arg(long, default_value_t = SamplerSettings::default().steps)]
    steps: usize,
    #[arg(long, default_value_t = SamplerSettings::default().atol)]
    atol: f64,
    #[arg(long, default_value_t = SamplerSettings::default().rtol)]
    rtol: f64,
    #[arg(long, value_parser = one_of::<PathType>(), default_value_t = SamplerSettings::default().path)]
    path: PathType,
    #[arg(long, value_parser = one_of::<Prediction>(), default_value_t = SamplerSettings::default().prediction)]
    prediction: Prediction,
    #[arg(long, value_parser = one_of::<DiffusionForm>(), default_value_t = SamplerSettings::default().diffusion_form)]
    diffusion_form: DiffusionForm,
    #[arg(long, default_value_t = SamplerSettings::default().diffusion_norm)]
    diffusion_norm: f64,
    #[arg(long, value_parser = one_of::<LastStep>(), default_value_t = SamplerSettings::default().last_step)]
    last_step: LastStep,
    #[arg(long, default_value_t = SamplerSettings::default().last_step_size)]
    last_step_size: f64,
    /// Overrides the transport's sample eps (needed for SBDM with a velocity model).
    #[arg(long)]
    sample_eps: Option<f64>,
}

#[derive(Args)]
struct GuidanceArgs {
    /// Guidance scale; 1 disables guidance.
    #[arg(long, default_value_t = GuidanceSettings::default().cfg)]
    cfg: f64,
    /// Guide only for t in [LO, HI] (SiT time: 0 noise, 1 data), e.g. 0.2,1.0; with repa-* modes
    /// REPA's --guidance-low,--guidance-high in its time (1 noise), e.g. 0,0.7.
    #[arg(long, value_parser = parse_interval)]
    cfg_interval: Option<(f64, f64)>,
    #[arg(long, value_parser = one_of::<IntervalMode>(), default_value_t = GuidanceSettings::default().cfg_interval_mode)]
    cfg_interval_mode: IntervalMode,
    /// Guide all latent channels (the standard form) instead of upstream's first three.
    #[arg(long)]
    cfg_all_channels: bool,
    /// Guidance method: cfg | apg | cfg-zero-star | cads | autoguidance (with --guide-weights); --cfg is its scale.
    #[arg(long, value_parser = one_of::<GuidanceMethod>(), default_value_t = GuidanceSettings::default().method)]
    guidance: GuidanceMethod,
    /// APG: weight η of the update's part parallel to the conditional prediction [default: 0].
    #[arg(long)]
    apg_eta: Option<f32>,
    /// APG: cap r on the update's norm, 0 for none [default: 15].
    #[arg(long)]
    apg_norm_threshold: Option<f32>,
    /// APG: momentum β of the update's running average, 0 for none [default: -0.5].
    #[arg(long, allow_negative_numbers = true)]
    apg_momentum: Option<f32>,
    /// CFG-Zero*: solver steps whose velocity is zero [default: 1].
    #[arg(long)]
    zero_init_steps: Option<usize>,
    /// CADS: τ₁ (paper time, 1 = noise): the condition is clean below it [default: 0.6].
    #[arg(long)]
    cads_tau1: Option<f64>,
    /// CADS: τ₂: the condition is noise alone above it [default: 0.9].
    #[arg(long)]
    cads_tau2: Option<f64>,
    /// CADS: noise scale s [default: 0.25].
    #[arg(long)]
    cads_noise_scale: Option<f64>,
    /// CADS: share ψ of the rescaled embedding, 0 to skip rescaling [default: 1].
    #[arg(long)]
    cads_psi: Option<f64>,
}

impl GuidanceArgs {
    /// The method's parameters over their defaults, refusing those of another method.
    fn params(&self) -> Result<MethodParams> {
        let mut p = MethodParams::default();
        let m = self.guidance;
        let given = |flag: &str, set: bool, method: GuidanceMethod| -> Result<()> {
            if set && m != method {
                bail!("--{flag} is a parameter of --guidance {method}, not of --guidance {m}");
            }
            Ok(())
        };
        given("apg-eta", self.apg_eta.is_some(), GuidanceMethod::Apg)?;
        given(
            "apg-norm-threshold",
            self.apg_norm_threshold.is_some(),
            GuidanceMethod::Apg,
        )?;
        given(
            "apg-momentum",
            self.apg_momentum.is_some(),
            GuidanceMethod::Apg,
        )?;
        given(
            "zero-init-steps",
            self.zero_init_steps.is_some(),
            GuidanceMethod::CfgZeroStar,
        )?;
        given("cads-tau1", self.cads_tau1.is_some(), GuidanceMethod::Cads)?;
        given("cads-tau2", self.cads_tau2.is_some(), GuidanceMethod::Cads)?;
        given(
            "cads-noise-scale",
            self.cads_noise_scale.is_some(),
            GuidanceMethod::Cads,
        )?;
        given("cads-psi", self.cads_psi.is_some(), GuidanceMethod::Cads)?;
        let a = &mut p.apg;
        a.eta = self.apg_eta.unwrap_or(a.eta);
        a.norm_threshold = self.apg_norm_threshold.unwrap_or(a.norm_threshold);
        a.momentum = self.apg_momentum.unwrap_or(a.momentum);
        p.zero_init_steps = self.zero_init_steps.unwrap_or(p.zero_init_steps);
        let c = &mut p.cads;
        c.tau1 = self.cads_tau1.unwrap_or(c.tau1);
        c.tau2 = self.cads_tau2.unwrap_or(c.tau2);
        c.noise_scale = self.cads_noise_scale.unwrap_or(c.noise_scale);
        c.psi = self.cads_psi.unwrap_or(c.psi);
        Ok(p)
    }
}

#[derive(Args)]
struct ShardArgs {
    /// Samples per work unit (the solver's batch; results do not depend on it).
    #[arg(long, default_value_t = ShardSettings::default().unit_size)]
    unit_size: usize,
    #[arg(long, default_value_t = ShardSettings::default().shard_index)]
    shard_index: usize,
    #[arg(long, default_value_t = ShardSettings::default().num_shards)]
    num_shards: usize,
}

impl TryFrom<SampleArgs> for SampleJob {
    type Error = anyhow::Error;

    fn try_from(a: SampleArgs) -> Result<SampleJob> {
        let s = a.sampler;
        Ok(SampleJob {
            model: ModelChoice {
                weights: a.model.weights,
                guide_weights: a.model.guide_weights,
                synthetic: a.model.synthetic,
                model: a.model.model,
                image_size: a.model.image_size,
            },
            sampler: SamplerSettings {
                method: Method::parse(&s.mode, &s.method, Origin::CommandLine)?,
                steps: s.steps,
                atol: s.atol,
                rtol: s.rtol,
                path: s.path,
                prediction: s.prediction,
                diffusion_form: s.diffusion_form,
                diffusion_norm: s.diffusion_norm,
                last_step: s.last_step,
                last_step_size: s.last_step_size,
                sample_eps: s.sample_eps,
            },
            guidance: GuidanceSettings {
                cfg: a.guidance.cfg,
                cfg_interval: a.guidance.cfg_interval,
                cfg_interval_mode: a.guidance.cfg_interval_mode,
                cfg_all_channels: a.guidance.cfg_all_channels,
                method: a.guidance.guidance,
                params: a.guidance.params()?,
            },
            inputs: InputSettings {
                seed: a.inputs.seed,
                num_samples: a.inputs.num_samples,
                classes: a.inputs.classes.map(|c| c.0),
                samples_per_class: a.inputs.samples_per_class,
                init_noise: a.inputs.init_noise,
                labels: a.inputs.labels,
                replay_noise: a.inputs.replay_noise,
            },
            outputs: OutputSettings {
                latents_out: a.outputs.latents_out,
                vae: a.outputs.vae,
                out: a.outputs.out,
                png_grid: a.outputs.png_grid,
            },
            shard: ShardSettings {
                unit_size: a.shard.unit_size,
                shard_index: a.shard.shard_index,
                num_shards: a.shard.num_shards,
            },
            precision: a.device.precision.unwrap_or_default(),
            origin: Origin::CommandLine,
        })
    }
}
