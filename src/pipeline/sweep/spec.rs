//! Sweep files (TOML) and their expansion into run configs and work units.
//!
//! A sweep names the model, the evaluation (Inception, reference, backbones, metrics), a
//! `[defaults]` table of sampler settings and any number of `[[grid]]` tables. Each grid is the
//! product of its lists (missing keys come from the defaults); the sweep is the union of its
//! grids in file order, with settings that cannot matter normalised away (SDE settings of ODE
//! runs, the interval of unguided runs) and duplicates dropped. Relative paths are relative to
//! the sweep file's folder.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::pipeline::backbone::Backbone;
use crate::pipeline::evaluate::Metric;
use crate::pipeline::settings::{GuidanceSettings, InputSettings, Method, Origin, SamplerSettings};
use crate::sampling::guidance::IntervalMode;
use crate::sampling::path::DiffusionForm;
use crate::sampling::sde::LastStep;

/// The sweep file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    name: String,
    model: ModelSection,
    evaluation: EvaluationSection,
    #[serde(default)]
    run: RunSection,
    #[serde(default)]
    defaults: Axes,
    #[serde(default)]
    grid: Vec<Axes>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSection {
    weights: PathBuf,
    /// The SD-VAE that decodes latents; none for a pixel-space model (in_channels 3).
    vae: Option<PathBuf>,
    #[serde(default = "default_model")]
    model: String,
    #[serde(default = "default_image_size")]
    image_size: usize,
}

fn default_model() -> String {
    "SiT-XL/2".into()
}

fn default_image_size() -> usize {
    256
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluationSection {
    /// FID Inception weights, or `formula` for the formula weights (trials without downloads).
    inception: Option<String>,
    /// A toy classifier (scripts/train_toy.py) in the Inception's place, for the toy study.
    classifier: Option<PathBuf>,
    /// `"REF.npz"`, or `{ toy_data_seed = 1, per_class = 100 }`.
    reference: Option<toml::Value>,
    #[serde(default)]
    metrics: Vec<String>,
    #[serde(default)]
    backbones: Vec<BackboneSection>,
    /// Bootstrap resamples per run config for the metrics' intervals (0: none).
    #[serde(default = "default_bootstrap")]
    bootstrap: usize,
    #[serde(default)]
    bootstrap_seed: u64,
    /// Coverage of the percentile intervals.
    #[serde(default = "default_level")]
    interval_level: f64,
}

/// `{ toy_data_seed = 1, per_class = 100 }`: images of the procedural toy data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToyDataSection {
    toy_data_seed: u32,
    per_class: usize,
}

fn default_bootstrap() -> usize {
    100
}

fn default_level() -> f64 {
    0.9
}

/// Bootstrap settings of the merge.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BootstrapSettings {
    pub reps: usize,
    pub seed: u64,
    pub level: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackboneSection {
    backbone: String,
    weights: PathBuf,
    metrics: Vec<String>,
    /// LPIPS: feature rows are kept for the first K samples of each class.
    per_class: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunSection {
    #[serde(default = "default_unit_size")]
    unit_size: usize,
    /// Keep the decoded images (`arr_0`) in the unit files.
    #[serde(default)]
    keep_images: bool,
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            unit_size: default_unit_size(),
            keep_images: false,
        }
    }
}

fn default_unit_size() -> usize {
    32
}

/// Settings lists of `[defaults]` or one `[[grid]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Axes {
    cfg: Option<Vec<f64>>,
    /// `ode-euler`, `ode-heun`, `ode-dopri5`, `sde-euler`, `sde-heun`.
    sampler: Option<Vec<String>>,
    steps: Option<Vec<usize>>,
    /// `[lo, hi]` pairs, or `[]` for none.
    cfg_interval: Option<Vec<Vec<f64>>>,
    interval_mode: Option<Vec<String>>,
    diffusion_form: Option<Vec<String>>,
    diffusion_norm: Option<Vec<f64>>,
    last_step: Option<Vec<String>>,
    last_step_size: Option<Vec<f64>>,
    seed: Option<Vec<u64>>,
    samples_per_class: Option<Vec<usize>>,
    /// Defaults only: the classes sampled (default: all of the model's).
    classes: Option<Vec<i64>>,
}

