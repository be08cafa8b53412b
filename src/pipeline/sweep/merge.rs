//! `sitdiv sweep merge`: every unit verified, each run config's units concatenated in sample
//! order, its metrics computed, one JSON per run config and a tidy `results.csv` written. Result
//! files hold no times or hosts (those go to the `.manifest.json` beside each), so identical work
//! gives identical bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use rayon::prelude::*;

use super::quality::QualityNet;
use super::spec::{enum_name, BootstrapSettings, Reference, RunConfig};
use super::units::{load_plan, Plan, UnitState};
use crate::backend::Backend;
use crate::io::{npy, npz, write_atomic, write_with_manifest};
use crate::metrics::bootstrap::{quantile, resample, Interval};
use crate::pipeline::embed::{embedding_members, Embedder, Subset};
use crate::pipeline::evaluate::{self, FeatureSet, Metric, MetricSettings};
use crate::pipeline::features::inception_features;
use crate::toy;

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

fn i64_member(key: &str, v: &[i64]) -> Result<npz::Member> {
    Ok(npz::Member {
        key: key.into(),
        npy: npy::encode_i64(&[v.len()], v)?,
    })
}

/// Reference features for the quality metrics: a features file or ADM statistics as they are,
/// else the quality network run on its images (or on the toy data it names).
fn quality_reference<B: Backend>(
    be: &B,
    plan: &Plan,
    settings: &MetricSettings,
) -> Result<Option<FeatureSet>> {
    let Some(reference) = &plan.sweep.reference else {
        return Ok(None);
    };
    if !settings.metrics.iter().any(|m| m.needs_reference()) {
        return Ok(None);
    }
    let source = plan
        .sweep
        .inception
        .as_ref()
        .context("the reference's features need the quality network")?;
    let r = match reference {
        Reference::ToyData { seed, per_class } => {
            let (images, labels) = toy::dataset(*seed, *per_class)?;
            log::info!(
                "quality features of the reference, {}",
                reference.describe()
            );
            let net = QualityNet::load(be, source)?;
            let mut m = net.members(be, &images, (labels.len(), toy::SIZE, toy::SIZE, 3))?;
            m.push(i64_member("labels", &labels)?);
            return toy_reference(reference, m).map(Some);
        }
        Reference::File(r) => r,
    };
    let keys = npz::keys(r)?;
    let mut set = if keys.iter().any(|k| k == "pool") {
        FeatureSet::open(r)?
    } else {
        FeatureSet::from_members(r, npz::read_only(r, &["mu", "sigma", "mu_s", "sigma_s"])?)
    };
    if settings.needs_reference_features(&set) {
        ensure!(
            keys.iter().any(|k| k == "arr_0"),
            "{}: the metrics need reference images (`arr_0`) or features (`pool`…); it has: {}",
            r.display(),
            keys.join(", ")
        );
        let QualityNet::Inception(net) = QualityNet::load(be, source)? else {
            bail!(
                "{}: a toy classifier's reference is a features file or {{ toy_data_seed = …, per_class = … }}",
                r.display()
            );
        };
        log::info!("Inception features of the reference {}", r.display());
        let (m, _) = inception_features(be, &net, std::slice::from_ref(r), 16)?;
        set.extend(m);
    }
    set.cache_gaussians()?;
    Ok(Some(set))
}

/// A reference computed from the toy data: its feature members, named by the reference's
/// description, with their Gaussians ready.
fn toy_reference(reference: &Reference, members: Vec<npz::Member>) -> Result<FeatureSet> {
    let mut set = FeatureSet::from_members(Path::new(&reference.describe()), members);
    set.cache_gaussians()?;
    Ok(set)
}

