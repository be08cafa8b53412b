//! `sitdiv sweep merge`: every unit verified, each run config's units concatenated in sample
//! order, its metrics computed, one JSON per run config and a tidy `results.csv` written. Result
//! files hold no times or hosts (those go to the `.manifest.json` beside each), so identical work
//! gives identical bytes.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::reference::{embedding_reference, i64_member, quality_reference};
use super::spec::{enum_name, BackboneSpec, BootstrapSettings, RunConfig};
use super::units::{load_plan, Plan, UnitState};
use crate::backend::{Backend, Precision};
use crate::io::{npy, npz, write_atomic, write_with_manifest};
use crate::metrics::bootstrap::{quantile, resample, Interval};
use crate::metrics::results::{Key, Metrics};
use crate::pipeline::evaluate::{self, FeatureSet, MetricSettings};

/// The rows of one array across a run config's units: (values, width) or int64 values.
#[derive(Default)]
struct Rows {
    f32: Vec<f32>,
    width: usize,
    i64: Vec<i64>,
    count: usize,
}

/// Concatenates the named arrays of a run config's unit files in plan order.
fn gather(plan: &Plan, config: usize, keys: &[String]) -> Result<Vec<Rows>> {
    let mut out: Vec<Rows> = keys.iter().map(|_| Rows::default()).collect();
    for u in plan.units.iter().filter(|u| u.config == config) {
        let path = plan.unit_file(u);
        let wanted: Vec<&str> = keys.iter().map(String::as_str).collect();
        let members = npz::read_only(&path, &wanted)?;
        for (k, rows) in keys.iter().zip(out.iter_mut()) {
            let m = members
                .iter()
                .find(|m| &m.key == k)
                .with_context(|| format!("{}: no `{k}`", path.display()))?;
            if k == "indices" || k == "arr_1" || k.ends_with(".indices") {
                let a = npy::decode_i64(&path, &m.npy)?;
                rows.count += a.data.len();
                rows.i64.extend(a.data);
            } else {
                let a = npy::decode_f32(&path, &m.npy)?;
                ensure!(a.shape.len() == 2, "{}: `{k}` is not 2-D", path.display());
                if a.shape[0] > 0 {
                    ensure!(
                        rows.count == 0 || rows.width == a.shape[1],
                        "{}: `{k}` has width {}, other units {}",
                        path.display(),
                        a.shape[1],
                        rows.width
                    );
                    rows.width = a.shape[1];
                }
                rows.count += a.shape[0];
                rows.f32.extend(a.data);
            }
        }
    }
    Ok(out)
}

fn f32_member(key: &str, r: &Rows) -> Result<npz::Member> {
    Ok(npz::Member {
        key: key.into(),
        npy: npy::encode_f32(&[r.count, r.width], &r.f32)?,
    })
}

/// One run config's merged results, `results/<id>.json`. `C` is the run config: written from
/// `RunConfig`, read back by the report as plain JSON.
#[derive(Debug, Serialize, Deserialize)]
pub struct MergedResult<C> {
    pub sweep: String,
    pub config: C,
    pub num_classes: usize,
    /// The Inception's (or toy classifier's) metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Metrics>,
    /// Each diversity backbone's metrics, by backbone name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backbones: BTreeMap<String, Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapRecord>,
}

/// The bootstrap's settings and the interval of every reported number.
#[derive(Debug, Serialize, Deserialize)]
pub struct BootstrapRecord {
    pub reps: usize,
    pub seed: u64,
    pub level: f64,
    /// How resamples are drawn, in words.
    pub resampling: String,
    pub intervals: Vec<IntervalRecord>,
}

/// The percentile interval of one reported number ("" backbone: a quality metric).
#[derive(Debug, Serialize, Deserialize)]
pub struct IntervalRecord {
    pub backbone: String,
    pub metric: String,
    pub scope: String,
    pub statistic: String,
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
    pub bias: f64,
}

const CSV_HEADER: &str = "config,mode,method,steps,cfg,cfg_interval,interval_mode,guidance,guidance_params,diffusion_form,diffusion_norm,last_step,last_step_size,samples_per_class,num_samples,seed,backbone,metric,scope,statistic,value,ci_lo,ci_hi,bootstrap_bias\n";

