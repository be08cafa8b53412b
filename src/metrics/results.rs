//! Metric values as the result files hold them: what `sitdiv metrics` and `sitdiv eval` write
//! at the top level of their JSON, and `sitdiv sweep merge` per metric group.
//!
//! Every field is optional: a file holds the selected metrics only. The files' keys are sorted
//! (they are written through `serde_json::Value`, whose map orders keys), so the order of the
//! fields here does not reach the bytes; `Metrics::rows` restores that order for `results.csv`.

use serde::{Deserialize, Serialize};

use super::diversity::Diversity;

/// Mean and standard deviation of a pairwise distance within classes, across classes and over
/// all pairs; None where undefined (no pair of that kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairStats {
    pub intra_mean: Option<f64>,
    pub intra_std: Option<f64>,
    pub inter_mean: Option<f64>,
    pub inter_std: Option<f64>,
    pub mixed_mean: Option<f64>,
    pub mixed_std: Option<f64>,
}

impl PairStats {
    /// The six values with their scope and statistic, intra first.
    fn cells(&self) -> [(&'static str, &'static str, Option<f64>); 6] {
        [
            ("intra", "mean", self.intra_mean),
            ("intra", "std", self.intra_std),
            ("inter", "mean", self.inter_mean),
            ("inter", "std", self.inter_std),
            ("mixed", "mean", self.mixed_mean),
            ("mixed", "std", self.mixed_std),
        ]
    }
}

/// What the cosine diversity was computed over (`diversity_info`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiversityInfo {
    /// Always `1 - cos`.
    pub distance: String,
    pub num_samples: usize,
    pub num_pairs: u64,
    pub classes_used: usize,
    pub classes_excluded_single_sample: Vec<i64>,
}

impl DiversityInfo {
    pub fn of(d: &Diversity) -> Self {
        DiversityInfo {
            distance: "1 - cos".into(),
            num_samples: d.num_samples,
            num_pairs: d.num_pairs,
            classes_used: d.classes_used,
            classes_excluded_single_sample: d.classes_excluded.clone(),
        }
    }
}

/// LPIPS between image pairs, with the pairs it covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lpips {
    #[serde(flatten)]
    pub stats: PairStats,
    pub num_samples: usize,
    pub num_pairs: u64,
    pub classes_excluded_single_sample: Vec<i64>,
}

/// Vendi score over all samples, and averaged over classes (None without a class of 2 samples).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vendi {
    pub mixed: f64,
    pub intra_mean: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrecisionRecall {
    pub precision: f64,
    pub recall: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DensityCoverage {
    pub density: f64,
    pub coverage: f64,
}

/// KID over random subsets: mean and standard deviation (`kid_mean`, `kid_std` in the files).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Kid {
    #[serde(rename = "kid_mean")]
    pub mean: f64,
    #[serde(rename = "kid_std")]
    pub std: f64,
}

/// The values of the selected metrics; absent fields were not selected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fid: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sfid: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inception_score: Option<f64>,
    #[serde(flatten)]
    pub precision_recall: Option<PrecisionRecall>,
    #[serde(flatten)]
    pub density_coverage: Option<DensityCoverage>,
    #[serde(flatten)]
    pub kid: Option<Kid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd_dinov2: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmmd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diversity: Option<PairStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diversity_info: Option<DiversityInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendi: Option<Vendi>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lpips: Option<Lpips>,
}

/// (metric, scope, statistic) of one reported number.
pub type Key = (String, String, String);

impl Metrics {
    /// Adds `other`'s metrics, replacing those both hold.
    pub fn extend(&mut self, other: Metrics) {
        // Destructured so that a new field cannot be forgotten here.
        let Metrics {
            fid,
            sfid,
            inception_score,
            precision_recall,
            density_coverage,
            kid,
            accuracy,
            fd_dinov2,
            cmmd,
            diversity,
            diversity_info,
            vendi,
            lpips,
        } = other;
        fn take<T>(mine: &mut Option<T>, theirs: Option<T>) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        take(&mut self.fid, fid);
        take(&mut self.sfid, sfid);
        take(&mut self.inception_score, inception_score);
        take(&mut self.precision_recall, precision_recall);
        take(&mut self.density_coverage, density_coverage);
        take(&mut self.kid, kid);
        take(&mut self.accuracy, accuracy);
        take(&mut self.fd_dinov2, fd_dinov2);
        take(&mut self.cmmd, cmmd);
        take(&mut self.diversity, diversity);
        take(&mut self.diversity_info, diversity_info);
        take(&mut self.vendi, vendi);
        take(&mut self.lpips, lpips);
    }

    /// One tidy row per reported number: (metric, scope, statistic) and the value (None where
    /// undefined). Rows come in the order of the metrics' keys in the files (sorted: `kid`
    /// where `kid_mean` and `kid_std` sort), as `results.csv` has always listed them;
    /// `diversity_info` and LPIPS's counts are details, not rows.
    pub fn rows(&self) -> Vec<(Key, Option<f64>)> {
        let mut rows: Vec<(&str, &str, &str, Option<f64>)> = Vec::new();
        let mut scalar = |metric, v: Option<f64>| {
            if let Some(v) = v {
                rows.push((metric, "all", "value", Some(v)));
            }
        };
        scalar("fid", self.fid);
        scalar("sfid", self.sfid);
        scalar("inception_score", self.inception_score);
        scalar("precision", self.precision_recall.map(|p| p.precision));
        scalar("recall", self.precision_recall.map(|p| p.recall));
        scalar("density", self.density_coverage.map(|d| d.density));
        scalar("coverage", self.density_coverage.map(|d| d.coverage));
        scalar("accuracy", self.accuracy);
        scalar("fd_dinov2", self.fd_dinov2);
        scalar("cmmd", self.cmmd);
        if let Some(k) = self.kid {
            rows.push(("kid", "all", "mean", Some(k.mean)));
            rows.push(("kid", "all", "std", Some(k.std)));
        }
        for (metric, stats) in [
            ("diversity", self.diversity.as_ref()),
            ("lpips", self.lpips.as_ref().map(|l| &l.stats)),
        ] {
            for (scope, stat, v) in stats.map(PairStats::cells).into_iter().flatten() {
                rows.push((metric, scope, stat, v));
            }
        }
        if let Some(v) = &self.vendi {
            rows.push(("vendi", "mixed", "value", Some(v.mixed)));
            rows.push(("vendi", "intra", "mean", v.intra_mean));
        }
        // Stable: a metric's own rows keep their order.
        rows.sort_by_key(|r| r.0);
        rows.into_iter()
            .map(|(m, scope, stat, v)| ((m.into(), scope.into(), stat.into()), v))
            .collect()
    }
}
