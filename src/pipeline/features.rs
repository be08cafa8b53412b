//! `sitdiv features` and `sitdiv eval`: features of uint8 image batches (ADM-style `.npz` with
//! `arr_0` (N, H, W, 3), or a run folder of them) — the Inception's for the quality metrics, a
//! diversity backbone's embedding (pipeline/embed.rs) — and the metrics of samples straight from
//! their images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use super::backbone::Backbone;
use super::embed::{self, embedding_members, Embedder, Subset};
use super::evaluate::{self, FeatureSet, Metric, MetricSettings};
use super::progress::Progress;
use super::Unit;
use crate::backend::Backend;
use crate::io::{npy, npz, probe_folder, write_with_manifest};
use crate::metrics::results::Metrics;
use crate::models::inception::{InceptionV3, LOGITS_DIM, POOL_DIM, SPATIAL_DIM};
use crate::weights::WeightFile;

#[derive(Debug, Clone, Serialize)]
pub struct FeaturesJob {
    pub backbone: Backbone,
    pub weights: PathBuf,
    pub images: PathBuf,
    pub out: PathBuf,
    /// Images per forward pass (memory only; features do not depend on it).
    pub batch: usize,
    /// Rows kept for the diversity backbones.
    #[serde(flatten)]
    pub subset: Subset,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalJob {
    pub samples: PathBuf,
    /// Needed by fid, sfid, pr, dc, kid.
    pub reference: Option<PathBuf>,
    /// The FID Inception, needed by the quality metrics.
    pub inception: Option<PathBuf>,
    /// The diversity backbone and its weights, needed by diversity and vendi.
    pub backbone: Option<Backbone>,
    pub backbone_weights: Option<PathBuf>,
    #[serde(flatten)]
    pub subset: Subset,
    #[serde(flatten)]
    pub settings: MetricSettings,
    pub json: PathBuf,
    pub batch: usize,
    /// Also keep the samples' features here (`.npz` for `sitdiv metrics`; the diversity
    /// embedding, when asked for, goes to `<stem>.embedding.npz` beside it).
    pub features_out: Option<PathBuf>,
}

/// The image batches `path` names, in sample order: the file itself, or the `.npz` batches of a
/// run folder. A folder must hold one run (its batches' names differ only in `-shard{I}of{S}`);
/// batches are ordered by their `indices`, which must not overlap.
pub fn image_batches(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        ensure!(path.exists(), "{} does not exist", path.display());
        return Ok(vec![path.to_path_buf()]);
    }
    let mut runs: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in
        std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?
    {
        let p = entry?.path();
        let Some(stem) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".npz"))
        else {
            continue;
        };
        if !npz::keys(&p)?.iter().any(|k| k == "arr_0") {
            continue; // feature files and other arrays
        }
        let run = match stem.rfind("-shard") {
            Some(i) => &stem[..i],
            None => stem,
        };
        runs.entry(run.to_string()).or_default().push(p);
    }
    let mut runs = runs.into_iter();
    let Some((_, mut files)) = runs.next() else {
        bail!(
            "{}: no image batch (.npz with arr_0) in this folder",
            path.display()
        );
    };
    if let Some((other, _)) = runs.next() {
        bail!(
            "{}: holds batches of more than one run (e.g. {other}); pass one .npz or a folder per run",
            path.display()
        );
    }
    // Order by the first global index; refuse overlaps (e.g. two shardings of one run).
    let mut keyed = Vec::new();
    for f in files.drain(..) {
        let idx = match npz::read_only(&f, &["indices"])?.pop() {
            Some(m) => npy::decode_i64(&f, &m.npy)?.data,
            None => Vec::new(),
        };
        // Without `indices`, the shard number of `-shard{I}of{S}` orders the batches.
        let key = match idx.iter().copied().min() {
            Some(first) => first,
            None => shard_number(&f).unwrap_or(0) as i64,
        };
        keyed.push((key, idx, f));
    }
    keyed.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
    let mut seen = std::collections::HashSet::new();
    for (_, idx, f) in &keyed {
        if let Some(dup) = idx.iter().find(|i| !seen.insert(**i)) {
            bail!(
                "{}: sample index {dup} appears in more than one batch (last in {}); the folder mixes shardings of one run",
                path.display(),
                f.display()
            );
        }
    }
    Ok(keyed.into_iter().map(|k| k.2).collect())
}

/// I of a `-shard{I}of{S}` file name.
fn shard_number(path: &Path) -> Option<usize> {
    let stem = path.file_stem()?.to_str()?;
    let rest = &stem[stem.rfind("-shard")? + "-shard".len()..];
    rest.split("of").next()?.parse().ok()
}

