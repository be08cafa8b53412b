//! `sitdiv bench …`: throughput benchmarks, each printing a table.

use anyhow::Result;
use clap::Subcommand;

use super::device::{
    on_device, BackbonesBenchRun, BenchRun, DeviceArgs, InceptionBenchRun, VaeBenchRun,
    ValLossBenchRun,
};
use sitdiv::bench;

#[derive(Subcommand)]
pub enum BenchWhat {
    /// Every network of a study point on the CPU (formula weights of the released sizes), each
    /// alternated round by round with PyTorch on the same machine (scripts/torch_cpu_baseline.py),
    /// in one table: median items/s, their range over the rounds, and the ratio.
    All {
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Timed calls per timing (after one untimed call).
        #[arg(long, default_value_t = 3)]
        iters: usize,
        /// The Python that has torch (and diffusers, pytorch-fid, transformers, lpips,
        /// dreamsim); without it only sitdiv's figures are printed.
        #[arg(long)]
        python: Option<String>,
        #[arg(long, default_value = "scripts/torch_cpu_baseline.py")]
        script: std::path::PathBuf,
        /// Only these networks (comma-separated ids: sit-s2, vae, inception, dinov2-b14,
        /// clip-b32, dreamsim, mocov3-r50, dinov2-l14, lpips-alex, lpips-vgg, diversity).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// SiT forward passes on synthetic weights.
    Sit {
        #[arg(long, default_value = "SiT-XL/2")]
        model: String,
        #[arg(long, default_value_t = 256)]
        image_size: usize,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        #[arg(long, default_value_t = 5)]
        iters: usize,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// The Fréchet distance of two random full-rank covariances.
    Fid {
        #[arg(long, default_value_t = 2048)]
        dim: usize,
    },
    /// The FID Inception (TF1 resize + network) on formula weights and random 256 px images.
    Inception {
        #[command(flatten)]
        run: NetArgs,
    },
    /// The diversity backbones (DINOv2-B/14 and -L/14, CLIP-B/32, DreamSim, ResNet-50, LPIPS
    /// AlexNet and VGG16) on formula weights, per batch of random inputs.
    Backbones {
        #[command(flatten)]
        run: NetArgs,
    },
    /// The diversity metrics' distance stage on random labelled embeddings.
    Diversity {
        #[arg(long, default_value_t = 2000)]
        n: usize,
        #[arg(long, default_value_t = 768)]
        dim: usize,
        #[arg(long, default_value_t = 100)]
        classes: usize,
        /// Images per backbone for the images/s rows (0 skips them).
        #[arg(long, default_value_t = 16)]
        images: usize,
    },
    /// The validation loss per batch of 256 px images: the SD-VAE encoder, then per time
    /// segment a SiT forward and the loss (synthetic weights).
    Valloss {
        #[arg(long, default_value = "SiT-XL/2")]
        model: String,
        #[arg(long, default_value_t = 8)]
        segments: usize,
        #[command(flatten)]
        run: NetArgs,
    },
    /// The SD-VAE decoder on synthetic weights.
    Vae {
        #[arg(long, default_value_t = 256)]
        image_size: usize,
        #[command(flatten)]
        run: NetArgs,
    },
}

/// Batches of a network benchmark, and where it runs.
#[derive(clap::Args)]
pub struct NetArgs {
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Untimed batches first (at least one).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    #[arg(long, default_value_t = 3)]
    iters: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

impl NetArgs {
    fn split(self) -> (bench::NetBench, DeviceArgs) {
        let b = bench::NetBench {
            batch: self.batch,
            warmup: self.warmup,
            iters: self.iters,
        };
        (b, self.device)
    }
}

impl BenchWhat {
    pub fn run(self) -> Result<()> {
        match self {
            BenchWhat::All {
                rounds,
                iters,
                python,
                script,
                only,
            } => bench::all(&bench::AllBench {
                rounds,
                iters,
                python,
                script,
                only,
            }),
            BenchWhat::Sit {
                model,
                image_size,
                batch,
                warmup,
                iters,
                device,
            } => on_device(
                &device,
                BenchRun(bench::SitBench {
                    model,
                    image_size,
                    batch,
                    warmup,
                    iters,
                    precision: device.precision.unwrap_or_default(),
                }),
            ),
            BenchWhat::Fid { dim } => bench::fid(dim),
            BenchWhat::Diversity {
                n,
                dim,
                classes,
                images,
            } => bench::diversity(n, dim, classes, images),
            BenchWhat::Inception { run } => {
                let (b, device) = run.split();
                on_device(&device, InceptionBenchRun(b))
            }
            BenchWhat::Backbones { run } => {
                let (b, device) = run.split();
                on_device(&device, BackbonesBenchRun(b))
            }
            BenchWhat::Valloss {
                model,
                segments,
                run,
            } => {
                let (b, device) = run.split();
                on_device(&device, ValLossBenchRun(model, segments, b))
            }
            BenchWhat::Vae { image_size, run } => {
                let (b, device) = run.split();
                on_device(&device, VaeBenchRun(image_size, b))
            }
        }
    }
}
