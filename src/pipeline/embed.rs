//! Diversity embeddings of image batches: the backbone (DINOv2, CLIP, DreamSim, MoCo v3 or SimCLR ResNet-50)
//! with its own preprocessing, the labels and global indices saved with the samples, and seeded
//! subsets (`--max-samples`, `--max-per-class`) whose chosen indices are always written out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use super::backbone::Backbone;
use super::progress::Progress;
use super::Unit;
use crate::backend::Backend;
use crate::io::{npy, npz};
use crate::models::clip::{ClipVision, ClipVisionConfig};
use crate::models::dinov2::{Dinov2, Dinov2Config, Dinov2Names};
use crate::models::dreamsim::{DreamSim, DreamSimConfig};
use crate::models::lpips::{Lpips, LpipsNet};
use crate::models::preprocess::Pipeline;
use crate::models::resnet::ResNet50;
use crate::models::toy_classifier::ToyClassifier;
use crate::rng;
use crate::weights::WeightFile;

/// Which rows enter a diversity metric.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Subset {
    /// Keep at most K samples per class (needs labels), drawn from `subset_seed`.
    pub max_per_class: Option<usize>,
    /// Keep at most K samples in all (after `max_per_class`), drawn from `subset_seed`.
    pub max_samples: Option<usize>,
    pub subset_seed: u64,
}

/// The image batches of a run with what they carry besides images.
pub struct BatchIndex {
    pub files: Vec<PathBuf>,
    /// Images per file.
    pub counts: Vec<usize>,
    /// Class of every image (`arr_1`), when every batch has them.
    pub labels: Option<Vec<i64>>,
    /// Global sample index of every image (`indices`), else the position in the run.
    pub indices: Vec<i64>,
}

impl BatchIndex {
    /// Reads shapes, labels and indices (never the images).
    pub fn read(files: &[PathBuf]) -> Result<Self> {
        ensure!(!files.is_empty(), "no image batches given");
        let (mut counts, mut labels, mut indices) = (Vec::new(), Vec::new(), Vec::new());
        let (mut with_labels, mut with_indices) = (0, 0);
        for f in files {
            let n = npz::image_count(f, "arr_0")?;
            let members = npz::read_only(f, &["arr_1", "indices"])?;
            for m in &members {
                let a = npy::decode_i64(f, &m.npy)?;
                ensure!(
                    a.data.len() == n,
                    "{}: `{}` has {} entries for {n} images",
                    f.display(),
                    m.key,
                    a.data.len()
                );
                match m.key.as_str() {
                    "arr_1" => {
                        labels.extend(a.data);
                        with_labels += 1;
                    }
                    _ => {
                        indices.extend(a.data);
                        with_indices += 1;
                    }
                }
            }
            if !members.iter().any(|m| m.key == "indices") {
                let start = counts.iter().sum::<usize>() as i64;
                indices.extend(start..start + n as i64);
            }
            counts.push(n);
        }
        ensure!(
            with_labels == 0 || with_labels == files.len(),
            "only {with_labels} of {} batches carry labels (`arr_1`)",
            files.len()
        );
        ensure!(
            with_indices == 0 || with_indices == files.len(),
            "only {with_indices} of {} batches carry global `indices`; positions would collide",
            files.len()
        );
        Ok(BatchIndex {
            files: files.to_vec(),
            counts,
            labels: (with_labels > 0).then_some(labels),
            indices,
        })
    }

