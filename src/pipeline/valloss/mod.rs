//! `sitdiv valloss`: the flow-matching loss of a SiT on held-out images, per time segment, and
//! how it settles as the number of images grows (the study's §6.8). Images go through SiT's
//! training preprocessing (ADM's centre crop, [−1, 1]) and the SD-VAE encoder (posterior mean,
//! or a seeded sample, × the scaling factor); each image and segment i of S gets
//! t = (i + ½)/S (or uniform within the segment) and noise from the counter-based stream keyed by
//! (seed, image index, segment), so a loss depends on N never, and on `--batch` only in its last
//! bits (a product's kernel depends on its row count); a rerun gives the same bytes. The subsets
//! for each N are nested prefixes of one seeded permutation, so the curve is paired.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::backend::Backend;
use crate::io::{npy, npz};
use crate::metrics::bootstrap::{bootstrap, Interval};
use crate::models::preprocess::{adm_center_crop, to_chw, Normalize};
use crate::models::sit::{SiT, SiTConfig};
use crate::models::vae::{Encoder, Posterior};
use crate::rng;
use crate::sampling::loss::{loss, plan};
use crate::sampling::path::PathType;
use crate::sampling::Prediction;
use crate::weights::WeightFile;

mod images;
mod units;

use images::{match_labels, Images};

/// Noise x0 of (image, segment): draw = segment.
const STREAM_NOISE: u32 = 6;
/// The time within a segment (`--t-jitter`) and the posterior sample: draw = segment, or
/// `u32::MAX` for the posterior.
const STREAM_TIME: u32 = 7;
/// The permutation of the images.
const STREAM_PERMUTATION: u32 = 8;

/// Everything `sitdiv valloss` needs.
#[derive(Debug, Clone, Serialize)]
pub struct ValLossJob {
    pub weights: PathBuf,
    /// The SD-VAE with its encoder; none for a pixel-space SiT (images are its input).
    pub vae: Option<PathBuf>,
    /// A folder of JPEG or PNG files (sorted by name) or an ADM-style npz (`arr_0`, `arr_1` labels).
    pub images: PathBuf,
    /// `name class` per line (names are file names, or indices for an npz); optional for an
    /// npz with `arr_1`.
    pub labels: Option<PathBuf>,
    pub n: Vec<usize>,
    pub segments: usize,
    pub seed: u64,
    pub t_jitter: bool,
    /// Encode to a posterior sample instead of its mean.
    pub sample_posterior: bool,
    pub path: PathType,
    pub prediction: Prediction,
    pub image_size: usize,
    pub batch: usize,
    pub bootstrap: usize,
    pub out: PathBuf,
    /// This task's block of units, of `num_shards`.
    pub shard_index: usize,
    pub num_shards: usize,
}

/// A seeded permutation of 0..n (Fisher–Yates from the top), whose prefixes are the subsets.
fn permutation(seed: u64, n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        p.swap(i, rng::below(seed, i as u64, STREAM_PERMUTATION, i + 1));
    }
    p
}

/// The networks and settings that turn images into losses.
struct Scorer<'a, B: Backend> {
    be: &'a B,
    sit: SiT<B>,
    encoder: Option<Encoder<B>>,
    job: &'a ValLossJob,
}

impl<B: Backend> Scorer<'_, B> {
    /// Losses (per image, per segment) of images `idx` (dataset indices) with `labels`.
    fn losses(&self, images: &Images, idx: &[usize], labels: &[i64]) -> Result<Vec<Vec<f64>>> {
        let (job, s) = (self.job, self.job.image_size);
        let mut x = Vec::with_capacity(idx.len() * 3 * s * s);
        for &i in idx {
            let (px, hw) = images.pixels(i)?;
            let crop = adm_center_crop(&px, hw, s);
            x.extend(to_chw(&crop, (s, s), Normalize::Signed));
        }
        let n = idx.len();
        let x1 = match &self.encoder {
            Some(enc) => self.encode(enc, &x, idx)?,
            None => x, // a pixel-space model: the image in [−1, 1] is the data
        };
        let per = x1.len() / n;
        let mut out = vec![Vec::with_capacity(job.segments); n];
        for seg in 0..job.segments {
            let t: Vec<f32> = idx.iter().map(|&i| self.time(i, seg)).collect();
            let x0: Vec<f32> = idx
                .iter()
                .flat_map(|&i| rng::gaussian(job.seed, i as u64, seg as u32, STREAM_NOISE, per))
                .collect();
            let (xt, ut) = plan(job.path, &t, &x0, &x1)?;
            let pred = self.sit.forward(self.be, &xt, &t, labels)?;
            let l = loss(job.path, job.prediction, &t, &x0, &ut, &pred)?;
            for (o, v) in out.iter_mut().zip(l) {
                o.push(v);
            }
        }
        Ok(out)
    }

    /// The latents of images x (N, 3, s, s): the posterior's mean or a seeded sample, × the
    /// scaling factor, as the reference's training encodes.
    fn encode(&self, enc: &Encoder<B>, x: &[f32], idx: &[usize]) -> Result<Vec<f32>> {
        let (n, s) = (idx.len(), self.job.image_size);
        let moments = enc.moments(self.be, x, n, (s, s), None)?;
        let post = Posterior::new(&moments, n, enc.config.latent_channels)?;
        let per = post.mean.len() / n;
        let latent = if self.job.sample_posterior {
            let seed = self.job.seed;
            let noise: Vec<f32> = idx
                .iter()
                .flat_map(|&i| rng::gaussian(seed, i as u64, u32::MAX, STREAM_TIME, per))
                .collect();
            post.sample(&noise)?
        } else {
            post.mean
        };
        let scale = enc.config.scaling_factor as f32;
        Ok(latent.iter().map(|v| v * scale).collect())
    }

    /// t of image `i` in segment `seg`: the segment's centre, or uniform within it.
    fn time(&self, i: usize, seg: usize) -> f32 {
        let s = self.job.segments as f64;
        let u = if self.job.t_jitter {
            rng::uniform(self.job.seed, i as u64, seg as u32, STREAM_TIME, 1)[0]
        } else {
            0.5
        };
        ((seg as f64 + u) / s) as f32
    }
}