/// The FD-DINOv2 reference: its `embedding`, or its images through the backbone.
fn embedding_reference<B: Backend>(be: &B, plan: &Plan, backbone: usize) -> Result<FeatureSet> {
    let spec = &plan.sweep.backbones[backbone];
    let reference = plan
        .sweep
        .reference
        .as_ref()
        .context("fd_dinov2 needs [evaluation] reference")?;
    let r = match reference {
        Reference::ToyData { seed, per_class } => {
            let (images, labels) = toy::dataset(*seed, *per_class)?;
            let (emb, _) = Embedder::load(be, spec.backbone, &spec.weights)?;
            let rows = emb.embed(be, &images, (labels.len(), toy::SIZE, toy::SIZE, 3))?;
            let m = vec![npz::Member {
                key: "embedding".into(),
                npy: npy::encode_f32(&[labels.len(), rows.len() / labels.len().max(1)], &rows)?,
            }];
            return toy_reference(reference, m);
        }
        Reference::File(r) => r,
    };
    let keys = npz::keys(r)?;
    if keys.iter().any(|k| k == "embedding") {
        let mut set = FeatureSet::open(r)?;
        set.cache_gaussians()?;
        return Ok(set);
    }
    ensure!(
        keys.iter().any(|k| k == "arr_0"),
        "{}: fd_dinov2 needs reference images (`arr_0`) or an `embedding`; it has: {}",
        r.display(),
        keys.join(", ")
    );
    let (emb, _) = Embedder::load(be, spec.backbone, &spec.weights)?;
    let (m, _) = embedding_members(be, &emb, std::slice::from_ref(r), &Subset::default(), 16)?;
    let mut set = FeatureSet::from_members(r, m);
    set.cache_gaussians()?;
    Ok(set)
}

/// (metric, scope, statistic) of one reported number.
pub type Key = (String, String, String);

/// One tidy row per value of a metric object: (metric, scope, statistic) and the value (None
/// where undefined).
pub fn tidy(metric_values: &serde_json::Map<String, serde_json::Value>) -> Vec<(Key, Option<f64>)> {
    let mut out = Vec::new();
    let cell = |v: &serde_json::Value| v.as_f64();
    for (key, v) in metric_values {
        match (key.as_str(), v) {
            ("diversity" | "lpips", serde_json::Value::Object(o)) => {
                for scope in ["intra", "inter", "mixed"] {
                    for stat in ["mean", "std"] {
                        if let Some(x) = o.get(&format!("{scope}_{stat}")) {
                            out.push(((key.clone(), scope.into(), stat.into()), cell(x)));
                        }
                    }
                }
            }
            ("vendi", serde_json::Value::Object(o)) => {
                if let Some(x) = o.get("mixed") {
                    out.push(((key.clone(), "mixed".into(), "value".into()), cell(x)));
                }
                if let Some(x) = o.get("intra_mean") {
                    out.push(((key.clone(), "intra".into(), "mean".into()), cell(x)));
                }
            }
            ("kid_mean", x) => out.push((("kid".into(), "all".into(), "mean".into()), cell(x))),
            ("kid_std", x) => out.push((("kid".into(), "all".into(), "std".into()), cell(x))),
            (_, serde_json::Value::Number(_)) => {
                out.push(((key.clone(), "all".into(), "value".into()), cell(v)))
            }
            _ => {} // details such as diversity_info
        }
    }
    out
}