/// Inception features of every image of `files`, in order, as the members of a features `.npz`.
pub fn inception_features<B: Backend>(
    be: &B,
    net: &InceptionV3<B>,
    files: &[PathBuf],
    batch: usize,
) -> Result<(Vec<npz::Member>, usize)> {
    ensure!(batch >= 1, "--batch must be at least 1");
    ensure!(!files.is_empty(), "no image batches given");
    let (mut pool, mut spatial, mut logits) = (Vec::new(), Vec::new(), Vec::new());
    let mut total = 0;
    for file in files {
        let mut progress: Option<Progress> = None;
        let t0 = std::time::Instant::now();
        let (n, h, w, _) = npz::stream_images(file, "arr_0", batch, |chunk, start, dims| {
            let m = chunk.len() / (dims.1 * dims.2 * dims.3);
            let p = progress.get_or_insert_with(|| Progress::new(dims.0 as u64));
            let f = net
                .forward_images(be, chunk, (m, dims.1, dims.2, dims.3))
                .with_context(|| format!("{}: images {start}..{}", file.display(), start + m))?;
            pool.extend(f.pool);
            spatial.extend(f.spatial);
            logits.extend(f.logits);
            p.unit_done(&Unit {
                index: start / batch,
                start,
                end: start + m,
            });
            Ok(())
        })?;
        if let Some(p) = progress {
            p.finish();
        }
        log::info!(
            "{}: {n} images {h}×{w} in {:.1} s",
            file.display(),
            t0.elapsed().as_secs_f64()
        );
        total += n;
    }
    ensure!(total > 0, "no images in {}", files[0].display());
    let members = vec![
        npz::Member {
            key: "pool".into(),
            npy: npy::encode_f32(&[total, POOL_DIM], &pool)?,
        },
        npz::Member {
            key: "spatial".into(),
            npy: npy::encode_f32(&[total, SPATIAL_DIM], &spatial)?,
        },
        npz::Member {
            key: "logits".into(),
            npy: npy::encode_f32(&[total, LOGITS_DIM], &logits)?,
        },
    ];
    Ok((members, total))
}

/// Loads the Inception weights (pytorch-fid names), naming the file in errors.
fn load_inception<B: Backend>(be: &B, path: &Path) -> Result<(InceptionV3<B>, String)> {
    let file = WeightFile::open(path)?;
    let net = InceptionV3::load(be, &file)
        .with_context(|| format!("{}: not the FID Inception weights", path.display()))?;
    Ok((net, crate::io::sha256_hex(file.bytes())))
}

fn output_folder(path: &Path) -> Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => probe_folder(dir),
        None => Ok(()),
    }
}

fn manifest(
    tool: &str,
    job: &impl Serialize,
    weights_sha: &str,
    device: String,
) -> Result<serde_json::Value> {
    Ok(serde_json::json!({
        "tool": tool,
        "version": env!("CARGO_PKG_VERSION"),
        "job": job,
        "inception_sha256": weights_sha,
        "device": device,
    }))
}

/// `sitdiv features`.
pub fn run_features<B: Backend>(be: &B, job: &FeaturesJob) -> Result<()> {
    let files = image_batches(&job.images)?;
    output_folder(&job.out)?;
    let (members, n, sha) = match job.backbone {
        Backbone::Inception => {
            let (net, sha) = load_inception(be, &job.weights)?;
            let (m, n) = inception_features(be, &net, &files, job.batch)?;
            (m, n, sha)
        }
        b => {
            let (emb, sha) = Embedder::load(be, b, &job.weights)?;
            let (m, n) = embedding_members(be, &emb, &files, &job.subset, job.batch)?;
            (m, n, sha)
        }
    };
    let mut m = manifest("sitdiv features", job, &sha, be.name())?;
    m["images"] = serde_json::json!(files);
    write_with_manifest(&job.out, &m, |p| npz::write(p, &members))?;
    log::info!("wrote {} ({n} feature rows)", job.out.display());
    Ok(())
}

/// What `sitdiv eval` will compute and from what, all checked before any compute.
struct EvalPlan<'a> {
    /// The samples' image batches, in order.
    files: Vec<PathBuf>,
    /// Metrics of the Inception's features, and its weights (Some when there are any).
    quality: Vec<Metric>,
    inception: Option<&'a Path>,
    /// Metrics of the diversity backbone's rows, and the backbone (Some when there are any).
    diversity: Vec<Metric>,
    backbone: Option<(Backbone, &'a Path)>,
    /// The reference, when a selected metric compares with one.
    reference: Option<&'a Path>,
}