/// One point of the sweep: every setting of a sampling run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunConfig {
    pub id: String,
    /// Serialised as `mode` and `method`.
    #[serde(flatten)]
    pub method: Method,
    pub steps: usize,
    pub cfg: f64,
    pub cfg_interval: Option<(f64, f64)>,
    pub interval_mode: Option<IntervalMode>,
    pub diffusion_form: Option<DiffusionForm>,
    pub diffusion_norm: Option<f64>,
    pub last_step: Option<LastStep>,
    pub last_step_size: Option<f64>,
    pub seed: u64,
    pub samples_per_class: usize,
    pub num_samples: usize,
}

/// A diversity backbone of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct BackboneSpec {
    pub backbone: Backbone,
    pub weights: PathBuf,
    pub metrics: Vec<Metric>,
    /// LPIPS rows kept per class (None: every sample).
    pub per_class: Option<usize>,
}

impl BackboneSpec {
    pub fn is_lpips(&self) -> bool {
        matches!(self.backbone, Backbone::LpipsAlex | Backbone::LpipsVgg)
    }

    /// The unit-file key of its rows: `<backbone>.embedding` or `<backbone>.lpips`.
    pub fn key(&self) -> String {
        let kind = if self.is_lpips() {
            "lpips"
        } else {
            "embedding"
        };
        format!("{}.{kind}", self.backbone.name())
    }
}

/// The network of the quality metrics: the FID Inception, or the toy study's classifier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum InceptionSource {
    File(PathBuf),
    /// `models::synthetic::inception(2015)`: random, for trying the pipeline out.
    Formula,
    /// `models::toy_classifier`: 64-d `pool` features and 10 `logits`, no `spatial`.
    ToyClassifier(PathBuf),
}

/// The reference set of the metrics that compare with one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Reference {
    /// An ADM reference batch (images or statistics) or a features file.
    File(PathBuf),
    /// `per_class` images of each class of the procedural toy data (src/toy.rs) under a seed.
    ToyData { seed: u32, per_class: usize },
}

impl Reference {
    /// A name for messages.
    pub fn describe(&self) -> String {
        match self {
            Reference::File(p) => p.display().to_string(),
            Reference::ToyData { seed, per_class } => {
                format!("toy data (seed {seed}, {per_class} per class)")
            }
        }
    }
}

/// A parsed and expanded sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    pub name: String,
    /// SHA-256 of the sweep file's bytes.
    pub file_sha256: String,
    pub weights: PathBuf,
    /// None: a pixel-space model, whose samples are the images.
    pub vae: Option<PathBuf>,
    pub model: String,
    pub image_size: usize,
    pub inception: Option<InceptionSource>,
    pub reference: Option<Reference>,
    pub quality_metrics: Vec<Metric>,
    pub backbones: Vec<BackboneSpec>,
    pub unit_size: usize,
    pub keep_images: bool,
    pub bootstrap: BootstrapSettings,
    /// None: all of the model's classes.
    pub classes: Option<Vec<i64>>,
    pub configs: Vec<RunConfig>,
}

fn parse_enum<T: std::str::FromStr<Err = String>>(what: &str, s: &str) -> Result<T> {
    s.parse().map_err(|e| anyhow::anyhow!("{what} {e}"))
}

/// `Metric` from its command-line name.
fn parse_metric(s: &str) -> Result<Metric> {
    parse_enum("metric", s)
}

/// An enum's serialised name, lower case.
pub fn enum_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_lowercase))
        .unwrap_or_default()
}

/// A float in a config id: `1.5`, `2`, `0.04`.
fn fmt_f(v: f64) -> String {
    format!("{v}")
}

