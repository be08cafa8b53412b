//! `sitdiv valloss`: the flow-matching loss of a SiT on held-out images, per time segment, and
//! how it settles as the number of images grows (the study's §6.8). Images go through SiT's
//! training preprocessing (ADM's centre crop, [−1, 1]) and the SD-VAE encoder (posterior mean,
//! or a seeded sample, × the scaling factor); each image and segment i of S gets
//! t = (i + ½)/S (or uniform within the segment) and noise from the counter-based stream keyed by
//! (seed, image index, segment), so a loss depends on N never, and on `--batch` only in its last
//! bits (a product's kernel depends on its row count); a rerun gives the same bytes. The subsets
//! for each N are nested prefixes of one seeded permutation, so the curve is paired.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// A folder of PNG files (sorted by name) or an ADM-style npz (`arr_0`, and `arr_1` labels).
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
}

/// Held-out images: names in order and where each one's pixels come from.
struct Images {
    names: Vec<String>,
    source: Source,
}

enum Source {
    Files(Vec<PathBuf>),
    /// (N, H, W, 3) uint8.
    Batch(npy::Array<u8>),
}

impl Images {
    fn open(path: &Path) -> Result<(Self, Option<Vec<i64>>)> {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            let names = files
                .iter()
                .map(|f| {
                    f.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            return Ok((
                Images {
                    names,
                    source: Source::Files(files),
                },
                None,
            ));
        }
        let members = npz::read(path)?;
        let get = |k: &str| members.iter().find(|m| m.key == k);
        let arr = get("arr_0").with_context(|| format!("{}: no `arr_0` images", path.display()))?;
        let images = npy::decode_u8(path, &arr.npy)?;
        ensure!(
            images.shape.len() == 4 && images.shape[3] == 3,
            "{}: `arr_0` is {:?}, expected uint8 RGB images (N, H, W, 3)",
            path.display(),
            images.shape
        );
        let labels = get("arr_1")
            .map(|m| npy::decode_i64(path, &m.npy))
            .transpose()?;
        let names = (0..images.shape[0]).map(|i| i.to_string()).collect();
        Ok((
            Images {
                names,
                source: Source::Batch(images),
            },
            labels.map(|l| l.data),
        ))
    }

    /// Image `i` as (H, W, 3) uint8.
    fn pixels(&self, i: usize) -> Result<(Vec<u8>, (usize, usize))> {
        match &self.source {
            Source::Batch(a) => {
                let (h, w) = (a.shape[1], a.shape[2]);
                Ok((a.data[i * h * w * 3..(i + 1) * h * w * 3].to_vec(), (h, w)))
            }
            Source::Files(files) => {
                let f = &files[i];
                let bytes =
                    std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
                ensure!(
                    bytes.starts_with(b"\x89PNG"),
                    "{}: not a PNG file (JPEG is not decoded yet: its decode must first equal Pillow's)",
                    f.display()
                );
                let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
                    .with_context(|| format!("{}: unreadable PNG", f.display()))?
                    .to_rgb8();
                let (w, h) = (img.width() as usize, img.height() as usize);
                Ok((img.into_raw(), (h, w)))
            }
        }
    }
}

/// The class of each image, matched by name: a missing, unknown or repeated name is an error
/// naming it.
fn match_labels(names: &[String], file: &Path) -> Result<Vec<i64>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut by_name: BTreeMap<&str, i64> = BTreeMap::new();
    for (k, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty());
        let (Some(name), Some(class), None) = (f.next(), f.next(), f.next()) else {
            bail!(
                "{} line {}: expected `name class`, got {line:?}",
                file.display(),
                k + 1
            );
        };
        let class: i64 = class.parse().with_context(|| {
            format!(
                "{} line {}: class {class:?} is not an integer",
                file.display(),
                k + 1
            )
        })?;
        ensure!(
            by_name.insert(name, class).is_none(),
            "{} line {}: image {name} has a second label",
            file.display(),
            k + 1
        );
    }
    let known: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    if let Some(extra) = by_name.keys().find(|n| !known.contains(*n)) {
        bail!(
            "{}: a label for {extra}, which is not among the images",
            file.display()
        );
    }
    names
        .iter()
        .map(|n| {
            by_name
                .get(n.as_str())
                .copied()
                .with_context(|| format!("{}: no label for image {n}", file.display()))
        })
        .collect()
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
    crate::io::probe_folder(&job.out)?;
    let file = WeightFile::open(&job.weights)?;
    let cfg = SiTConfig::from_metadata(&file)?.with_context(|| {
        format!(
            "{}: no config in the metadata (convert with convert_weights.py sit)",
            job.weights.display()
        )
    })?;
    let sit = SiT::load(be, &file, cfg.clone())?;
    let encoder = match &job.vae {
        Some(p) => Some(Encoder::load(be, &WeightFile::open(p)?, None)?),
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
    let scorer = Scorer {
        be,
        sit,
        encoder,
        job,
    };
    let order: Vec<usize> = permutation(job.seed, images.names.len())[..largest].to_vec();
    let mut losses = Vec::with_capacity(largest);
    for chunk in order.chunks(job.batch) {
        let l: Vec<i64> = chunk.iter().map(|&i| labels[i]).collect();
        losses.extend(scorer.losses(&images, chunk, &l)?);
        log::info!("valloss: {}/{largest} images", losses.len());
    }
    write(job, &images, &order, &labels, &losses, be.name())
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
