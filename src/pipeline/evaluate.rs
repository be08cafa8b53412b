//! `sitdiv metrics`: quality metrics from precomputed Inception features, written as one JSON.
//!
//! Feature files are `.npz` with float32 `pool` (N, 2048), `spatial` (N, 2023) and `logits`
//! (N, 1008). The reference may instead be an ADM reference batch holding `mu`, `sigma` (and
//! `mu_s`, `sigma_s`): FID and sFID then use those statistics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use faer::Mat;
use serde::Serialize;

use super::{npy, npz, write_atomic};
use crate::metrics::{fid, inception_score, kid, prdc, stats::FeatureStats};

/// What `--metrics` can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Fid,
    Sfid,
    Is,
    Pr,
    Dc,
    Kid,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricsJob {
    pub features: PathBuf,
    pub ref_features: PathBuf,
    pub metrics: Vec<Metric>,
    pub kid_subsets: usize,
    pub kid_subset_size: usize,
    pub seed: u64,
    pub is_split_size: usize,
    pub pr_k: usize,
    pub dc_k: usize,
    pub json: PathBuf,
}

/// The arrays of one feature file.
struct Features {
    path: PathBuf,
    arrays: BTreeMap<String, Vec<u8>>,
}

impl Features {
    fn open(path: &Path) -> Result<Self> {
        let arrays = npz::read(path)?
            .into_iter()
            .map(|m| (m.key, m.npy))
            .collect();
        Ok(Features {
            path: path.to_path_buf(),
            arrays,
        })
    }

    fn keys(&self) -> String {
        self.arrays.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// A float32 (N, width) array, with its width.
    fn rows(&self, key: &str) -> Result<(Vec<f32>, usize)> {
        let bytes = self.arrays.get(key).with_context(|| {
            format!(
                "{}: no `{key}` array (it has: {})",
                self.path.display(),
                self.keys()
            )
        })?;
        let a = npy::decode_f32(&self.path, bytes)?;
        ensure!(
            a.shape.len() == 2,
            "{}: `{key}` has shape {:?}, expected (N, width)",
            self.path.display(),
            a.shape
        );
        ensure!(
            a.data.iter().all(|v| v.is_finite()),
            "{}: `{key}` contains NaN or infinite values",
            self.path.display()
        );
        Ok((a.data, a.shape[1]))
    }

    /// Gaussian statistics (mean, unbiased covariance) of a feature array.
    fn feature_gaussian(&self, features: &str) -> Result<(Vec<f64>, Mat<f64>)> {
        let (x, d) = self.rows(features)?;
        let st = FeatureStats::from_batch(&x, d)
            .with_context(|| format!("{}: `{features}`", self.path.display()))?;
        Ok((st.mean.clone(), st.covariance()?))
    }

    /// The reference's statistics: `mu`/`sigma` of an ADM reference batch, else its features.
    fn reference_gaussian(
        &self,
        features: &str,
        mu: &str,
        sigma: &str,
    ) -> Result<(Vec<f64>, Mat<f64>)> {
        let (Some(m), Some(s)) = (self.arrays.get(mu), self.arrays.get(sigma)) else {
            return self.feature_gaussian(features).with_context(|| {
                format!(
                    "{}: neither `{mu}`/`{sigma}` statistics nor `{features}` features",
                    self.path.display()
                )
            });
        };
        let m = npy::decode_f64(&self.path, m)?;
        let s = npy::decode_f64(&self.path, s)?;
        let d = m.data.len();
        ensure!(
            s.shape == [d, d],
            "{}: `{sigma}` has shape {:?}, expected ({d}, {d})",
            self.path.display(),
            s.shape
        );
        Ok((m.data, Mat::from_fn(d, d, |i, j| s.data[i * d + j])))
    }
}

fn same_width(a: usize, b: usize, what: &str) -> Result<()> {
    ensure!(
        a == b,
        "{what}: the samples have width {a} but the reference has width {b}"
    );
    Ok(())
}

pub fn run(job: &MetricsJob) -> Result<()> {
    ensure!(!job.metrics.is_empty(), "--metrics selects nothing");
    ensure!(
        job.pr_k >= 1 && job.dc_k >= 1,
        "--pr-k and --dc-k must be at least 1"
    );
    ensure!(job.is_split_size >= 1, "--is-split-size must be at least 1");
    let a = Features::open(&job.features)?;
    let b = Features::open(&job.ref_features)?;
    let mut out = serde_json::Map::new();
    for m in &job.metrics {
        match m {
            Metric::Fid | Metric::Sfid => {
                let (feat, mu, sigma, key) = match m {
                    Metric::Fid => ("pool", "mu", "sigma", "fid"),
                    _ => ("spatial", "mu_s", "sigma_s", "sfid"),
                };
                let (m1, s1) = a.feature_gaussian(feat)?;
                let (m2, s2) = b.reference_gaussian(feat, mu, sigma)?;
                same_width(m1.len(), m2.len(), key)?;
                out.insert(
                    key.into(),
                    fid::frechet_distance(&m1, s1.as_ref(), &m2, s2.as_ref())?.into(),
                );
            }
            Metric::Is => {
                let (l, c) = a.rows("logits")?;
                out.insert(
                    "inception_score".into(),
                    inception_score::inception_score(&l, c, job.is_split_size)?.into(),
                );
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
                        out.insert("precision".into(), p.into());
                        out.insert("recall".into(), r.into());
                    }
                    Metric::Dc => {
                        let (d, c) = prdc::density_coverage(&y, &x, dx, job.dc_k)?;
                        out.insert("density".into(), d.into());
                        out.insert("coverage".into(), c.into());
                    }
                    _ => {
                        let (mean, std) =
                            kid::kid(&y, &x, dx, job.kid_subsets, job.kid_subset_size, job.seed)?;
                        out.insert("kid_mean".into(), mean.into());
                        out.insert("kid_std".into(), std.into());
                    }
                }
            }
        }
    }
    for (k, v) in &out {
        if v.as_f64().is_some_and(|x| !x.is_finite()) {
            bail!("metric {k} came out non-finite; nothing was written");
        }
    }
    out.insert("settings".into(), serde_json::to_value(job)?);
    out.insert(
        "manifest".into(),
        serde_json::json!({
            "tool": "sitdiv metrics",
            "version": env!("CARGO_PKG_VERSION"),
            "features_sha256": super::sample::sha256_hex(&std::fs::read(&job.features)?),
            "ref_features_sha256": super::sample::sha256_hex(&std::fs::read(&job.ref_features)?),
        }),
    );
    write_atomic(
        &job.json,
        serde_json::to_string_pretty(&serde_json::Value::Object(out))?.as_bytes(),
    )?;
    log::info!("wrote {}", job.json.display());
    Ok(())
}