impl Sweep {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read sweep file {}", path.display()))?;
        let file: SweepFile =
            toml::from_str(&text).with_context(|| format!("sweep file {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new(""));
        Self::from_file(file, dir, &text).with_context(|| format!("sweep file {}", path.display()))
    }

    fn from_file(f: SweepFile, dir: &Path, text: &str) -> Result<Self> {
        let resolve = |p: &Path| -> PathBuf {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        ensure!(
            !f.name.is_empty()
                && f.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "name {:?}: use letters, digits, '-', '_' or '.'",
            f.name
        );
        ensure!(f.run.unit_size >= 1, "[run] unit_size must be at least 1");
        let quality_metrics = f
            .evaluation
            .metrics
            .iter()
            .map(|m| parse_metric(m))
            .collect::<Result<Vec<_>>>()?;
        for m in &quality_metrics {
            ensure!(
                !matches!(
                    m,
                    Metric::Diversity | Metric::Vendi | Metric::Lpips | Metric::FdDinov2
                ),
                "[evaluation] metrics: {} belongs to a backbone (list it under its [[evaluation.backbones]])",
                crate::pipeline::evaluate::names(&[*m])
            );
        }
        let inception = match (f.evaluation.inception.as_deref(), &f.evaluation.classifier) {
            (Some(_), Some(_)) => {
                bail!(
                    "[evaluation] sets both inception and classifier: the quality metrics use one"
                )
            }
            (None, None) => None,
            (None, Some(p)) => Some(InceptionSource::ToyClassifier(resolve(p))),
            (Some("formula"), None) => Some(InceptionSource::Formula),
            (Some(p), None) => Some(InceptionSource::File(resolve(Path::new(p)))),
        };
        ensure!(
            quality_metrics.is_empty() || inception.is_some(),
            "[evaluation] metrics {} need the FID Inception: set inception = \"FILE\" (or \"formula\"), or a toy classifier = \"FILE\"",
            crate::pipeline::evaluate::names(&quality_metrics)
        );
        if matches!(inception, Some(InceptionSource::ToyClassifier(_))) {
            ensure!(
                !quality_metrics.contains(&Metric::Sfid),
                "[evaluation] metrics: sfid needs the Inception's spatial features; the toy classifier has none"
            );
        }
        let reference = match &f.evaluation.reference {
            None => None,
            Some(toml::Value::String(p)) => Some(Reference::File(resolve(Path::new(p)))),
            Some(v) => {
                let t: ToyDataSection = v.clone().try_into().map_err(|e| {
                    anyhow::anyhow!(
                        "[evaluation] reference: expected \"REF.npz\" or {{ toy_data_seed = 1, per_class = 100 }} ({})",
                        e.to_string().trim()
                    )
                })?;
                ensure!(
                    t.per_class >= 2,
                    "[evaluation] reference: per_class {} must be at least 2",
                    t.per_class
                );
                Some(Reference::ToyData {
                    seed: t.toy_data_seed,
                    per_class: t.per_class,
                })
            }
        };
        ensure!(
            f.evaluation.bootstrap != 1,
            "[evaluation] bootstrap = 1: use 0 (no intervals) or at least 2 resamples"
        );
        ensure!(
            f.evaluation.interval_level > 0.0 && f.evaluation.interval_level < 1.0,
            "[evaluation] interval_level {} must lie in (0, 1)",
            f.evaluation.interval_level
        );
        let mut backbones = Vec::new();
        for b in &f.evaluation.backbones {
            let backbone: Backbone = parse_enum("backbone", &b.backbone)?;
            ensure!(
                backbone != Backbone::Inception,
                "backbone inception: the Inception is set by [evaluation] inception"
            );
            let metrics = b
                .metrics
                .iter()
                .map(|m| parse_metric(m))
                .collect::<Result<Vec<_>>>()?;
            let spec = BackboneSpec {
                backbone,
                weights: resolve(&b.weights),
                metrics,
                per_class: b.per_class,
            };
            for m in &spec.metrics {
                let fits = match m {
                    Metric::Lpips => spec.is_lpips(),
                    Metric::FdDinov2 => backbone == Backbone::Dinov2L14,
                    Metric::Diversity | Metric::Vendi => !spec.is_lpips(),
                    _ => false,
                };
                ensure!(
                    fits,
                    "backbone {}: metric {} does not fit it (diversity and vendi need an embedding backbone, lpips an LPIPS one, fd_dinov2 dinov2-l14; quality metrics go under [evaluation] metrics)",
                    backbone.name(),
                    crate::pipeline::evaluate::names(&[*m])
                );
            }
            ensure!(
                spec.per_class.is_none_or(|k| k >= 1),
                "backbone {}: per_class must be at least 1",
                backbone.name()
            );
            ensure!(
                !backbones
                    .iter()
                    .any(|x: &BackboneSpec| x.backbone == backbone),
                "backbone {} is listed twice",
                backbone.name()
            );
            backbones.push(spec);
        }
        let needs_ref = quality_metrics.iter().any(|m| m.needs_reference())
            || backbones
                .iter()
                .any(|b| b.metrics.contains(&Metric::FdDinov2));
        ensure!(
            !needs_ref || reference.is_some(),
            "the metrics compare with a reference: set [evaluation] reference = \"REF.npz\" (an ADM reference batch, images or a features file), or {{ toy_data_seed = 1, per_class = 100 }}"
        );
        ensure!(
            f.grid.iter().all(|g| g.classes.is_none()),
            "classes is a [defaults] setting, not a grid axis"
        );
        if let Some(c) = &f.defaults.classes {
            ensure!(!c.is_empty(), "[defaults] classes is empty");
            let mut s = c.clone();
            s.sort_unstable();
            s.dedup();
            ensure!(s.len() == c.len(), "[defaults] classes lists a class twice");
        }
        let configs = expand(&f)?;
        ensure!(!configs.is_empty(), "the sweep expands to no run config");
        Ok(Sweep {
            name: f.name,
            file_sha256: crate::io::sha256_hex(text.as_bytes()),
            weights: resolve(&f.model.weights),
            vae: f.model.vae.as_deref().map(resolve),
            model: f.model.model,
            image_size: f.model.image_size,
            inception,
            reference,
            quality_metrics,
            backbones,
            unit_size: f.run.unit_size,
            keep_images: f.run.keep_images,
            bootstrap: BootstrapSettings {
                reps: f.evaluation.bootstrap,
                seed: f.evaluation.bootstrap_seed,
                level: f.evaluation.interval_level,
            },
            classes: f.defaults.classes.clone(),
            configs,
        })
    }
}

/// Every grid's product, normalised and deduplicated, in file order.
fn expand(f: &SweepFile) -> Result<Vec<RunConfig>> {
    let grids: Vec<Axes> = if f.grid.is_empty() {
        vec![Axes::default()]
    } else {
        f.grid.clone()
    };
    let d = &f.defaults;
    let mut out: Vec<RunConfig> = Vec::new();
    for (gi, g) in grids.iter().enumerate() {
        let pick = |a: &Option<Vec<f64>>, b: &Option<Vec<f64>>, dflt: f64| {
            a.clone().or_else(|| b.clone()).unwrap_or(vec![dflt])
        };
        let strings = |a: &Option<Vec<String>>, b: &Option<Vec<String>>, dflt: &str| {
            a.clone()
                .or_else(|| b.clone())
                .unwrap_or(vec![dflt.to_string()])
        };
        // Unset axes take the settings' own defaults, as `sitdiv sample` does.
        let (sd, gd) = (SamplerSettings::default(), GuidanceSettings::default());
        let cfgs = pick(&g.cfg, &d.cfg, gd.cfg);
        let samplers = strings(&g.sampler, &d.sampler, &sd.method.to_string());
        let steps = g
            .steps
            .clone()
            .or(d.steps.clone())
            .unwrap_or(vec![sd.steps]);
        let intervals = g
            .cfg_interval
            .clone()
            .or(d.cfg_interval.clone())
            .unwrap_or(vec![vec![]]);
        let modes = strings(
            &g.interval_mode,
            &d.interval_mode,
            gd.cfg_interval_mode.name(),
        );
        let forms = strings(
            &g.diffusion_form,
            &d.diffusion_form,
            sd.diffusion_form.name(),
        );
        let norms = pick(&g.diffusion_norm, &d.diffusion_norm, sd.diffusion_norm);
        let lasts = strings(&g.last_step, &d.last_step, sd.last_step.name());
        let last_sizes = pick(&g.last_step_size, &d.last_step_size, sd.last_step_size);
        let seeds = g
            .seed
            .clone()
            .or(d.seed.clone())
            .unwrap_or(vec![InputSettings::default().seed]);
        let ks = g
            .samples_per_class
            .clone()
            .or(d.samples_per_class.clone())
            .with_context(|| {
                format!(
                    "grid {}: samples_per_class is not set (here or in [defaults])",
                    gi + 1
                )
            })?;
        for lists in [
            cfgs.len(),
            samplers.len(),
            steps.len(),
            intervals.len(),
            modes.len(),
        ]
        .into_iter()
        .chain([
            forms.len(),
            norms.len(),
            lasts.len(),
            last_sizes.len(),
            seeds.len(),
            ks.len(),
        ]) {
            ensure!(lists > 0, "grid {}: an empty list selects nothing", gi + 1);
        }
        for &seed in &seeds {
            for &k in &ks {
                ensure!(k >= 1, "samples_per_class must be at least 1");
                for sampler in &samplers {
                    let (mode, method) = sampler.split_once('-').with_context(|| {
                        format!("sampler {sampler:?}: expected MODE-METHOD, e.g. ode-euler or sde-euler")
                    })?;
                    let method = Method::parse(mode, method, Origin::SweepFile)?;
                    let sde = matches!(method, Method::Sde(_));
                    for &st in &steps {
                        for &cfg in &cfgs {
                            for iv in &intervals {
                                let interval = match iv.as_slice() {
                                    [] => None,
                                    [lo, hi] => Some((*lo, *hi)),
                                    _ => bail!("cfg_interval {iv:?}: expected [lo, hi] or []"),
                                };
                                for mode_s in &modes {
                                    let imode: IntervalMode = parse_enum("interval_mode", mode_s)?;
                                    for form_s in &forms {
                                        let form: DiffusionForm =
                                            parse_enum("diffusion_form", form_s)?;
                                        for &norm in &norms {
                                            for last_s in &lasts {
                                                let last: LastStep =
                                                    parse_enum("last_step", last_s)?;
                                                for &ls in &last_sizes {
                                                    let c = normalise(RawPoint {
                                                        method,
                                                        steps: st,
                                                        cfg,
                                                        interval,
                                                        imode,
                                                        sde,
                                                        form,
                                                        norm,
                                                        last,
                                                        last_size: ls,
                                                        seed,
                                                        k,
                                                    });
                                                    if !out.iter().any(|o| o.id == c.id) {
                                                        out.push(c);
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

struct RawPoint {
    method: Method,
    steps: usize,
    cfg: f64,
    interval: Option<(f64, f64)>,
    imode: IntervalMode,
    sde: bool,
    form: DiffusionForm,
    norm: f64,
    last: LastStep,
    last_size: f64,
    seed: u64,
    k: usize,
}

/// Drops what cannot change the samples and names the result.
fn normalise(p: RawPoint) -> RunConfig {
    let interval = if p.cfg > 1.0 { p.interval } else { None };
    let interval_mode = interval.map(|_| p.imode);
    let (form, norm, last, last_size) = if p.sde {
        let size = (p.last != LastStep::None).then_some(p.last_size);
        (Some(p.form), Some(p.norm), Some(p.last), size)
    } else {
        (None, None, None, None)
    };
    let mut id = format!("{}-{}", p.method, p.steps);
    if let (Some(f), Some(n), Some(l)) = (form, norm, last) {
        id += &format!("-{}-norm{}-{}", enum_name(&f), fmt_f(n), enum_name(&l));
        if let Some(s) = last_size {
            id += &fmt_f(s);
        }
    }
    id += &format!("-cfg{}", fmt_f(p.cfg));
    if let (Some((lo, hi)), Some(m)) = (interval, interval_mode) {
        id += &format!("-int{}-{}-{}", fmt_f(lo), fmt_f(hi), enum_name(&m));
    }
    id += &format!("-k{}-seed{}", p.k, p.seed);
    RunConfig {
        id,
        method: p.method,
        steps: p.steps,
        cfg: p.cfg,
        cfg_interval: interval,
        interval_mode,
        diffusion_form: form,
        diffusion_norm: norm,
        last_step: last,
        last_step_size: last_size,
        seed: p.seed,
        samples_per_class: p.k,
        num_samples: 0,
    }
}