/// A metric group's rows: named float arrays (N, width) and the labels that stratify resamples.
struct Group {
    arrays: Vec<(String, Rows)>,
    labels: Vec<i64>,
    source: std::path::PathBuf,
}

impl Group {
    /// The feature set of rows `idx` (all rows when None).
    fn select(&self, idx: Option<&[usize]>) -> Result<FeatureSet> {
        let mut m: Vec<npz::Member> = self
            .arrays
            .iter()
            .map(|(k, r)| match idx {
                None => f32_member(k, r),
                Some(idx) => {
                    let w = r.width;
                    let data: Vec<f32> = idx
                        .iter()
                        .flat_map(|&i| r.f32[i * w..(i + 1) * w].iter().copied())
                        .collect();
                    Ok(npz::Member {
                        key: k.clone(),
                        npy: npy::encode_f32(&[idx.len(), w], &data)?,
                    })
                }
            })
            .collect::<Result<_>>()?;
        let labels: Vec<i64> = match idx {
            None => self.labels.clone(),
            Some(idx) => idx.iter().map(|&i| self.labels[i]).collect(),
        };
        m.push(i64_member("labels", &labels)?);
        Ok(FeatureSet::from_members(&self.source, m))
    }

    /// The metrics of all rows, and each reported number's percentile interval over
    /// class-stratified bootstrap resamples of the rows.
    fn evaluate(
        &self,
        settings: &MetricSettings,
        reference: Option<&FeatureSet>,
        boot: BootstrapSettings,
    ) -> Result<(Metrics, BTreeMap<Key, Interval>)> {
        let full = evaluate::compute(settings, &self.select(None)?, reference)?;
        if boot.reps < 2 {
            return Ok((full, BTreeMap::new()));
        }
        let n = self.labels.len();
        // Resamples in parallel; each is a pure function of (seed, r), collected in order.
        let reps: Vec<Metrics> = (0..boot.reps)
            .into_par_iter()
            .map(|r| {
                let idx = resample(n, Some(&self.labels), boot.seed, r);
                evaluate::compute(settings, &self.select(Some(&idx))?, reference)
            })
            .collect::<Result<_>>()?;
        let intervals = intervals(&full, &reps, boot.level);
        Ok((full, intervals))
    }
}

/// The percentile interval at `level` of every number of `full` that at least two resamples
/// define.
fn intervals(full: &Metrics, reps: &[Metrics], level: f64) -> BTreeMap<Key, Interval> {
    let mut draws: BTreeMap<Key, Vec<f64>> = BTreeMap::new();
    for (k, x) in reps.iter().flat_map(Metrics::rows) {
        if let Some(x) = x {
            draws.entry(k).or_default().push(x);
        }
    }
    let mut out = BTreeMap::new();
    for (k, est) in full.rows() {
        let (Some(est), Some(d)) = (est, draws.get_mut(&k)) else {
            continue;
        };
        if d.len() < 2 {
            continue;
        }
        d.sort_by(f64::total_cmp);
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        let interval = Interval {
            estimate: est,
            lo: quantile(d, (1.0 - level) / 2.0),
            hi: quantile(d, (1.0 + level) / 2.0),
            bias: mean - est,
            level,
            reps: d.len(),
        };
        out.insert(k, interval);
    }
    out
}

/// Appends a group's CSV rows (after the config prefix) and its intervals for the JSON.
fn rows_of(
    backbone: &str,
    values: &Metrics,
    intervals: &BTreeMap<Key, Interval>,
    csv: &mut String,
    prefix: &str,
    json: &mut Vec<IntervalRecord>,
) {
    let num = |v: f64| v.to_string();
    for (k, v) in values.rows() {
        let iv = intervals.get(&k);
        let _ = writeln!(
            csv,
            "{prefix},{backbone},{},{},{},{},{},{},{}",
            k.0,
            k.1,
            k.2,
            v.map(num).unwrap_or_default(),
            iv.map(|i| num(i.lo)).unwrap_or_default(),
            iv.map(|i| num(i.hi)).unwrap_or_default(),
            iv.map(|i| num(i.bias)).unwrap_or_default()
        );
        if let Some(i) = iv {
            let (metric, scope, statistic) = k;
            json.push(IntervalRecord {
                backbone: backbone.into(),
                metric,
                scope,
                statistic,
                estimate: i.estimate,
                lo: i.lo,
                hi: i.hi,
                bias: i.bias,
            });
        }
    }
}

