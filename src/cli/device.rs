//! How the binary's commands reach a backend: `--device` and `--precision` pick the CPU or a
//! GPU, and each command is a job that runs on whichever was picked.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use sitdiv::backend::cpu::Cpu;
use sitdiv::backend::{Backend, Precision, Precisions};
use sitdiv::bench;
use sitdiv::pipeline::features::{self, EvalJob, FeaturesJob};
use sitdiv::pipeline::sample;
use sitdiv::pipeline::settings::SampleJob;

/// Where networks run, and in what arithmetic.
#[derive(Args, Clone)]
pub struct DeviceArgs {
    /// cpu, cuda, cuda:N, or auto (the first GPU if one works, else the CPU).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Arithmetic of the SiT's and the VAE decoder's products: fp32 (the default and the test
    /// mode), tf32 or bf16 (GPU only).
    #[arg(long, value_parser = super::args::one_of::<Precision>())]
    pub precision: Option<Precision>,
    /// Arithmetic of the metric backbones' products (FID Inception, DINOv2, CLIP, ResNet-50,
    /// LPIPS, DreamSim): tf32 on a GPU by default, as PyTorch's convolutions run there; fp32 is
    /// the test mode and the CPU's only one.
    #[arg(long, value_parser = super::args::one_of::<Precision>())]
    pub eval_precision: Option<Precision>,
    /// Synchronise after every GPU launch, so an error names the op that caused it.
    #[arg(long)]
    pub sync_debug: bool,
    /// Run every forward eagerly instead of replaying a CUDA graph captured once per batch size.
    #[arg(long)]
    pub no_cuda_graphs: bool,
    /// NVTX ranges (forward, block, attention, MLP) for an Nsight Systems timeline.
    #[arg(long)]
    pub nvtx: bool,
}

impl DeviceArgs {
    /// The precisions of `job` on a GPU (`gpu`) or on the CPU, which refuses anything but fp32.
    fn precisions(&self, gpu: bool, job: &impl OnBackend) -> Result<Precisions> {
        if let (true, Some(p)) = (job.backbones_only(), self.precision) {
            bail!(
                "--precision {p:?} sets the SiT's and the VAE's arithmetic; this command runs \
                 metric backbones only: use --eval-precision"
            );
        }
        if !gpu {
            for (flag, p) in [
                ("--precision", self.precision),
                ("--eval-precision", self.eval_precision),
            ] {
                if let Some(p) = p.filter(|&p| p != Precision::Fp32) {
                    bail!(
                        "{flag} {p:?} needs a GPU (--device cuda); the CPU backend is strict fp32"
                    );
                }
            }
        }
        let eval_default = if gpu {
            Precision::Tf32
        } else {
            Precision::Fp32
        };
        Ok(Precisions {
            sampling: self.precision.unwrap_or_default(),
            eval: self.eval_precision.unwrap_or(eval_default),
        })
    }
}

/// Something to run on whichever backend `--device` picks.
pub trait OnBackend {
    /// Whether the job runs metric backbones only, on a backend in `--eval-precision` (any
    /// other job's backend is in `--precision`).
    fn backbones_only(&self) -> bool {
        false
    }

    fn run<B: Backend>(self, be: &B, p: Precisions) -> Result<()>;
}

pub fn run_cpu(d: &DeviceArgs, job: impl OnBackend) -> Result<()> {
    let p = d.precisions(false, &job)?;
    job.run(&Cpu, p)
}

/// Runs `job` on the backend `--device` names; `auto` falls back to the CPU with a log line.
pub fn on_device(d: &DeviceArgs, job: impl OnBackend) -> Result<()> {
    let (ordinal, auto) = match d.device.as_str() {
        "cpu" => return run_cpu(d, job),
        "auto" => (0, true),
        "cuda" => (0, false),
        s => match s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => (n, false),
            None => bail!("--device {s}: expected cpu, cuda, cuda:N or auto"),
        },
    };
    #[cfg(any(feature = "cuda", feature = "cuda12"))]
    {
        let p = d.precisions(true, &job)?;
        let options = sitdiv::backend::cuda::CudaOptions {
            precision: if job.backbones_only() {
                p.eval
            } else {
                p.sampling
            },
            sync_debug: d.sync_debug,
            graphs: !d.no_cuda_graphs,
            nvtx: d.nvtx,
        };
        match sitdiv::backend::cuda::Cuda::with_options(ordinal, options) {
            Ok(be) => job.run(&be, p),
            Err(e) if auto => {
                log::info!("--device auto: no usable GPU ({e:#}); running on the CPU");
                run_cpu(d, job)
            }
            Err(e) => Err(e),
        }
    }
    #[cfg(not(any(feature = "cuda", feature = "cuda12")))]
    {
        if auto {
            log::info!("--device auto: this binary was built without CUDA; running on the CPU");
            return run_cpu(d, job);
        }
        bail!(
            "--device {}: this binary was built without CUDA (device {ordinal} unreachable); rebuild with \
             --features cuda (CUDA 13 drivers) or --features cuda12, or use --device cpu",
            d.device
        )
    }
}

