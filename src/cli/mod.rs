//! The command line: every clap struct of sitdiv, and its conversion into the library's jobs.
//! Nothing below this module knows clap; settings arrive there as domain types.

mod args;
mod bench;
mod device;
mod sample;
mod sweep;
mod valloss;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use args::{one_of, MetricArgs, SubsetArgs};
use bench::BenchWhat;
use device::{on_device, DecodeRun, DeviceArgs, EvalRun, FeaturesRun, SampleRun};
use sample::SampleArgs;
use sitdiv::pipeline::backbone::Backbone;
use sitdiv::pipeline::decode::DecodeJob;
use sitdiv::pipeline::evaluate::MetricsJob;
use sitdiv::pipeline::features::{EvalJob, FeaturesJob};
use sitdiv::pipeline::settings::SampleJob;
use sweep::SweepAction;

#[derive(Parser)]
#[command(
    name = "sitdiv",
    version,
    about = "Sample SiT models and measure quality and diversity"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Sample latents with an ODE or SDE solver.
    Sample(Box<SampleArgs>),
    /// Plots, tables, sample grids and an index.html from merged sweeps.
    Report {
        /// Sweep output folders (each merged: results/, results.csv, units/).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// The toy study from the repository's own files: a small trained pixel-space SiT swept
    /// over guidance × ODE/SDE, measured with the toy classifier and reported (CPU, minutes).
    Demo {
        /// A sweep file to run instead of the embedded toy study (sweeps/toy.toml, whose files
        /// are written to the output folder's inputs/).
        #[arg(long)]
        sweep: Option<PathBuf>,
        /// Output folder (default: runs/<sweep name>); the report goes to its report/.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Sweeps: a grid of sampler settings cut into work units, run in shards (SLURM arrays),
    /// resumed, verified and merged into one JSON per run config and a tidy results.csv.
    Sweep {
        #[command(subcommand)]
        action: SweepAction,
    },
    /// Decode sampler latents with the SD-VAE into an ADM-style .npz of uint8 images.
    Decode {
        /// SD-VAE weights (diffusers, legacy diffusers or original LDM names).
        #[arg(long)]
        vae: PathBuf,
        /// Latents as the sampler writes them, float32 (N, 4, h, w).
        #[arg(long)]
        latents: PathBuf,
        /// Output .npz (`arr_0`: uint8 (N, H, W, 3)).
        #[arg(long)]
        out: PathBuf,
        /// Latents decoded per call (memory only; results do not depend on it).
        #[arg(long, default_value_t = 4)]
        batch: usize,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Metrics from feature files into one JSON: quality from Inception features (pool, spatial,
    /// logits), diversity and Vendi from an `embedding` with `labels`.
    Metrics {
        /// Sample features .npz: float32 `pool` (N, 2048), `spatial` (N, 2023), `logits` (N, 1008).
        #[arg(long)]
        features: PathBuf,
        /// Reference features .npz, or an ADM reference batch with `mu`, `sigma`, `mu_s`, `sigma_s`
        /// (needed by fid, sfid, pr, dc, kid).
        #[arg(long)]
        ref_features: Option<PathBuf>,
        #[command(flatten)]
        settings: MetricArgs,
        #[arg(long)]
        json: PathBuf,
    },
    /// Features of image batches (an ADM-style .npz with `arr_0` uint8 (N, H, W, 3), or a run folder).
    Features {
        #[arg(long, value_parser = one_of::<Backbone>(), default_value = "inception")]
        backbone: Backbone,
        /// Backbone weights (upstream names, converted by scripts/convert_weights.py).
        #[arg(long)]
        weights: PathBuf,
        #[arg(long)]
        images: PathBuf,
        /// Output .npz. Inception: float32 `pool` (N, 2048), `spatial` (N, 2023), `logits`
        /// (N, 1008). Diversity backbones: `embedding` (N, D), `indices` (N), `labels` (N).
        #[arg(long)]
        out: PathBuf,
        /// Images per forward pass (memory only; features do not depend on it).
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[command(flatten)]
        subset: SubsetArgs,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Metrics of sample images: quality against a reference as the ADM evaluator computes it
    /// (Inception), diversity and Vendi with a diversity backbone.
    Eval {
        /// Sample images: an .npz with `arr_0`, or a run folder of such batches.
        #[arg(long)]
        samples: PathBuf,
        /// ADM reference batch (`arr_0`, `mu`, `sigma`, `mu_s`, `sigma_s`) or a features .npz
        /// (needed by fid, sfid, pr, dc, kid).
        #[arg(long = "ref")]
        reference: Option<PathBuf>,
        /// FID Inception weights (pytorch-fid names; needed by the quality metrics).
        #[arg(long)]
        inception: Option<PathBuf>,
        /// Diversity backbone of the diversity and vendi metrics.
        #[arg(long, value_parser = one_of::<Backbone>())]
        backbone: Option<Backbone>,
        /// Weights of --backbone.
        #[arg(long)]
        backbone_weights: Option<PathBuf>,
        #[command(flatten)]
        subset: SubsetArgs,
        #[command(flatten)]
        settings: MetricArgs,
        #[arg(long)]
        json: PathBuf,
        /// Images per forward pass (memory only).
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Also write the samples' features (.npz for `sitdiv metrics`).
        #[arg(long)]
        features_out: Option<PathBuf>,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Print a weights file's tensors, dtypes, metadata (config) and sha256.
    Inspect { file: PathBuf },
    /// The flow-matching loss of a SiT on held-out images, per time segment, against the number
    /// of images (VAE-encoded, labels matched by name).
    Valloss(Box<valloss::ValLossArgs>),
    /// Write seeded random weights of a released architecture (SiT-XL/2, the SD-VAE decoder, the
    /// FID Inception, DINOv2-B/14, CLIP-B/32, ResNet-50) under upstream names: for trying
    /// commands and sweeps on a node without downloads, never for results.
    SynthWeights {
        /// SiT-XL/2 (any SiT preset), sd-vae, inception, dinov2-b14, clip-b32 or resnet50.
        #[arg(long)]
        net: String,
        /// Image size of a SiT.
        #[arg(long, default_value_t = 256)]
        image_size: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Throughput benchmarks, printed as a table.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Sample(a) => {
            let device = a.device.clone();
            on_device(&device, SampleRun(SampleJob::try_from(*a)?))
        }
        Command::Bench { what } => what.run(),
        Command::Report { runs, out } => sitdiv::report::run(&runs, &out),
        Command::Sweep { action } => action.run(),
        Command::Demo { sweep, out, device } => sweep::demo(sweep, out, device),
        Command::Inspect { file } => sitdiv::pipeline::inspect::run(&file),
        Command::Valloss(a) => valloss::run(*a),
        Command::SynthWeights {
            net,
            image_size,
            seed,
            out,
        } => sitdiv::pipeline::synth::write(&net, image_size, seed, &out),
        Command::Metrics {
            features,
            ref_features,
            settings,
            json,
        } => sitdiv::pipeline::evaluate::run(&MetricsJob {
            features,
            ref_features,
            settings: settings.into(),
            json,
        }),
        Command::Features {
            backbone,
            weights,
            images,
            out,
            batch,
            subset,
            device,
        } => on_device(
            &device,
            FeaturesRun(FeaturesJob {
                backbone,
                weights,
                images,
                out,
                batch,
                subset: subset.into(),
            }),
        ),
        Command::Eval {
            samples,
            reference,
            inception,
            backbone,
            backbone_weights,
            subset,
            settings,
            json,
            batch,
            features_out,
            device,
        } => on_device(
            &device,
            EvalRun(EvalJob {
                samples,
                reference,
                inception,
                backbone,
                backbone_weights,
                subset: subset.into(),
                settings: settings.into(),
                json,
                batch,
                features_out,
            }),
        ),
        Command::Decode {
            vae,
            latents,
            out,
            batch,
            device,
        } => on_device(
            &device,
            DecodeRun(DecodeJob {
                vae,
                latents,
                out,
                batch,
            }),
        ),
    }
}