const CSV_HEADER: &str = "config,mode,method,steps,cfg,cfg_interval,interval_mode,diffusion_form,diffusion_norm,last_step,last_step_size,samples_per_class,num_samples,seed,backbone,metric,scope,statistic,value,ci_lo,ci_hi,bootstrap_bias\n";

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
    ) -> Result<(
        serde_json::Map<String, serde_json::Value>,
        BTreeMap<Key, Interval>,
    )> {
        let full = evaluate::compute(settings, &self.select(None)?, reference)?;
        let mut intervals = BTreeMap::new();
        if boot.reps < 2 {
            return Ok((full, intervals));
        }
        let n = self.labels.len();
        let mut draws: BTreeMap<Key, Vec<f64>> = BTreeMap::new();
        // Resamples in parallel; each is a pure function of (seed, r), collected in order.
        let reps: Vec<serde_json::Map<String, serde_json::Value>> = (0..boot.reps)
            .into_par_iter()
            .map(|r| {
                let idx = resample(n, Some(&self.labels), boot.seed, r);
                evaluate::compute(settings, &self.select(Some(&idx))?, reference)
            })
            .collect::<Result<_>>()?;
        for v in &reps {
            for (k, x) in tidy(v) {
                if let Some(x) = x {
                    draws.entry(k).or_default().push(x);
                }
            }
        }
        for (k, est) in tidy(&full) {
            let (Some(est), Some(d)) = (est, draws.get_mut(&k)) else {
                continue;
            };
            if d.len() < 2 {
                continue;
            }
            d.sort_by(f64::total_cmp);
            let mean = d.iter().sum::<f64>() / d.len() as f64;
            intervals.insert(
                k,
                Interval {
                    estimate: est,
                    lo: quantile(d, (1.0 - boot.level) / 2.0),
                    hi: quantile(d, (1.0 + boot.level) / 2.0),
                    bias: mean - est,
                    level: boot.level,
                    reps: d.len(),
                },
            );
        }
        Ok((full, intervals))
    }
}

/// Appends a group's CSV rows (after the config prefix) and its intervals for the JSON.
fn rows_of(
    backbone: &str,
    values: &serde_json::Map<String, serde_json::Value>,
    intervals: &BTreeMap<Key, Interval>,
    csv: &mut String,
    prefix: &str,
    json: &mut Vec<serde_json::Value>,
) {
    let num = |v: f64| v.to_string();
    for (k, v) in tidy(values) {
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
            json.push(serde_json::json!({
                "backbone": backbone, "metric": k.0, "scope": k.1, "statistic": k.2,
                "estimate": i.estimate, "lo": i.lo, "hi": i.hi, "bias": i.bias,
            }));
        }
    }
}

fn csv_prefix(c: &RunConfig) -> String {
    let opt = |v: Option<String>| v.unwrap_or_default();
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        c.id,
        c.method.mode(),
        c.method.name(),
        c.steps,
        c.cfg,
        opt(c.cfg_interval.map(|(a, b)| format!("{a}-{b}"))),
        opt(c.interval_mode.map(|m| enum_name(&m))),
        opt(c.diffusion_form.map(|f| enum_name(&f))),
        opt(c.diffusion_norm.map(|v| v.to_string())),
        opt(c.last_step.map(|l| enum_name(&l))),
        opt(c.last_step_size.map(|v| v.to_string())),
        c.samples_per_class,
        c.num_samples,
        c.seed
    )
}