/// One row of the summary: the first `n` images of the permutation.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub n: usize,
    /// Mean loss per segment.
    pub segments: Vec<f64>,
    /// Mean over images of each image's mean over segments, with its bootstrap interval.
    pub mean: Interval,
    /// Standard error of that mean (sample standard deviation / √n).
    pub standard_error: f64,
}

fn summarise(losses: &[Vec<f64>], n: usize, job: &ValLossJob) -> Result<Summary> {
    let rows = &losses[..n];
    let per_image: Vec<f64> = rows
        .iter()
        .map(|r| r.iter().sum::<f64>() / r.len() as f64)
        .collect();
    let segments = (0..job.segments)
        .map(|s| rows.iter().map(|r| r[s]).sum::<f64>() / n as f64)
        .collect();
    let mean_of =
        |ix: &[usize]| Ok(ix.iter().map(|&i| per_image[i]).sum::<f64>() / ix.len() as f64);
    let mean = bootstrap(n, None, job.bootstrap, 0.95, job.seed, mean_of)?;
    let var = per_image
        .iter()
        .map(|v| (v - mean.estimate).powi(2))
        .sum::<f64>()
        / (n.max(2) - 1) as f64;
    Ok(Summary {
        n,
        segments,
        mean,
        standard_error: (var / n as f64).sqrt(),
    })
}

/// `sitdiv valloss`: losses.npz (per image and segment) and valloss.json (per N).
pub fn run<B: Backend>(be: &B, job: &ValLossJob) -> Result<()> {
    let (images, labels, largest) = inputs(job)?;
    crate::io::probe_folder(&job.out)?;
    let (scorer, hashes) = Scorer::load(be, job)?;
    let order: Vec<usize> = permutation(job.seed, images.names.len())[..largest].to_vec();
    // What a unit file must have been made from: the settings, the weights and its images.
    let identity = |k: usize| {
        let range = k * job.batch..((k + 1) * job.batch).min(largest);
        let names: Vec<&str> = order[range]
            .iter()
            .map(|&i| images.names[i].as_str())
            .collect();
        serde_json::json!({
            "k": k,
            "images": names,
            "weights_sha256": hashes,
            "settings": [job.segments, job.seed, job.batch, job.image_size],
            "options": [job.t_jitter, job.sample_posterior],
            "path": job.path,
            "prediction": job.prediction,
        })
    };
    for u in units::shard(largest, job.batch, job.shard_index, job.num_shards)? {
        let id = identity(u.k);
        if units::read(&job.out, u.k, &id).is_some() {
            continue;
        }
        let idx = &order[u.range.clone()];
        let l: Vec<i64> = idx.iter().map(|&i| labels[i]).collect();
        let losses = scorer.losses(&images, idx, &l)?;
        units::write(&job.out, u.k, &losses, idx, &id)?;
        log::info!(
            "valloss: unit {} (images {:?} of the permutation) done",
            u.k,
            u.range
        );
    }
    // The summary comes from the unit files, so any sharding gives the bytes of one run; the
    // run that finds every unit done writes it.
    let count = units::count(largest, job.batch);
    let mut losses = Vec::with_capacity(largest);
    for k in 0..count {
        let Some(l) = units::read(&job.out, k, &identity(k)) else {
            log::info!(
                "valloss shard {}/{}: done; unit {k} of {count} is not yet: the run that finds every unit writes the summary",
                job.shard_index,
                job.num_shards
            );
            return Ok(());
        };
        losses.extend(l);
    }
    write(job, &images, &order, &labels, &losses, be.name())
}

