//! Values of the command line that need more than clap's defaults: named settings, class lists,
//! intervals, and the flag groups shared by several commands.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;

use sitdiv::names::Named;
use sitdiv::pipeline::embed::Subset;
use sitdiv::pipeline::evaluate::{Metric, MetricSettings};

/// A parser for a named setting: its names appear in `--help` and in the error for a wrong one.
pub fn one_of<T: Named + Clone>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(T::NAMES).try_map(|s| s.parse::<T>())
}

/// `--classes`: one value holding the whole list.
#[derive(Clone, Debug)]
pub struct ClassList(pub Vec<i64>);

pub fn parse_classes(s: &str) -> Result<ClassList, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |v: &str| v.trim().parse::<i64>().map_err(|e| format!("{v:?}: {e}"));
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("range {part} runs backwards"));
                }
                if b - a >= 1_000_000 {
                    return Err(format!("range {part} selects more than a million classes"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    if out.is_empty() {
        return Err("no class given".into());
    }
    Ok(ClassList(out))
}

pub fn parse_interval(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("expected LO,HI, got {s:?}"))?;
    let p = |v: &str| v.trim().parse::<f64>().map_err(|e| format!("{v:?}: {e}"));
    Ok((p(a)?, p(b)?))
}

/// `--max-per-class`, `--max-samples`, `--subset-seed`: which rows enter a diversity metric.
#[derive(Args)]
pub struct SubsetArgs {
    /// Keep at most K samples per class (needs labels), drawn from --subset-seed.
    #[arg(long)]
    pub max_per_class: Option<usize>,
    /// Keep at most K samples in all (after --max-per-class), drawn from --subset-seed.
    #[arg(long)]
    pub max_samples: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub subset_seed: u64,
}

impl From<SubsetArgs> for Subset {
    fn from(a: SubsetArgs) -> Self {
        Subset {
            max_per_class: a.max_per_class,
            max_samples: a.max_samples,
            subset_seed: a.subset_seed,
        }
    }
}

/// `--metrics` and the metrics' parameters, shared by `sitdiv metrics` and `sitdiv eval`.
#[derive(Args)]
pub struct MetricArgs {
    #[arg(long, value_parser = one_of::<Metric>(), value_delimiter = ',', default_value = "fid,sfid,is,pr")]
    pub metrics: Vec<Metric>,
    #[arg(long, default_value_t = MetricSettings::default().kid_subsets)]
    pub kid_subsets: usize,
    #[arg(long, default_value_t = MetricSettings::default().kid_subset_size)]
    pub kid_subset_size: usize,
    /// Seed of the KID subsets.
    #[arg(long, default_value_t = MetricSettings::default().seed)]
    pub seed: u64,
    /// IS split size (ADM: 5000, consecutive, no shuffle).
    #[arg(long, default_value_t = MetricSettings::default().is_split_size)]
    pub is_split_size: usize,
    /// k of precision/recall (ADM: 3).
    #[arg(long, default_value_t = MetricSettings::default().pr_k)]
    pub pr_k: usize,
    /// k of density/coverage (prdc: 5).
    #[arg(long, default_value_t = MetricSettings::default().dc_k)]
    pub dc_k: usize,
}

impl From<MetricArgs> for MetricSettings {
    fn from(a: MetricArgs) -> Self {
        MetricSettings {
            metrics: a.metrics,
            kid_subsets: a.kid_subsets,
            kid_subset_size: a.kid_subset_size,
            seed: a.seed,
            is_split_size: a.is_split_size,
            pr_k: a.pr_k,
            dc_k: a.dc_k,
        }
    }
}
