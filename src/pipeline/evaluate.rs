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
use crate::metrics::{diversity, fid, inception_score, kid, prdc, stats::FeatureStats};

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
            Metric::FdDinov2 => !reference.has("embedding"),
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

/// A metric value as JSON; NaN and infinities are refused (serde_json would write them as null).
fn num(key: &str, v: f64) -> Result<serde_json::Value> {
    ensure!(
        v.is_finite(),
        "metric {key} came out non-finite ({v}); nothing was written"
    );
    Ok(v.into())
}

/// An optional metric value (null where undefined, e.g. no intra-class pair), finite otherwise.
fn opt(key: &str, v: Option<f64>) -> Result<serde_json::Value> {
    v.map_or(Ok(serde_json::Value::Null), |v| num(key, v))
}

fn same_width(a: usize, b: usize, what: &str) -> Result<()> {
    ensure!(
        a == b,
        "{what}: the samples have width {a} but the reference has width {b}"
    );
    Ok(())
}

/// The six intra/inter/mixed values of a pairwise diversity, as a JSON object.
fn pair_stats(
    key: &str,
    d: &diversity::Diversity,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut o = serde_json::Map::new();
    for (name, v) in [
        ("intra_mean", d.intra_mean),
        ("intra_std", d.intra_std),
        ("inter_mean", d.inter_mean),
        ("inter_std", d.inter_std),
        ("mixed_mean", d.mixed_mean),
        ("mixed_std", d.mixed_std),
    ] {
        o.insert(name.into(), opt(&format!("{key}.{name}"), v)?);
    }
    Ok(o)
}