pub struct SweepRun {
    /// The sweep file and `--out`.
    pub sweep: PathBuf,
    pub out: Option<PathBuf>,
    pub step: SweepStep,
}

pub enum SweepStep {
    /// Shard index, shard count.
    Run(usize, usize),
    Merge,
    /// Run, merge and report; for the embedded toy study (its inputs folder), the validation
    /// loss too.
    Demo(Option<PathBuf>),
}

impl OnBackend for SweepRun {
    fn run<B: Backend>(self, be: &B, p: Precisions) -> Result<()> {
        use sitdiv::pipeline::sweep;
        let (file, out) = (&self.sweep, self.out.as_deref());
        match self.step {
            SweepStep::Run(i, n) => sweep::run(be, file, out, i, n, p),
            SweepStep::Merge => sweep::merge::merge(be, file, out),
            SweepStep::Demo(toy) => {
                let dir = sweep::run_all(be, file, out, p)?;
                if let Some(inputs) = toy {
                    sweep::demo::toy_valloss(be, &inputs, &dir)?;
                }
                let report = dir.join("report");
                sitdiv::report::run(std::slice::from_ref(&dir), &report)?;
                println!("report: {}", report.join("index.html").display());
                Ok(())
            }
        }
    }
}

pub struct SampleRun(pub SampleJob);

impl OnBackend for SampleRun {
    fn run<B: Backend>(self, be: &B, _p: Precisions) -> Result<()> {
        sample::run_on(be, &self.0)
    }
}

pub struct DecodeRun(pub sitdiv::pipeline::decode::DecodeJob);

impl OnBackend for DecodeRun {
    fn run<B: Backend>(self, be: &B, _p: Precisions) -> Result<()> {
        sitdiv::pipeline::decode::run_on(be, &self.0)
    }
}

/// Model, time segments, batches.
pub struct ValLossBenchRun(pub String, pub usize, pub bench::NetBench);

impl OnBackend for ValLossBenchRun {
    fn run<B: Backend>(self, be: &B, _p: Precisions) -> Result<()> {
        bench::valloss(be, &self.0, self.1, &self.2)
    }
}

/// Image size, batches.
pub struct VaeBenchRun(pub usize, pub bench::NetBench);

impl OnBackend for VaeBenchRun {
    fn run<B: Backend>(self, be: &B, _p: Precisions) -> Result<()> {
        bench::vae(be, self.0, &self.1)
    }
}

pub struct FeaturesRun(pub FeaturesJob);

impl OnBackend for FeaturesRun {
    fn backbones_only(&self) -> bool {
        true
    }

    fn run<B: Backend>(self, be: &B, _p: Precisions) -> Result<()> {
        features::run_features(be, &self.0)
    }
}

pub struct EvalRun(pub EvalJob);

impl OnBackend for EvalRun {
    fn backbones_only(&self) -> bool {
        true
    }

    fn run<B: Backend>(self, be: &B, _p: Precisions) -> Result<()> {
        features::run_eval(be, &self.0)
    }
}

pub struct InceptionBenchRun(pub bench::NetBench);

impl OnBackend for InceptionBenchRun {
    fn backbones_only(&self) -> bool {
        true
    }

    fn run<B: Backend>(self, be: &B, _p: Precisions) -> Result<()> {
        bench::inception(be, &self.0)
    }
}

pub struct BackbonesBenchRun(pub bench::NetBench);

impl OnBackend for BackbonesBenchRun {
    fn backbones_only(&self) -> bool {
        true
    }

    fn run<B: Backend>(self, be: &B, _p: Precisions) -> Result<()> {
        bench::backbones(be, &self.0)
    }
}

pub struct BenchRun(pub bench::SitBench);

impl OnBackend for BenchRun {
    fn run<B: Backend>(self, be: &B, _p: Precisions) -> Result<()> {
        bench::sit(be, &self.0)
    }
}
