//! Quality metrics from Inception features, written as one JSON: `sitdiv metrics` reads the
//! features from files; `sitdiv eval` (pipeline/features.rs) computes them from images first.
//!
//! Feature sets hold float32 `pool` (N, 2048), `spatial` (N, 2023) and `logits` (N, 1008). The
//! reference may instead (or also) hold an ADM reference batch's `mu`, `sigma` (and `mu_s`,
//! `sigma_s`): FID and sFID then use those statistics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use faer::Mat;
use serde::Serialize;

use crate::io::{npy, npz, write_atomic};
use crate::metrics::results::{
    DensityCoverage, DiversityInfo, Kid, Lpips, Metrics, PairStats, PrecisionRecall, Vendi,
};
use crate::metrics::{cmmd, diversity, fid, inception_score, kid, prdc, stats::FeatureStats};

crate::named! {
    /// What `--metrics` can ask for.
    pub enum Metric {
        Fid = "fid",
        Sfid = "sfid",
        Is = "is",
        Pr = "pr",
        Dc = "dc",
        Kid = "kid",
        /// Cosine-distance diversity of `embedding` rows: intra-, inter-class and mixed.
        Diversity = "diversity",
        /// Vendi score of `embedding` rows: over all samples and averaged over classes.
        Vendi = "vendi",
        /// LPIPS between image pairs, from `lpips` feature rows: intra-, inter-class and mixed.
        Lpips = "lpips",
        /// Fréchet distance of `embedding` rows against the reference's (FD-DINOv2 with the
        /// dinov2-l14 backbone).
        FdDinov2 = "fd_dinov2",
        /// CMMD (Jayasumana et al. 2024): the RBF-kernel MMD² × 1000 of `embedding` rows against
        /// the reference's (with the clip-l14-336 backbone).
        Cmmd = "cmmd",
        /// Fraction of samples whose `logits` argmax is their own class: how often the classifier
        /// (the toy study's) recognises the class a sample was drawn for.
        Accuracy = "accuracy",
    }
}