impl<'a> EvalPlan<'a> {
    fn new(job: &'a EvalJob) -> Result<Self> {
        let (quality, diversity): (Vec<Metric>, Vec<Metric>) = job
            .settings
            .metrics
            .iter()
            .partition(|m| !m.uses_backbone());
        let files = image_batches(&job.samples)?;
        output_folder(&job.json)?;
        if let Some(p) = &job.features_out {
            output_folder(p)?;
        }
        let inception = match (&job.inception, quality.is_empty()) {
            (_, true) => None,
            (Some(p), false) => Some(p.as_path()),
            (None, false) => bail!(
                "--metrics {} need the FID Inception: give --inception FILE",
                evaluate::names(&quality)
            ),
        };
        let backbone = eval_backbone(job, &diversity, &files)?;
        let reference = eval_reference(job)?;
        Ok(EvalPlan {
            files,
            quality,
            inception,
            diversity,
            backbone,
            reference,
        })
    }
}

/// The diversity backbone and its weights, when a diversity metric is selected: one that suits
/// every such metric, with the class of every sample where the metric needs it.
fn eval_backbone<'a>(
    job: &'a EvalJob,
    diversity: &[Metric],
    files: &[PathBuf],
) -> Result<Option<(Backbone, &'a Path)>> {
    if diversity.is_empty() {
        return Ok(None);
    }
    let (Some(b), Some(w)) = (job.backbone, &job.backbone_weights) else {
        bail!(
            "--metrics {} need a diversity backbone: give --backbone (dinov2-b14, clip-b32, lpips-alex, …) and --backbone-weights FILE",
            evaluate::names(diversity)
        );
    };
    let lpips = matches!(b, Backbone::LpipsAlex | Backbone::LpipsVgg);
    for m in diversity {
        let fits = match m {
            Metric::Lpips => lpips,
            Metric::FdDinov2 => b == Backbone::Dinov2L14,
            Metric::Cmmd => b == Backbone::ClipL14_336,
            _ => !lpips,
        };
        ensure!(
            fits,
            "--metrics {} cannot use --backbone {}: lpips needs lpips-alex or lpips-vgg, fd_dinov2 needs dinov2-l14, cmmd needs clip-l14-336, diversity and vendi need an embedding backbone",
            evaluate::names(&[*m]),
            b.name()
        );
    }
    if diversity.iter().any(|m| !m.uses_reference_embedding()) {
        ensure!(
            embed::BatchIndex::read(files)?.labels.is_some(),
            "--metrics {} need the class of every sample: the batches have no `arr_1` (sitdiv sample writes it)",
            evaluate::names(diversity)
        );
    }
    Ok(Some((b, w)))
}

/// The reference (a features file, or an ADM reference batch: statistics and/or images), when
/// a selected metric compares with one.
fn eval_reference(job: &EvalJob) -> Result<Option<&Path>> {
    let needing: Vec<Metric> = job
        .settings
        .metrics
        .iter()
        .copied()
        .filter(|m| m.needs_reference())
        .collect();
    if needing.is_empty() {
        return Ok(None);
    }
    let Some(r) = &job.reference else {
        bail!(
            "--metrics {} compare with a reference: give --ref REF.npz",
            evaluate::names(&needing)
        );
    };
    // Read now even when no check needs the keys: an unreadable reference fails before compute.
    let keys = npz::keys(r)?;
    if let Some(m) = needing.iter().find(|m| m.uses_reference_embedding()) {
        let has = |k: &str| keys.iter().any(|x| x == k);
        ensure!(
            has("embedding") || has("arr_0"),
            "{}: {} needs reference images (`arr_0`) or an `embedding`; it has: {}",
            r.display(),
            m.name(),
            keys.join(", ")
        );
    }
    Ok(Some(r))
}

/// `sitdiv eval`.
pub fn run_eval<B: Backend>(be: &B, job: &EvalJob) -> Result<()> {
    job.settings.validate()?;
    let plan = EvalPlan::new(job)?;
    let mut m = serde_json::json!({
        "tool": "sitdiv eval",
        "version": env!("CARGO_PKG_VERSION"),
        "job": job,
        "device": be.name(),
        "samples_files": plan.files,
    });
    let mut values = Metrics::default();
    if let Some(inception) = plan.inception {
        values.extend(eval_quality(be, job, &plan, inception, &mut m)?);
    }
    if let Some(backbone) = plan.backbone {
        values.extend(eval_diversity(be, job, &plan, backbone, &mut m)?);
    }
    evaluate::write_json(&job.json, &values, &job.settings, &m)
}