fn csv_prefix(c: &RunConfig) -> String {
    let opt = |v: Option<String>| v.unwrap_or_default();
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        c.id,
        c.method.mode(),
        c.method.name(),
        c.steps,
        c.cfg,
        opt(c.cfg_interval.map(|(a, b)| format!("{a}-{b}"))),
        opt(c.interval_mode.map(|m| enum_name(&m))),
        c.guidance,
        c.guidance_params,
        opt(c.diffusion_form.map(|f| enum_name(&f))),
        opt(c.diffusion_norm.map(|v| v.to_string())),
        opt(c.last_step.map(|l| enum_name(&l))),
        opt(c.last_step_size.map(|v| v.to_string())),
        c.samples_per_class,
        c.num_samples,
        c.seed
    )
}

/// Refuses to merge unless every unit is done, listing (up to 20 of) those that are not.
fn ensure_all_done(plan: &Plan) -> Result<()> {
    let mut missing = Vec::new();
    for u in &plan.units {
        match plan.state(u) {
            UnitState::Done => {}
            UnitState::Missing => {
                missing.push(format!("{} (missing)", plan.unit_file(u).display()))
            }
            UnitState::Invalid(why) => {
                missing.push(format!("{} ({why})", plan.unit_file(u).display()))
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = missing.iter().take(20).map(String::as_str).collect();
    bail!(
        "sweep {}: {} of {} units are not done; run `sitdiv sweep run` for them first:\n  {}{}",
        plan.sweep.name,
        missing.len(),
        plan.units.len(),
        shown.join("\n  "),
        if missing.len() > shown.len() {
            format!("\n  … and {} more", missing.len() - shown.len())
        } else {
            String::new()
        }
    );
}

/// What every run config is measured with: the quality metrics' settings and reference, and
/// each backbone's reference embedding for FD-DINOv2 and CMMD (None where it computes neither).
struct Measures {
    quality: MetricSettings,
    quality_ref: Option<FeatureSet>,
    fd_refs: Vec<Option<FeatureSet>>,
}

impl Measures {
    fn load<B: Backend>(be: &B, plan: &Plan) -> Result<Self> {
        let quality = MetricSettings {
            metrics: plan.sweep.quality_metrics.clone(),
            ..MetricSettings::default()
        };
        let quality_ref = if quality.metrics.is_empty() {
            None
        } else {
            quality_reference(be, plan, &quality)?
        };
        let mut fd_refs = Vec::new();
        for (i, b) in plan.sweep.backbones.iter().enumerate() {
            fd_refs.push(if b.metrics.iter().any(|m| m.uses_reference_embedding()) {
                Some(embedding_reference(be, plan, i)?)
            } else {
                None
            });
        }
        Ok(Measures {
            quality,
            quality_ref,
            fd_refs,
        })
    }
}

/// The quality features of a run config's units, with their labels.
fn quality_group(plan: &Plan, config: usize) -> Result<Group> {
    let mut keys = plan.quality_keys();
    let q = keys.len();
    keys.push("arr_1".into());
    let mut rows = gather(plan, config, &keys)?;
    let labels = std::mem::take(&mut rows[q].i64);
    Ok(Group {
        arrays: keys.into_iter().zip(rows).take(q).collect(),
        labels,
        source: plan.out.join("units").join(&plan.configs[config].id),
    })
}

/// A backbone's rows of a run config's units (`embedding` or `lpips`), with their labels.
fn backbone_group(plan: &Plan, config: usize, spec: &BackboneSpec) -> Result<Group> {
    let second = if spec.is_lpips() {
        format!("{}.indices", spec.backbone.name())
    } else {
        "arr_1".into()
    };
    let mut rows = gather(plan, config, &[spec.key(), second])?;
    // LPIPS rows cover a subset: their labels come from the full label list.
    let labels = if spec.is_lpips() {
        let all = gather(plan, config, &["indices".into(), "arr_1".into()])?;
        let by_index: HashMap<i64, i64> = all[0]
            .i64
            .iter()
            .copied()
            .zip(all[1].i64.iter().copied())
            .collect();
        rows[1].i64.iter().map(|i| by_index[i]).collect()
    } else {
        std::mem::take(&mut rows[1].i64)
    };
    let kind = if spec.is_lpips() {
        "lpips"
    } else {
        "embedding"
    };
    Ok(Group {
        arrays: vec![(kind.to_string(), std::mem::take(&mut rows[0]))],
        labels,
        source: plan.out.join("units").join(&plan.configs[config].id),
    })
}

/// Measures one run config: its results document, its rows appended to `csv`.
fn merge_config<'p>(
    plan: &'p Plan,
    config: usize,
    measures: &Measures,
    csv: &mut String,
) -> Result<MergedResult<&'p RunConfig>> {
    let c = &plan.configs[config];
    let prefix = csv_prefix(c);
    let boot = plan.sweep.bootstrap;
    let mut intervals = Vec::new();
    let mut quality = None;
    if !measures.quality.metrics.is_empty() {
        let (v, iv) = quality_group(plan, config)?
            .evaluate(&measures.quality, measures.quality_ref.as_ref(), boot)
            .with_context(|| format!("run config {}", c.id))?;
        rows_of("", &v, &iv, csv, &prefix, &mut intervals);
        quality = Some(v);
    }
    let mut backbones = BTreeMap::new();
    for (spec, fd_ref) in plan.sweep.backbones.iter().zip(&measures.fd_refs) {
        let name = spec.backbone.name();
        let settings = MetricSettings {
            metrics: spec.metrics.clone(),
            ..measures.quality.clone()
        };
        let (v, iv) = backbone_group(plan, config, spec)?
            .evaluate(&settings, fd_ref.as_ref(), boot)
            .with_context(|| format!("run config {}, backbone {name}", c.id))?;
        rows_of(name, &v, &iv, csv, &prefix, &mut intervals);
        backbones.insert(name.to_string(), v);
    }
    let bootstrap = (boot.reps >= 2).then(|| BootstrapRecord {
        reps: boot.reps,
        seed: boot.seed,
        level: boot.level,
        resampling: "images with replacement, within each class".into(),
        intervals,
    });
    Ok(MergedResult {
        sweep: plan.sweep.name.clone(),
        config: c,
        num_classes: plan.classes.len(),
        quality,
        backbones,
        bootstrap,
    })
}

/// Writes `results/<id>.json`, with its manifest (the only place for times and hosts).
fn write_result<B: Backend>(be: &B, plan: &Plan, doc: &MergedResult<&RunConfig>) -> Result<()> {
    let path = plan
        .out
        .join("results")
        .join(format!("{}.json", doc.config.id));
    let manifest = serde_json::json!({
        "tool": "sitdiv sweep merge",
        "version": env!("CARGO_PKG_VERSION"),
        "sweep_sha256": plan.sweep.file_sha256,
        "weights_sha256": plan.hashes,
        "device": be.name(),
        "host": crate::io::hostname(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    });
    // Through a Value, whose map sorts keys: the results files have always been written so.
    let text = serde_json::to_string_pretty(&serde_json::to_value(doc)?)? + "\n";
    write_with_manifest(&path, &manifest, |p| write_atomic(p, text.as_bytes()))?;
    log::info!("wrote {}", path.display());
    Ok(())
}

/// `sitdiv sweep merge`.
pub fn merge<B: Backend>(be: &B, sweep_file: &Path, out: Option<&Path>) -> Result<()> {
    let plan = load_plan(sweep_file, out)?;
    ensure_all_done(&plan)?;
    // The reference's features in the units' precision, so that both sides of every metric
    // went through the same arithmetic.
    let mut precision = plan.eval_precision()?;
    if !be.runs(precision) {
        log::warn!(
            "the units' features were computed in {precision}; {} computes the reference's in fp32",
            be.name()
        );
        precision = Precision::Fp32;
    }
    let be = &be.companion(precision)?;
    let measures = Measures::load(be, &plan)?;
    let mut csv = String::from(CSV_HEADER);
    for config in 0..plan.configs.len() {
        let doc = merge_config(&plan, config, &measures, &mut csv)?;
        write_result(be, &plan, &doc)?;
    }
    let path = plan.out.join("results.csv");
    write_atomic(&path, csv.as_bytes())?;
    println!(
        "merged {} run configs of sweep {} → {} and {}",
        plan.configs.len(),
        plan.sweep.name,
        plan.out.join("results").display(),
        path.display()
    );
    Ok(())
}