/// Command-line names of metrics, for messages: `fid, sfid`.
pub fn names(metrics: &[Metric]) -> String {
    metrics
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Metric {
    /// Whether the metric compares the backbone's `embedding` rows with the reference's.
    pub fn uses_reference_embedding(self) -> bool {
        matches!(self, Metric::FdDinov2 | Metric::Cmmd)
    }

    /// Whether the metric is computed from a diversity backbone's rows (not the Inception's).
    pub fn uses_backbone(self) -> bool {
        matches!(self, Metric::Diversity | Metric::Vendi | Metric::Lpips)
            || self.uses_reference_embedding()
    }

    /// Whether the metric compares the samples with a reference set.
    pub fn needs_reference(self) -> bool {
        !matches!(
            self,
            Metric::Is | Metric::Diversity | Metric::Vendi | Metric::Lpips | Metric::Accuracy
        )
    }
}

/// Which metrics and their parameters; shared by `sitdiv metrics`, `sitdiv eval` and sweeps.
#[derive(Debug, Clone, Serialize)]
pub struct MetricSettings {
    pub metrics: Vec<Metric>,
    pub kid_subsets: usize,
    pub kid_subset_size: usize,
    /// Seed of the KID subsets.
    pub seed: u64,
    /// IS split size (ADM: 5000, consecutive, no shuffle).
    pub is_split_size: usize,
    /// k of precision/recall (ADM: 3).
    pub pr_k: usize,
    /// k of density/coverage (prdc: 5).
    pub dc_k: usize,
}

impl Default for MetricSettings {
    /// The ADM evaluator's settings for FID, sFID, IS and precision/recall.
    fn default() -> Self {
        MetricSettings {
            metrics: vec![Metric::Fid, Metric::Sfid, Metric::Is, Metric::Pr],
            kid_subsets: 100,
            kid_subset_size: 1000,
            seed: 0,
            is_split_size: 5000,
            pr_k: 3,
            dc_k: 5,
        }
    }
}

impl MetricSettings {
    pub fn validate(&self) -> Result<()> {
        ensure!(!self.metrics.is_empty(), "--metrics selects nothing");
        ensure!(
            self.pr_k >= 1 && self.dc_k >= 1,
            "--pr-k and --dc-k must be at least 1"
        );
        ensure!(
            self.is_split_size >= 1,
            "--is-split-size must be at least 1"
        );
        Ok(())
    }

    /// Whether a selected metric needs reference features that `reference` lacks, so they must
    /// be computed from its images.
    pub fn needs_reference_features(&self, reference: &FeatureSet) -> bool {
        let stats = |mu, sigma| reference.has(mu) && reference.has(sigma);
        self.metrics.iter().any(|m| match m {
            Metric::Pr | Metric::Dc | Metric::Kid => !reference.has("pool"),
            Metric::Fid => !stats("mu", "sigma") && !reference.has("pool"),
            Metric::Sfid => !stats("mu_s", "sigma_s") && !reference.has("spatial"),
            Metric::Is | Metric::Diversity | Metric::Vendi | Metric::Lpips | Metric::Accuracy => {
                false
            }
            Metric::FdDinov2 | Metric::Cmmd => !reference.has("embedding"),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricsJob {
    pub features: PathBuf,
    /// Needed by the metrics that compare with a reference (FID, sFID, PR, DC, KID).
    pub ref_features: Option<PathBuf>,
    #[serde(flatten)]
    pub settings: MetricSettings,
    pub json: PathBuf,
}

/// Mean and covariance of a feature set.
pub type Gaussian = (Vec<f64>, Mat<f64>);

/// Named arrays (`.npy` bytes) of one feature set: a features file, an ADM reference batch's
/// statistics, or features just computed.
pub struct FeatureSet {
    /// Names the set in errors: a path, or a description.
    source: PathBuf,
    arrays: BTreeMap<String, Vec<u8>>,
    /// Gaussians (mean, covariance) already decoded or computed, by feature name.
    gaussians: BTreeMap<String, Arc<Gaussian>>,
}

impl FeatureSet {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self::from_members(path, npz::read(path)?))
    }

    pub fn from_members(source: &Path, members: Vec<npz::Member>) -> Self {
        FeatureSet {
            source: source.to_path_buf(),
            arrays: members.into_iter().map(|m| (m.key, m.npy)).collect(),
            gaussians: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) arrays.
    pub fn extend(&mut self, members: Vec<npz::Member>) {
        self.arrays
            .extend(members.into_iter().map(|m| (m.key, m.npy)));
    }

    pub fn has(&self, key: &str) -> bool {
        self.arrays.contains_key(key)
    }

    fn keys(&self) -> String {
        self.arrays.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// A float32 (N, width) array, with its width.
    fn rows(&self, key: &str) -> Result<(Vec<f32>, usize)> {
        let bytes = self.arrays.get(key).with_context(|| {
            format!(
                "{}: no `{key}` array (it has: {})",
                self.source.display(),
                self.keys()
            )
        })?;
        let a = npy::decode_f32(&self.source, bytes)?;
        ensure!(
            a.shape.len() == 2 && a.shape[1] > 0,
            "{}: `{key}` has shape {:?}, expected (N, width) with width ≥ 1",
            self.source.display(),
            a.shape
        );
        ensure!(
            a.data.iter().all(|v| v.is_finite()),
            "{}: `{key}` contains NaN or infinite values",
            self.source.display()
        );
        Ok((a.data, a.shape[1]))
    }

    /// The `indices` array (global sample indices of the rows), empty when there is none.
    pub fn indices(&self) -> Result<Vec<i64>> {
        match self.arrays.get("indices") {
            Some(b) => Ok(npy::decode_i64(&self.source, b)?.data),
            None => Ok(Vec::new()),
        }
    }

    /// The int64 class labels of `n` rows.
    fn labels(&self, n: usize) -> Result<Vec<i64>> {
        let bytes = self.arrays.get("labels").with_context(|| {
            format!(
                "{}: no `labels` array; intra-class diversity and per-class Vendi need the class of \
                 every row: an int64 (N,) `labels` beside `embedding` (`sitdiv sample` saves them \
                 as `arr_1` of its image batches)",
                self.source.display()
            )
        })?;
        let l = npy::decode_i64(&self.source, bytes)?;
        ensure!(
            l.data.len() == n && l.shape.len() == 1,
            "{}: `labels` has shape {:?}, expected ({n},) to match `embedding`",
            self.source.display(),
            l.shape
        );
        Ok(l.data)
    }

    /// Decodes (or computes) the Gaussians a reference set serves: of `pool` (or `mu`/`sigma`),
    /// `spatial` (or `mu_s`/`sigma_s`) and `embedding`, so repeated evaluations against it
    /// (bootstrap resamples) reuse them. The values are those computed on demand.
    pub fn cache_gaussians(&mut self) -> Result<()> {
        for (features, mu, sigma) in [
            ("pool", "mu", "sigma"),
            ("spatial", "mu_s", "sigma_s"),
            ("embedding", "", ""),
        ] {
            let stats = self.has(mu) && self.has(sigma);
            if stats || self.has(features) {
                let g = self.reference_gaussian(features, mu, sigma)?;
                self.gaussians.insert(features.into(), g);
            }
        }
        Ok(())
    }

    /// Gaussian statistics (mean, unbiased covariance) of a feature array.
    fn feature_gaussian(&self, features: &str) -> Result<Arc<Gaussian>> {
        if let Some(g) = self.gaussians.get(features) {
            return Ok(g.clone());
        }
        let (x, d) = self.rows(features)?;
        let st = FeatureStats::from_batch(&x, d)
            .with_context(|| format!("{}: `{features}`", self.source.display()))?;
        Ok(Arc::new((st.mean.clone(), st.covariance()?)))
    }

    /// The reference's statistics: `mu`/`sigma` of an ADM reference batch, else its features.
    fn reference_gaussian(&self, features: &str, mu: &str, sigma: &str) -> Result<Arc<Gaussian>> {
        if let Some(g) = self.gaussians.get(features) {
            return Ok(g.clone());
        }
        let (Some(m), Some(s)) = (self.arrays.get(mu), self.arrays.get(sigma)) else {
            return self.feature_gaussian(features).with_context(|| {
                format!(
                    "{}: neither `{mu}`/`{sigma}` statistics nor `{features}` features",
                    self.source.display()
                )
            });
        };
        let m = npy::decode_f64(&self.source, m)?;
        let s = npy::decode_f64(&self.source, s)?;
        let d = m.data.len();
        ensure!(
            s.shape == [d, d],
            "{}: `{sigma}` has shape {:?}, expected ({d}, {d})",
            self.source.display(),
            s.shape
        );
        Ok(Arc::new((
            m.data,
            Mat::from_fn(d, d, |i, j| s.data[i * d + j]),
        )))
    }
}

/// A metric value, refused when NaN or infinite (serde_json would write those as null).
fn finite(key: &str, v: f64) -> Result<f64> {
    ensure!(
        v.is_finite(),
        "metric {key} came out non-finite ({v}); nothing was written"
    );
    Ok(v)
}

/// An optional metric value (None where undefined, e.g. no intra-class pair), finite otherwise.
fn finite_opt(key: &str, v: Option<f64>) -> Result<Option<f64>> {
    v.map(|v| finite(key, v)).transpose()
}

fn same_width(a: usize, b: usize, what: &str) -> Result<()> {
    ensure!(
        a == b,
        "{what}: the samples have width {a} but the reference has width {b}"
    );
    Ok(())
}

/// The six intra/inter/mixed values of a pairwise diversity, each finite or None.
fn pair_stats(key: &str, d: &diversity::Diversity) -> Result<PairStats> {
    let v = |name: &str, x: Option<f64>| finite_opt(&format!("{key}.{name}"), x);
    Ok(PairStats {
        intra_mean: v("intra_mean", d.intra_mean)?,
        intra_std: v("intra_std", d.intra_std)?,
        inter_mean: v("inter_mean", d.inter_mean)?,
        inter_std: v("inter_std", d.inter_std)?,
        mixed_mean: v("mixed_mean", d.mixed_mean)?,
        mixed_std: v("mixed_std", d.mixed_std)?,
    })
}

/// The reference of the selected metrics: `b`, or the samples themselves when no metric needs
/// one (then nothing reads it).
fn reference_for<'a>(
    job: &MetricSettings,
    a: &'a FeatureSet,
    b: Option<&'a FeatureSet>,
) -> Result<&'a FeatureSet> {
    let needing: Vec<Metric> = job
        .metrics
        .iter()
        .copied()
        .filter(|m| m.needs_reference())
        .collect();
    match b {
        Some(b) => Ok(b),
        None if needing.is_empty() => Ok(a),
        None => bail!(
            "--metrics {} compare with a reference: give --ref-features (or --ref for eval)",
            names(&needing)
        ),
    }
}

/// Every selected metric of samples `a` (against reference `b` where the metric needs one);
/// refuses non-finite results.
pub fn compute(job: &MetricSettings, a: &FeatureSet, b: Option<&FeatureSet>) -> Result<Metrics> {
    job.validate()?;
    let b = reference_for(job, a, b)?;
    let mut out = Metrics::default();
    for m in &job.metrics {
        match m {
            Metric::Fid => {
                let g = || b.reference_gaussian("pool", "mu", "sigma");
                out.fid = Some(frechet(a, "pool", "fid", g)?);
            }
            Metric::Sfid => {
                let g = || b.reference_gaussian("spatial", "mu_s", "sigma_s");
                out.sfid = Some(frechet(a, "spatial", "sfid", g)?);
            }
            Metric::FdDinov2 => {
                let g = || {
                    b.feature_gaussian("embedding").map_err(|e| {
                        e.context("FD-DINOv2 needs the reference's embedding (or its images)")
                    })
                };
                out.fd_dinov2 = Some(frechet(a, "embedding", "fd_dinov2", g)?);
            }
            Metric::Cmmd => out.cmmd = Some(cmmd_of(a, b)?),
            Metric::Is => out.inception_score = Some(inception_score_of(a, job.is_split_size)?),
            Metric::Accuracy => out.accuracy = Some(accuracy(a)?),
            Metric::Pr => out.precision_recall = Some(precision_recall(a, b, job.pr_k)?),
            Metric::Dc => out.density_coverage = Some(density_coverage(a, b, job.dc_k)?),
            Metric::Kid => out.kid = Some(kid_of(a, b, job)?),
            Metric::Diversity => {
                let (stats, info) = cosine_diversity(a)?;
                out.diversity = Some(stats);
                out.diversity_info = Some(info);
            }
            Metric::Vendi => out.vendi = Some(vendi(a)?),
            Metric::Lpips => out.lpips = Some(lpips(a)?),
        }
    }
    Ok(out)
}

/// Fréchet distance of `a`'s `feat` rows to the reference's Gaussian (asked for after the rows,
/// so a sample-side problem is the one reported).
fn frechet(
    a: &FeatureSet,
    feat: &str,
    key: &str,
    reference: impl FnOnce() -> Result<Arc<Gaussian>>,
) -> Result<f64> {
    let (x, d) = a.rows(feat)?;
    let g = reference()?;
    let (m2, s2) = (&g.0, &g.1);
    same_width(d, m2.len(), key)?;
    let fd = fid::frechet_distance_of_rows(&x, d, m2, s2.as_ref())
        .with_context(|| format!("{}: `{feat}`", a.source.display()))?;
    finite(key, fd)
}

/// CMMD of `a`'s `embedding` rows against the reference's rows.
fn cmmd_of(a: &FeatureSet, b: &FeatureSet) -> Result<f64> {
    let (x, d) = a.rows("embedding")?;
    let (y, dy) = b
        .rows("embedding")
        .map_err(|e| e.context("CMMD needs the reference's embedding (or its images)"))?;
    same_width(d, dy, "cmmd")?;
    finite("cmmd", cmmd::cmmd(&x, &y, d)?)
}

fn inception_score_of(a: &FeatureSet, split_size: usize) -> Result<f64> {
    let (l, c) = a.rows("logits")?;
    finite(
        "inception_score",
        inception_score::inception_score(&l, c, split_size)?,
    )
}

/// Share of rows whose `logits` argmax is their label.
fn accuracy(a: &FeatureSet) -> Result<f64> {
    let (l, c) = a.rows("logits")?;
    let labels = a.labels(l.len() / c)?;
    let hits = l
        .chunks(c)
        .zip(&labels)
        .filter(|(row, &y)| usize::try_from(y).is_ok_and(|y| argmax(row) == y))
        .count();
    finite("accuracy", hits as f64 / labels.len().max(1) as f64)
}

/// The `pool` rows of samples and reference, which must share their width.
struct PoolRows {
    samples: Vec<f32>,
    reference: Vec<f32>,
    width: usize,
}

impl PoolRows {
    fn of(a: &FeatureSet, b: &FeatureSet) -> Result<Self> {
        let (x, dx) = a.rows("pool")?;
        let (y, dy) = b.rows("pool").map_err(|e| {
            e.context("precision/recall, density/coverage and KID need the reference's features")
        })?;
        same_width(dx, dy, "pool features")?;
        Ok(PoolRows {
            samples: x,
            reference: y,
            width: dx,
        })
    }
}

fn precision_recall(a: &FeatureSet, b: &FeatureSet, k: usize) -> Result<PrecisionRecall> {
    let p = PoolRows::of(a, b)?;
    let (precision, recall) = prdc::precision_recall(&p.reference, &p.samples, p.width, k)?;
    Ok(PrecisionRecall {
        precision: finite("precision", precision)?,
        recall: finite("recall", recall)?,
    })
}

fn density_coverage(a: &FeatureSet, b: &FeatureSet, k: usize) -> Result<DensityCoverage> {
    let p = PoolRows::of(a, b)?;
    let (density, coverage) = prdc::density_coverage(&p.reference, &p.samples, p.width, k)?;
    Ok(DensityCoverage {
        density: finite("density", density)?,
        coverage: finite("coverage", coverage)?,
    })
}

fn kid_of(a: &FeatureSet, b: &FeatureSet, job: &MetricSettings) -> Result<Kid> {
    let p = PoolRows::of(a, b)?;
    let (mean, std) = kid::kid(
        &p.reference,
        &p.samples,
        p.width,
        job.kid_subsets,
        job.kid_subset_size,
        job.seed,
    )?;
    Ok(Kid {
        mean: finite("kid_mean", mean)?,
        std: finite("kid_std", std)?,
    })
}

/// Cosine-distance diversity of the labelled `embedding` rows, and what it covered.
fn cosine_diversity(a: &FeatureSet) -> Result<(PairStats, DiversityInfo)> {
    let (x, d) = a.rows("embedding")?;
    let labels = a.labels(x.len() / d)?;
    let div = diversity::cosine_diversity(&x, d, Some(&labels))?;
    Ok((pair_stats("diversity", &div)?, DiversityInfo::of(&div)))
}

fn vendi(a: &FeatureSet) -> Result<Vendi> {
    let (x, d) = a.rows("embedding")?;
    let labels = a.labels(x.len() / d)?;
    let (mixed, intra) = diversity::vendi_by_class(&x, d, &labels)?;
    Ok(Vendi {
        mixed: finite("vendi.mixed", mixed)?,
        intra_mean: finite_opt("vendi.intra_mean", intra)?,
    })
}

/// Squared-L2 distances of the labelled `lpips` feature rows: LPIPS between image pairs.
fn lpips(a: &FeatureSet) -> Result<Lpips> {
    let (x, d) = a.rows("lpips")?;
    let labels = a.labels(x.len() / d)?;
    let div = diversity::squared_l2_diversity(&x, d, Some(&labels))?;
    Ok(Lpips {
        stats: pair_stats("lpips", &div)?,
        num_samples: div.num_samples,
        num_pairs: div.num_pairs,
        classes_excluded_single_sample: div.classes_excluded,
    })
}

/// Index of the first largest value (as `torch.argmax`).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// A metrics JSON: the values at the top level, beside the settings and a manifest.
#[derive(Serialize)]
struct MetricsFile<'a, S> {
    #[serde(flatten)]
    values: &'a Metrics,
    settings: &'a S,
    manifest: &'a serde_json::Value,
}

/// Writes the metric values with the settings and a manifest next to them, atomically.
pub fn write_json(
    path: &Path,
    values: &Metrics,
    settings: &impl Serialize,
    manifest: &serde_json::Value,
) -> Result<()> {
    let file = MetricsFile {
        values,
        settings,
        manifest,
    };
    // Through a Value, whose map sorts keys (nested ones too): the files have always been
    // written so.
    let text = serde_json::to_string_pretty(&serde_json::to_value(&file)?)?;
    write_atomic(path, text.as_bytes())?;
    log::info!("wrote {}", path.display());
    Ok(())
}

/// SHA-256 of a file, for manifests.
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(crate::io::sha256_hex(&bytes))
}

/// `sitdiv metrics`.
pub fn run(job: &MetricsJob) -> Result<()> {
    job.settings.validate()?;
    let a = FeatureSet::open(&job.features)?;
    let b = job
        .ref_features
        .as_deref()
        .map(FeatureSet::open)
        .transpose()?;
    let values = compute(&job.settings, &a, b.as_ref())?;
    let manifest = serde_json::json!({
        "tool": "sitdiv metrics",
        "version": env!("CARGO_PKG_VERSION"),
        "features_sha256": file_sha256(&job.features)?,
        "ref_features_sha256": job.ref_features.as_deref().map(file_sha256).transpose()?,
    });
    write_json(&job.json, &values, job, &manifest)
}