/// The quality metrics: Inception features of the samples (kept at --features-out when asked)
/// and, where the reference lacks features, of its images. Notes the weights and the sample
/// count in the manifest `m`.
fn eval_quality<B: Backend>(
    be: &B,
    job: &EvalJob,
    plan: &EvalPlan,
    inception: &Path,
    m: &mut serde_json::Value,
) -> Result<Metrics> {
    let settings = MetricSettings {
        metrics: plan.quality.clone(),
        ..job.settings.clone()
    };
    let (mut reference, ref_images) = match plan.reference {
        Some(r) => {
            let (set, images) = quality_reference(r, &settings)?;
            (Some(set), images)
        }
        None => (None, false),
    };
    let (net, sha) = load_inception(be, inception)?;
    m["inception_sha256"] = serde_json::json!(sha);
    let (members, n) = inception_features(be, &net, &plan.files, job.batch)?;
    if let Some(p) = &job.features_out {
        write_with_manifest(p, m, |p| npz::write(p, &members))?;
        log::info!("wrote {} ({n} feature rows)", p.display());
    }
    let samples = FeatureSet::from_members(&job.samples, members);
    if let (true, Some(set), Some(r)) = (ref_images, reference.as_mut(), plan.reference) {
        let ref_files = [r.to_path_buf()];
        let (ref_members, _) = inception_features(be, &net, &ref_files, job.batch)?;
        set.extend(ref_members);
    }
    let values = evaluate::compute(&settings, &samples, reference.as_ref())?;
    m["num_samples"] = serde_json::json!(n);
    Ok(values)
}

/// The quality reference as it is (a features file, or only the statistics of an ADM reference
/// batch), and whether the metrics also need features of its images.
fn quality_reference(r: &Path, settings: &MetricSettings) -> Result<(FeatureSet, bool)> {
    let keys = npz::keys(r)?;
    let set = if keys.iter().any(|k| k == "pool") {
        FeatureSet::open(r)?
    } else {
        FeatureSet::from_members(r, npz::read_only(r, &["mu", "sigma", "mu_s", "sigma_s"])?)
    };
    let images = settings.needs_reference_features(&set);
    ensure!(
        !images || keys.iter().any(|k| k == "arr_0"),
        "{}: the selected metrics need reference images (`arr_0`) or features (`pool`…); it has: {}",
        r.display(),
        keys.join(", ")
    );
    Ok((set, images))
}

/// The diversity metrics: the backbone's rows of the samples (kept beside --features-out when
/// asked) and, for FD-DINOv2 and CMMD, of the reference. Notes the backbone and rows in the manifest.
fn eval_diversity<B: Backend>(
    be: &B,
    job: &EvalJob,
    plan: &EvalPlan,
    (b, weights): (Backbone, &Path),
    m: &mut serde_json::Value,
) -> Result<Metrics> {
    let (emb, sha) = Embedder::load(be, b, weights)?;
    m["backbone_sha256"] = serde_json::json!(sha);
    let (members, n) = embedding_members(be, &emb, &plan.files, &job.subset, job.batch)?;
    if let Some(p) = &job.features_out {
        let path = p.with_extension("embedding.npz");
        write_with_manifest(&path, m, |p| npz::write(p, &members))?;
        log::info!("wrote {} ({n} embedding rows)", path.display());
    }
    let set = FeatureSet::from_members(&job.samples, members);
    let settings = MetricSettings {
        metrics: plan.diversity.clone(),
        ..job.settings.clone()
    };
    let uses_ref = plan.diversity.iter().any(|m| m.uses_reference_embedding());
    let reference = match (uses_ref, plan.reference) {
        (true, Some(r)) => Some(embedding_reference(be, &emb, r, job.batch)?),
        _ => None,
    };
    let values = evaluate::compute(&settings, &set, reference.as_ref())?;
    m["diversity_backbone"] = serde_json::json!(b);
    m["diversity_rows"] = serde_json::json!(n);
    m["diversity_indices"] = serde_json::json!(set.indices()?);
    Ok(values)
}

/// The reference of FD-DINOv2 and CMMD: its embedding, or its images through the same backbone.
fn embedding_reference<B: Backend>(
    be: &B,
    emb: &Embedder<B>,
    r: &Path,
    batch: usize,
) -> Result<FeatureSet> {
    let keys = npz::keys(r)?;
    if keys.iter().any(|k| k == "embedding") {
        return FeatureSet::open(r);
    }
    ensure!(
        keys.iter().any(|k| k == "arr_0"),
        "{}: fd_dinov2 and cmmd need reference images (`arr_0`) or an `embedding`; it has: {}",
        r.display(),
        keys.join(", ")
    );
    let files = [r.to_path_buf()];
    let (m, _) = embedding_members(be, emb, &files, &Subset::default(), batch)?;
    Ok(FeatureSet::from_members(r, m))
}