/// The images, their labels and the largest N, checked.
fn inputs(job: &ValLossJob) -> Result<(Images, Vec<i64>, usize)> {
    ensure!(job.segments >= 1, "--segments must be at least 1");
    ensure!(job.batch >= 1, "--batch must be at least 1");
    ensure!(
        !job.n.is_empty() && job.n.iter().all(|&n| n >= 2),
        "--n: give sizes of at least 2"
    );
    let (images, batch_labels) = Images::open(&job.images)?;
    let labels = match (&job.labels, batch_labels) {
        (Some(f), _) => match_labels(&images.names, f)?,
        (None, Some(l)) => l,
        (None, None) => bail!(
            "{}: give --labels (the npz has no `arr_1`)",
            job.images.display()
        ),
    };
    ensure!(
        labels.len() == images.names.len(),
        "{}: {} labels for {} images",
        job.images.display(),
        labels.len(),
        images.names.len()
    );
    let largest = *job.n.iter().max().unwrap_or(&0);
    ensure!(
        largest <= images.names.len(),
        "--n {largest}: {} has only {} images",
        job.images.display(),
        images.names.len()
    );
    Ok((images, labels, largest))
}

impl<'a, B: Backend> Scorer<'a, B> {
    /// The SiT and (for a latent model) the encoder, checked against --image-size; and the
    /// SHA-256 of their files.
    fn load(be: &'a B, job: &'a ValLossJob) -> Result<(Self, Vec<String>)> {
        let file = WeightFile::open(&job.weights)?;
        let cfg = SiTConfig::from_metadata(&file)?.with_context(|| {
            format!(
                "{}: no config in the metadata (convert with convert_weights.py sit)",
                job.weights.display()
            )
        })?;
        let mut hashes = vec![crate::io::sha256_hex(file.bytes())];
        let sit = SiT::load(be, &file, cfg.clone())?;
        let encoder = match &job.vae {
            Some(p) => {
                let vae = WeightFile::open(p)?;
                hashes.push(crate::io::sha256_hex(vae.bytes()));
                Some(Encoder::load(be, &vae, None)?)
            }
            None => {
                ensure!(
                    cfg.in_channels == 3,
                    "{}: the SiT works on {} latent channels; give --vae (with the encoder: convert_weights.py vae --encoder)",
                    job.weights.display(),
                    cfg.in_channels
                );
                None
            }
        };
        let scale = encoder.as_ref().map_or(1, |e| e.scale());
        ensure!(
            job.image_size == cfg.input_size * scale,
            "--image-size {}: the SiT's input is {} px, {} px images",
            job.image_size,
            cfg.input_size,
            cfg.input_size * scale
        );
        Ok((
            Scorer {
                be,
                sit,
                encoder,
                job,
            },
            hashes,
        ))
    }
}

fn write(
    job: &ValLossJob,
    images: &Images,
    order: &[usize],
    labels: &[i64],
    losses: &[Vec<f64>],
    device: String,
) -> Result<()> {
    let summaries = job
        .n
        .iter()
        .map(|&n| summarise(losses, n, job))
        .collect::<Result<Vec<_>>>()?;
    let flat: Vec<f64> = losses.iter().flatten().copied().collect();
    let idx: Vec<i64> = order.iter().map(|&i| i as i64).collect();
    let lab: Vec<i64> = order.iter().map(|&i| labels[i]).collect();
    let members = [
        npz::Member {
            key: "loss".into(),
            npy: npy::encode_f64(&[order.len(), job.segments], &flat)?,
        },
        npz::Member {
            key: "image_index".into(),
            npy: npy::encode_i64(&[order.len()], &idx)?,
        },
        npz::Member {
            key: "label".into(),
            npy: npy::encode_i64(&[order.len()], &lab)?,
        },
    ];
    let manifest = crate::io::manifest(
        "sitdiv valloss",
        &device,
        serde_json::json!({
            "job": job,
            "first_images": order.iter().take(5).map(|&i| images.names[i].clone()).collect::<Vec<_>>(),
        }),
    );
    let npz_path = job.out.join("losses.npz");
    crate::io::write_with_manifest(&npz_path, &manifest, |p| npz::write(p, &members))?;
    let json = serde_json::to_string_pretty(&serde_json::json!({ "summaries": summaries }))? + "\n";
    let json_path = job.out.join("valloss.json");
    crate::io::write_with_manifest(&json_path, &manifest, |p| {
        crate::io::write_atomic(p, json.as_bytes())
    })?;
    for s in &summaries {
        println!(
            "N {:>6}: loss {:.6} ± {:.6} (95 % [{:.6}, {:.6}]), per segment {:?}",
            s.n,
            s.mean.estimate,
            s.standard_error,
            s.mean.lo,
            s.mean.hi,
            s.segments
                .iter()
                .map(|v| format!("{v:.4}"))
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}