/// `sitdiv sweep merge`.
pub fn merge<B: Backend>(be: &B, sweep_file: &Path, out: Option<&Path>) -> Result<()> {
    let plan = load_plan(sweep_file, out)?;
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
    if !missing.is_empty() {
        let shown: Vec<&String> = missing.iter().take(20).collect();
        bail!(
            "sweep {}: {} of {} units are not done; run `sitdiv sweep run` for them first:\n  {}{}",
            plan.sweep.name,
            missing.len(),
            plan.units.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  "),
            if missing.len() > shown.len() {
                format!("\n  … and {} more", missing.len() - shown.len())
            } else {
                String::new()
            }
        );
    }
    let quality = MetricSettings {
        metrics: plan.sweep.quality_metrics.clone(),
        ..MetricSettings::default()
    };
    let q_ref = if quality.metrics.is_empty() {
        None
    } else {
        quality_reference(be, &plan, &quality)?
    };
    let mut fd_refs: Vec<Option<FeatureSet>> = Vec::new();
    for (i, b) in plan.sweep.backbones.iter().enumerate() {
        fd_refs.push(if b.metrics.contains(&Metric::FdDinov2) {
            Some(embedding_reference(be, &plan, i)?)
        } else {
            None
        });
    }
    let results = plan.out.join("results");
    let mut csv = String::from(CSV_HEADER);
    for (ci, c) in plan.configs.iter().enumerate() {
        let prefix = csv_prefix(c);
        let boot = plan.sweep.bootstrap;
        let source = plan.out.join("units").join(&c.id);
        let mut doc = serde_json::Map::new();
        doc.insert("sweep".into(), plan.sweep.name.clone().into());
        doc.insert("config".into(), serde_json::to_value(c)?);
        doc.insert("num_classes".into(), plan.classes.len().into());
        let mut intervals_json = Vec::new();
        if !quality.metrics.is_empty() {
            let mut keys = plan.quality_keys();
            let q = keys.len();
            keys.push("arr_1".into());
            let mut rows = gather(&plan, ci, &keys)?;
            let labels = std::mem::take(&mut rows[q].i64);
            let group = Group {
                arrays: keys.into_iter().zip(rows).take(q).collect(),
                labels,
                source: source.clone(),
            };
            let (v, iv) = group
                .evaluate(&quality, q_ref.as_ref(), boot)
                .with_context(|| format!("run config {}", c.id))?;
            rows_of("", &v, &iv, &mut csv, &prefix, &mut intervals_json);
            doc.insert("quality".into(), v.into());
        }
        let mut per_backbone = serde_json::Map::new();
        for (bi, spec) in plan.sweep.backbones.iter().enumerate() {
            let name = spec.backbone.name();
            let second = if spec.is_lpips() {
                format!("{name}.indices")
            } else {
                "arr_1".into()
            };
            let mut rows = gather(&plan, ci, &[spec.key(), second])?;
            // LPIPS rows cover a subset: their labels come from the full label list.
            let labels = if spec.is_lpips() {
                let all = gather(&plan, ci, &["indices".into(), "arr_1".into()])?;
                let by_index: std::collections::HashMap<i64, i64> = all[0]
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
            let group = Group {
                arrays: vec![(kind.to_string(), std::mem::take(&mut rows[0]))],
                labels,
                source: source.clone(),
            };
            let settings = MetricSettings {
                metrics: spec.metrics.clone(),
                ..quality.clone()
            };
            let (v, iv) = group
                .evaluate(&settings, fd_refs[bi].as_ref(), boot)
                .with_context(|| format!("run config {}, backbone {name}", c.id))?;
            rows_of(name, &v, &iv, &mut csv, &prefix, &mut intervals_json);
            per_backbone.insert(name.to_string(), v.into());
        }
        if !per_backbone.is_empty() {
            doc.insert("backbones".into(), per_backbone.into());
        }
        if boot.reps >= 2 {
            doc.insert(
                "bootstrap".into(),
                serde_json::json!({
                    "reps": boot.reps,
                    "seed": boot.seed,
                    "level": boot.level,
                    "resampling": "images with replacement, within each class",
                    "intervals": intervals_json,
                }),
            );
        }
        let path = results.join(format!("{}.json", c.id));
        let manifest = serde_json::json!({
            "tool": "sitdiv sweep merge",
            "version": env!("CARGO_PKG_VERSION"),
            "sweep_sha256": plan.sweep.file_sha256,
            "weights_sha256": plan.hashes,
            "device": be.name(),
            "host": crate::io::hostname(),
            "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        });
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(doc))? + "\n";
        write_with_manifest(&path, &manifest, |p| write_atomic(p, text.as_bytes()))?;
        log::info!("wrote {}", path.display());
    }
    let path = plan.out.join("results.csv");
    write_atomic(&path, csv.as_bytes())?;
    println!(
        "merged {} run configs of sweep {} → {} and {}",
        plan.configs.len(),
        plan.sweep.name,
        results.display(),
        path.display()
    );
    Ok(())
}
