//! `sitdiv valloss`: the flow-matching loss on held-out images against the number of images.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::one_of;
use super::device::{on_device, DeviceArgs, OnBackend};
use sitdiv::backend::{Backend, Precisions};
use sitdiv::pipeline::valloss::{self, ValLossJob};
use sitdiv::sampling::path::PathType;
use sitdiv::sampling::Prediction;

#[derive(Args)]
pub struct ValLossArgs {
    /// SiT weights (convert_weights.py sit: the config in the metadata).
    #[arg(long)]
    weights: PathBuf,
    /// SD-VAE weights with the encoder half (convert_weights.py vae --encoder); none for a
    /// pixel-space SiT.
    #[arg(long)]
    vae: Option<PathBuf>,
    /// A folder of JPEG or PNG images (taken in sorted name order) or an ADM-style npz (`arr_0`, with
    /// labels in `arr_1`).
    #[arg(long)]
    images: PathBuf,
    /// `name class` per line, matched to the images by name (an npz's names are its indices);
    /// a missing, unknown or repeated name is an error.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Numbers of images: nested prefixes of one seeded permutation.
    #[arg(long, value_delimiter = ',', default_value = "10,50,200,1000,10000")]
    n: Vec<usize>,
    /// Time segments: t = (i + 0.5) / S for segment i.
    #[arg(long, default_value_t = 8)]
    segments: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// t uniform within each segment (from the seeded stream) instead of its centre.
    #[arg(long)]
    t_jitter: bool,
    /// A seeded sample of the VAE posterior instead of its mean.
    #[arg(long)]
    sample_posterior: bool,
    #[arg(long, value_parser = one_of::<PathType>(), default_value = "linear")]
    path: PathType,
    #[arg(long, value_parser = one_of::<Prediction>(), default_value = "velocity")]
    prediction: Prediction,
    /// Side of the centre crop (ADM's `center_crop_arr`).
    #[arg(long, default_value_t = 256)]
    image_size: usize,
    /// Images per forward (memory only: losses do not depend on it).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Bootstrap resamples of each N's mean.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    #[arg(long)]
    out: PathBuf,
    /// This task's block of the units (of --batch images each); every shard writes its unit
    /// files under --out, and the run that finds them all writes the summary.
    #[arg(long, default_value_t = 0)]
    shard_index: usize,
    #[arg(long, default_value_t = 1)]
    num_shards: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

struct ValLossRun(ValLossJob);

impl OnBackend for ValLossRun {
    fn run<B: Backend>(self, be: &B, _p: Precisions) -> Result<()> {
        valloss::run(be, &self.0)
    }
}

pub fn run(a: ValLossArgs) -> Result<()> {
    let job = ValLossJob {
        weights: a.weights,
        vae: a.vae,
        images: a.images,
        labels: a.labels,
        n: a.n,
        segments: a.segments,
        seed: a.seed,
        t_jitter: a.t_jitter,
        sample_posterior: a.sample_posterior,
        path: a.path,
        prediction: a.prediction,
        image_size: a.image_size,
        batch: a.batch,
        bootstrap: a.bootstrap,
        out: a.out,
        shard_index: a.shard_index,
        num_shards: a.num_shards,
    };
    on_device(&a.device, ValLossRun(job))
}