    pub fn len(&self) -> usize {
        self.counts.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `k` of `candidates` by a partial Fisher–Yates driven by Philox draws (seed, `first + i`) of
/// the subset stream.
fn draw(candidates: &[usize], k: usize, seed: u64, first: u64) -> Vec<usize> {
    let mut c = candidates.to_vec();
    for i in 0..k.min(c.len()) {
        let r = rng::below(seed, first + i as u64, rng::STREAM_SUBSET, c.len() - i);
        c.swap(i, i + r);
    }
    c.truncate(k);
    c
}

/// Row positions kept by `subset`, ascending. Per class first (class number c in ascending
/// order draws counters c·N …), then over all rows (counters from (classes + 1)·N).
pub fn select_rows(n: usize, labels: Option<&[i64]>, subset: &Subset) -> Result<Vec<usize>> {
    let mut rows: Vec<usize> = (0..n).collect();
    if let Some(k) = subset.max_per_class {
        ensure!(k >= 1, "--max-per-class must be at least 1");
        let Some(labels) = labels else {
            bail!("--max-per-class needs labels: the batches have no `arr_1` (sitdiv sample writes the class of every image there)");
        };
        let mut by_class: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (i, &c) in labels.iter().enumerate() {
            by_class.entry(c).or_default().push(i);
        }
        rows = by_class
            .values()
            .enumerate()
            .flat_map(|(ci, r)| draw(r, k, subset.subset_seed, ci as u64 * n as u64))
            .collect();
        rows.sort_unstable();
    }
    if let Some(k) = subset.max_samples {
        ensure!(k >= 2, "--max-samples must be at least 2");
        let classes = labels.map_or(0, |l| {
            let mut c = l.to_vec();
            c.sort_unstable();
            c.dedup();
            c.len()
        });
        let first = (classes as u64 + 1) * n as u64;
        rows = draw(&rows, k, subset.subset_seed, first);
        rows.sort_unstable();
    }
    Ok(rows)
}

enum Net<B: Backend> {
    Lpips(Lpips<B>),
    Toy(ToyClassifier<B>),
    Dinov2(Dinov2<B>),
    Clip(ClipVision<B>),
    /// CLIP with its `image_embeds` L2-normalised per row, as CMMD embeds.
    ClipUnit(ClipVision<B>),
    DreamSim(DreamSim<B>),
    Resnet50(ResNet50<B>),
}

/// A diversity backbone with its preprocessing.
pub struct Embedder<B: Backend> {
    net: Net<B>,
    pipeline: Pipeline,
    pub backbone: Backbone,
}

impl<B: Backend> Embedder<B> {
    /// Loads `weights` for `backbone`; returns the file's SHA-256 too.
    pub fn load(be: &B, backbone: Backbone, weights: &Path) -> Result<(Self, String)> {
        let file = WeightFile::open(weights)?;
        let ctx = || format!("{}: not {} weights", weights.display(), backbone.name());
        let (net, pipeline) = match backbone {
            Backbone::Dinov2B14 | Backbone::Dinov2L14 => {
                let cfg = Dinov2Config::detect(&file).with_context(ctx)?;
                let release = cfg.names == Dinov2Names::Original;
                ensure!(
                    release == (backbone == Backbone::Dinov2L14),
                    "{}: {} expects {}; this file is {} (use {})",
                    weights.display(),
                    backbone.name(),
                    if release {
                        "a transformers DINOv2 checkpoint (facebook/dinov2-*)"
                    } else {
                        "the original release, as dgm-eval runs it (dinov2_vitl14_pretrain.pth)"
                    },
                    if release {
                        "the original release"
                    } else {
                        "a transformers checkpoint"
                    },
                    if release { "dinov2-l14" } else { "dinov2-b14" }
                );
                let p = if release {
                    Pipeline::Dinov2Dgm
                } else {
                    Pipeline::Dinov2Hf
                };
                (
                    Net::Dinov2(Dinov2::load(be, &file, cfg).with_context(ctx)?),
                    p,
                )
            }
            Backbone::ClipB32 | Backbone::ClipL14 | Backbone::ClipL14_336 => {
                load_clip(be, &file, backbone).with_context(ctx)?
            }
            Backbone::Dreamsim => {
                let cfg = DreamSimConfig::detect(&file).with_context(ctx)?;
                (
                    Net::DreamSim(DreamSim::load(be, &file, cfg).with_context(ctx)?),
                    Pipeline::DreamSim,
                )
            }
            Backbone::Mocov3R50 | Backbone::SimclrR50 => {
                let p = if backbone == Backbone::Mocov3R50 {
                    Pipeline::Mocov3
                } else {
                    Pipeline::Simclr
                };
                (
                    Net::Resnet50(ResNet50::load(be, &file).with_context(ctx)?),
                    p,
                )
            }
            Backbone::LpipsAlex | Backbone::LpipsVgg => {
                let net = if backbone == Backbone::LpipsAlex {
                    LpipsNet::Alex
                } else {
                    LpipsNet::Vgg
                };
                // Native resolution: the pipeline is unused.
                (
                    Net::Lpips(Lpips::load(be, &file, net).with_context(ctx)?),
                    Pipeline::Simclr,
                )
            }
            Backbone::Toy => (
                Net::Toy(ToyClassifier::load(be, &file).with_context(ctx)?),
                Pipeline::Simclr, // native resolution: the pipeline is unused
            ),
            Backbone::Inception => bail!("the Inception is not a diversity backbone"),
        };
        let sha = crate::io::sha256_hex(file.bytes());
        Ok((
            Embedder {
                net,
                pipeline,
                backbone,
            },
            sha,
        ))
    }

    /// Embeddings (N, D) of uint8 images (N, H, W, 3), the N images in one forward: every CPU
    /// product computes each element in one fixed order (backend/cpu/gemm.rs), so an embedding
    /// does not depend on which images share its pass.
    pub fn embed(
        &self,
        be: &B,
        images: &[u8],
        (n, h, w, c): (usize, usize, usize, usize),
    ) -> Result<Vec<f32>> {
        ensure!(
            c == 3,
            "{} takes RGB images, got {c} channels",
            self.backbone.name()
        );
        ensure!(
            images.len() == n * h * w * c,
            "image batch has {} bytes for ({n}, {h}, {w}, {c})",
            images.len()
        );
        let s = self.pipeline.size();
        let prepared = || -> Vec<f32> {
            images
                .chunks(h * w * 3)
                .flat_map(|img| self.pipeline.prepare(img, (h, w)))
                .collect()
        };
        match &self.net {
            Net::Lpips(m) => m.features(be, images, (n, h, w, 3)),
            Net::Toy(m) => Ok(m.forward(be, images, (n, h, w, 3))?.features),
            Net::Dinov2(m) => m.forward(be, &prepared(), n, (s, s)),
            Net::Clip(m) => m.forward(be, &prepared(), n),
            Net::ClipUnit(m) => Ok(unit_rows(m.forward(be, &prepared(), n)?, n)),
            Net::DreamSim(m) => m.embed(be, &prepared(), n),
            Net::Resnet50(m) => m.forward(be, &prepared(), n, (s, s)),
        }
    }
}

/// A CLIP tower for `backbone` with its preprocessing, refused when its input size is not
/// the pipeline's; clip-l14-336 L2-normalises its rows, as CMMD's authors do.
fn load_clip<B: Backend>(
    be: &B,
    file: &WeightFile,
    backbone: Backbone,
) -> Result<(Net<B>, Pipeline)> {
    let cfg = ClipVisionConfig::detect(file)?;
    let unit = backbone == Backbone::ClipL14_336;
    let p = if unit {
        Pipeline::ClipCmmd
    } else {
        Pipeline::ClipHf
    };
    ensure!(
        cfg.image_size == p.size(),
        "{}: a CLIP tower for {} px input; {} preprocesses to {} px{}",
        file.path().display(),
        cfg.image_size,
        backbone.name(),
        p.size(),
        if cfg.image_size == 336 {
            " (use --backbone clip-l14-336 for a 336 px tower)"
        } else {
            ""
        }
    );
    let net = ClipVision::load(be, file, cfg)?;
    Ok((
        if unit {
            Net::ClipUnit(net)
        } else {
            Net::Clip(net)
        },
        p,
    ))
}

/// Each of the `n` rows of `x` divided by its L2 norm (computed in f64), as CMMD's authors
/// normalise CLIP's `image_embeds`.
fn unit_rows(mut x: Vec<f32>, n: usize) -> Vec<f32> {
    let d = x.len() / n.max(1);
    for row in x.chunks_mut(d.max(1)) {
        let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt() as f32;
        row.iter_mut().for_each(|v| *v /= norm);
    }
    x
}

/// The most feature memory a run may hold (LPIPS keeps every image's feature maps).
const MAX_FEATURE_BYTES: f64 = 8e9;

/// Embeddings of the kept rows (ascending positions) of a run, streamed in `batch`-image passes.
pub fn embeddings<B: Backend>(
    be: &B,
    emb: &Embedder<B>,
    index: &BatchIndex,
    keep: &[usize],
    batch: usize,
) -> Result<Vec<f32>> {
    ensure!(batch >= 1, "--batch must be at least 1");
    let progress = Progress::new(keep.len() as u64);
    let mut out: Vec<f32> = Vec::new();
    let mut width: Option<usize> = None;
    let (mut next, mut offset, mut done) = (0usize, 0usize, 0usize);
    for (file, &count) in index.files.iter().zip(&index.counts) {
        let mut pending: Vec<u8> = Vec::new();
        let mut dims = (0, 0, 0, 0);
        let mut flush = |pending: &mut Vec<u8>, dims: (usize, usize, usize, usize)| -> Result<()> {
            let m = pending.len() / (dims.1 * dims.2 * dims.3).max(1);
            if m > 0 {
                let rows = emb
                    .embed(be, pending, (m, dims.1, dims.2, dims.3))
                    .with_context(|| file.display().to_string())?;
                let w = rows.len() / m;
                match width {
                    None => {
                        // LPIPS rows grow with the image: refuse a run that cannot fit in memory.
                        let bytes = (keep.len() * w * 4) as f64;
                        ensure!(
                            bytes <= MAX_FEATURE_BYTES,
                            "{} rows of {w} floats would need {:.1} GB; choose a subset with --max-per-class K or --max-samples K",
                            keep.len(),
                            bytes / 1e9
                        );
                        width = Some(w);
                    }
                    Some(w0) => ensure!(
                        w == w0,
                        "{}: {}×{} images give feature rows of width {w}, but earlier images gave {w0}: LPIPS compares images of one size",
                        file.display(),
                        dims.1,
                        dims.2
                    ),
                }
                out.extend(rows);
                progress.unit_done(&Unit {
                    index: done / batch,
                    start: done,
                    end: done + m,
                });
                done += m;
                pending.clear();
            }
            Ok(())
        };
        npz::stream_images(file, "arr_0", batch, |chunk, start, d| {
            dims = d;
            let per = d.1 * d.2 * d.3;
            for r in 0..chunk.len() / per {
                if keep.get(next) == Some(&(offset + start + r)) {
                    pending.extend_from_slice(&chunk[r * per..(r + 1) * per]);
                    next += 1;
                    if pending.len() == batch * per {
                        flush(&mut pending, d)?;
                    }
                }
            }
            Ok(())
        })?;
        flush(&mut pending, dims)?;
        offset += count;
    }
    progress.finish();
    Ok(out)
}

/// The embedding set of a run as `.npz` members: `embedding` (N, D), `indices` (N) and, when the
/// batches carry them, `labels` (N).
pub fn embedding_members<B: Backend>(
    be: &B,
    emb: &Embedder<B>,
    files: &[PathBuf],
    subset: &Subset,
    batch: usize,
) -> Result<(Vec<npz::Member>, usize)> {
    let index = BatchIndex::read(files)?;
    ensure!(!index.is_empty(), "no images in the given batches");
    let keep = select_rows(index.len(), index.labels.as_deref(), subset)?;
    let lpips = matches!(emb.net, Net::Lpips(_));
    let e = embeddings(be, emb, &index, &keep, batch)?;
    let n = keep.len();
    ensure!(n > 0 && e.len() % n == 0, "no embedding rows were computed");
    let d = e.len() / n;
    let mut members = vec![
        npz::Member {
            key: if lpips { "lpips" } else { "embedding" }.into(),
            npy: npy::encode_f32(&[n, d], &e)?,
        },
        npz::Member {
            key: "indices".into(),
            npy: npy::encode_i64(
                &[n],
                &keep.iter().map(|&r| index.indices[r]).collect::<Vec<_>>(),
            )?,
        },
    ];
    if let Some(l) = &index.labels {
        members.push(npz::Member {
            key: "labels".into(),
            npy: npy::encode_i64(&[n], &keep.iter().map(|&r| l[r]).collect::<Vec<_>>())?,
        });
    }
    Ok((members, n))
}