/// Every selected metric of samples `a` (against reference `b` where the metric needs one), as
/// JSON numbers (null where a value is undefined); refuses non-finite results.
pub fn compute(
    job: &MetricSettings,
    a: &FeatureSet,
    b: Option<&FeatureSet>,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    job.validate()?;
    let needing: Vec<&Metric> = job.metrics.iter().filter(|m| m.needs_reference()).collect();
    let Some(b) = b.or(if needing.is_empty() { Some(a) } else { None }) else {
        let needing: Vec<Metric> = needing.into_iter().copied().collect();
        bail!(
            "--metrics {} compare with a reference: give --ref-features (or --ref for eval)",
            names(&needing)
        );
    };
    let mut out = serde_json::Map::new();
    for m in &job.metrics {
        match m {
            Metric::Diversity => {
                let (x, d) = a.rows("embedding")?;
                let labels = a.labels(x.len() / d)?;
                let div = diversity::cosine_diversity(&x, d, Some(&labels))?;
                out.insert("diversity".into(), pair_stats("diversity", &div)?.into());
                out.insert(
                    "diversity_info".into(),
                    serde_json::json!({
                        "distance": "1 - cos",
                        "num_samples": div.num_samples,
                        "num_pairs": div.num_pairs,
                        "classes_used": div.classes_used,
                        "classes_excluded_single_sample": div.classes_excluded,
                    }),
                );
            }
            Metric::FdDinov2 => {
                let (x, d) = a.rows("embedding")?;
                let g = b.feature_gaussian("embedding").map_err(|e| {
                    e.context("FD-DINOv2 needs the reference's embedding (or its images)")
                })?;
                let (m2, s2) = (&g.0, &g.1);
                same_width(d, m2.len(), "fd_dinov2")?;
                let fd = fid::frechet_distance_of_rows(&x, d, m2, s2.as_ref())
                    .with_context(|| format!("{}: `embedding`", a.source.display()))?;
                out.insert("fd_dinov2".into(), num("fd_dinov2", fd)?);
            }
            Metric::Lpips => {
                let (x, d) = a.rows("lpips")?;
                let labels = a.labels(x.len() / d)?;
                let div = diversity::squared_l2_diversity(&x, d, Some(&labels))?;
                let mut o = pair_stats("lpips", &div)?;
                o.insert("num_samples".into(), div.num_samples.into());
                o.insert("num_pairs".into(), div.num_pairs.into());
                o.insert(
                    "classes_excluded_single_sample".into(),
                    serde_json::json!(div.classes_excluded),
                );
                out.insert("lpips".into(), o.into());
            }
            Metric::Vendi => {
                let (x, d) = a.rows("embedding")?;
                let labels = a.labels(x.len() / d)?;
                let (mixed, intra) = diversity::vendi_by_class(&x, d, &labels)?;
                out.insert(
                    "vendi".into(),
                    serde_json::json!({
                        "mixed": num("vendi.mixed", mixed)?,
                        "intra_mean": opt("vendi.intra_mean", intra)?,
                    }),
                );
            }
            Metric::Fid | Metric::Sfid => {
                let (feat, mu, sigma, key) = match m {
                    Metric::Fid => ("pool", "mu", "sigma", "fid"),
                    _ => ("spatial", "mu_s", "sigma_s", "sfid"),
                };
                let (x, d) = a.rows(feat)?;
                let g = b.reference_gaussian(feat, mu, sigma)?;
                let (m2, s2) = (&g.0, &g.1);
                same_width(d, m2.len(), key)?;
                let fd = fid::frechet_distance_of_rows(&x, d, m2, s2.as_ref())
                    .with_context(|| format!("{}: `{feat}`", a.source.display()))?;
                out.insert(key.into(), num(key, fd)?);
            }
            Metric::Accuracy => {
                let (l, c) = a.rows("logits")?;
                let labels = a.labels(l.len() / c)?;
                let hits = l
                    .chunks(c)
                    .zip(&labels)
                    .filter(|(row, &y)| usize::try_from(y).is_ok_and(|y| argmax(row) == y))
                    .count();
                let acc = hits as f64 / labels.len().max(1) as f64;
                out.insert("accuracy".into(), num("accuracy", acc)?);
            }
            Metric::Is => {
                let (l, c) = a.rows("logits")?;
                let is = inception_score::inception_score(&l, c, job.is_split_size)?;
                out.insert("inception_score".into(), num("inception_score", is)?);
            }
            Metric::Pr | Metric::Dc | Metric::Kid => {
                let (x, dx) = a.rows("pool")?;
                let (y, dy) = b.rows("pool").map_err(|e| {
                    e.context(
                        "precision/recall, density/coverage and KID need the reference's features",
                    )
                })?;
                same_width(dx, dy, "pool features")?;
                match m {
                    Metric::Pr => {
                        let (p, r) = prdc::precision_recall(&y, &x, dx, job.pr_k)?;
                        out.insert("precision".into(), num("precision", p)?);
                        out.insert("recall".into(), num("recall", r)?);
                    }
                    Metric::Dc => {
                        let (d, c) = prdc::density_coverage(&y, &x, dx, job.dc_k)?;
                        out.insert("density".into(), num("density", d)?);
                        out.insert("coverage".into(), num("coverage", c)?);
                    }
                    _ => {
                        let (mean, std) =
                            kid::kid(&y, &x, dx, job.kid_subsets, job.kid_subset_size, job.seed)?;
                        out.insert("kid_mean".into(), num("kid_mean", mean)?);
                        out.insert("kid_std".into(), num("kid_std", std)?);
                    }
                }
            }
        }
    }
    Ok(out)
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

/// Writes the metric values with the settings and a manifest next to them, atomically.
pub fn write_json(
    path: &Path,
    mut values: serde_json::Map<String, serde_json::Value>,
    settings: serde_json::Value,
    manifest: serde_json::Value,
) -> Result<()> {
    values.insert("settings".into(), settings);
    values.insert("manifest".into(), manifest);
    write_atomic(
        path,
        serde_json::to_string_pretty(&serde_json::Value::Object(values))?.as_bytes(),
    )?;
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
    write_json(&job.json, values, serde_json::to_value(job)?, manifest)
}
