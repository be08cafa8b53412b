//! Sweep files (TOML) and their expansion into run configs and work units.
//!
//! A sweep names the model, the evaluation (Inception, reference, backbones, metrics), a
//! `[defaults]` table of sampler settings and any number of `[[grid]]` tables, which axes.rs
//! expands into run configs. Relative paths are relative to the sweep file's folder.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::axes::{expand, parse_enum, Axes};
use crate::pipeline::backbone::Backbone;
use crate::pipeline::evaluate::Metric;
use crate::sampling::guidance::GuidanceMethod;

pub use super::axes::{enum_name, RunConfig};

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
    /// Autoguidance's guide: a weaker SiT of the same family.
    guide_weights: Option<PathBuf>,
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
    /// Autoguidance's guide (runs with `guidance = "autoguidance"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guide_weights: Option<PathBuf>,
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

/// `Metric` from its command-line name.
fn parse_metric(s: &str) -> Result<Metric> {
    parse_enum("metric", s)
}

/// A path of the sweep file, relative to its folder unless absolute.
fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// The settings of a sweep file's text; a value of the wrong type or an unknown key is named by
/// its key path (`model.weights`, `grid[1].cfg`), line and column.
fn parse(text: &str) -> Result<SweepFile> {
    // A syntax error: toml's own message shows the line.
    let de = toml::Deserializer::parse(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let e = e.into_inner();
        match e.span() {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                anyhow::anyhow!("{key} (line {line}, column {column}): {}", e.message())
            }
            None => anyhow::anyhow!("{key}: {}", e.message()),
        }
    })
}

impl Sweep {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read sweep file {}", path.display()))?;
        let file = parse(&text).with_context(|| format!("sweep file {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new(""));
        Self::from_file(file, dir, &text).map_err(|e| super::locate::in_file(path, &text, e))
    }

    fn from_file(f: SweepFile, dir: &Path, text: &str) -> Result<Self> {
        ensure!(
            !f.name.is_empty()
                && f.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "name {:?}: use letters, digits, '-', '_' or '.'",
            f.name
        );
        ensure!(f.run.unit_size >= 1, "[run] unit_size must be at least 1");
        let e = &f.evaluation;
        let (quality_metrics, inception) = e.quality(dir)?;
        let reference = e.reference(dir)?;
        let bootstrap = e.bootstrap()?;
        let backbones = e.backbones(dir)?;
        let needs_ref = quality_metrics.iter().any(|m| m.needs_reference())
            || backbones
                .iter()
                .any(|b| b.metrics.iter().any(|m| m.uses_reference_embedding()));
        ensure!(
            !needs_ref || reference.is_some(),
            "the metrics compare with a reference: set [evaluation] reference = \"REF.npz\" (an ADM reference batch, images or a features file), or {{ toy_data_seed = 1, per_class = 100 }}"
        );
        check_classes(&f.defaults, &f.grid)?;
        let configs = expand(&f.defaults, &f.grid)?;
        ensure!(!configs.is_empty(), "the sweep expands to no run config");
        if let Some(c) = configs
            .iter()
            .find(|c| c.guidance == GuidanceMethod::Autoguidance)
        {
            ensure!(
                f.model.guide_weights.is_some(),
                "run config {} uses guidance = \"autoguidance\": set [model] guide_weights to the weaker SiT that guides",
                c.id
            );
        }
        Ok(Sweep {
            name: f.name,
            file_sha256: crate::io::sha256_hex(text.as_bytes()),
            weights: resolve(dir, &f.model.weights),
            guide_weights: f.model.guide_weights.as_deref().map(|p| resolve(dir, p)),
            vae: f.model.vae.as_deref().map(|p| resolve(dir, p)),
            model: f.model.model,
            image_size: f.model.image_size,
            inception,
            reference,
            quality_metrics,
            backbones,
            unit_size: f.run.unit_size,
            keep_images: f.run.keep_images,
            bootstrap,
            classes: f.defaults.classes,
            configs,
        })
    }
}

/// `classes` is a `[defaults]` setting: a non-empty list without repeats.
fn check_classes(defaults: &Axes, grids: &[Axes]) -> Result<()> {
    ensure!(
        grids.iter().all(|g| g.classes.is_none()),
        "classes is a [defaults] setting, not a grid axis"
    );
    if let Some(c) = &defaults.classes {
        ensure!(!c.is_empty(), "[defaults] classes is empty");
        let mut s = c.clone();
        s.sort_unstable();
        s.dedup();
        ensure!(s.len() == c.len(), "[defaults] classes lists a class twice");
    }
    Ok(())
}

impl EvaluationSection {
    /// The quality metrics and the network they need.
    fn quality(&self, dir: &Path) -> Result<(Vec<Metric>, Option<InceptionSource>)> {
        let metrics = self
            .metrics
            .iter()
            .map(|m| parse_metric(m))
            .collect::<Result<Vec<_>>>()?;
        for m in &metrics {
            ensure!(
                !m.uses_backbone(),
                "[evaluation] metrics: {} belongs to a backbone (list it under its [[evaluation.backbones]])",
                crate::pipeline::evaluate::names(&[*m])
            );
        }
        let inception = match (self.inception.as_deref(), &self.classifier) {
            (Some(_), Some(_)) => {
                bail!(
                    "[evaluation] sets both inception and classifier: the quality metrics use one"
                )
            }
            (None, None) => None,
            (None, Some(p)) => Some(InceptionSource::ToyClassifier(resolve(dir, p))),
            (Some("formula"), None) => Some(InceptionSource::Formula),
            (Some(p), None) => Some(InceptionSource::File(resolve(dir, Path::new(p)))),
        };
        ensure!(
            metrics.is_empty() || inception.is_some(),
            "[evaluation] metrics {} need the FID Inception: set inception = \"FILE\" (or \"formula\"), or a toy classifier = \"FILE\"",
            crate::pipeline::evaluate::names(&metrics)
        );
        if matches!(inception, Some(InceptionSource::ToyClassifier(_))) {
            ensure!(
                !metrics.contains(&Metric::Sfid),
                "[evaluation] metrics: sfid needs the Inception's spatial features; the toy classifier has none"
            );
        }
        Ok((metrics, inception))
    }

    fn reference(&self, dir: &Path) -> Result<Option<Reference>> {
        Ok(match &self.reference {
            None => None,
            Some(toml::Value::String(p)) => Some(Reference::File(resolve(dir, Path::new(p)))),
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
        })
    }

    fn bootstrap(&self) -> Result<BootstrapSettings> {
        ensure!(
            self.bootstrap != 1,
            "[evaluation] bootstrap = 1: use 0 (no intervals) or at least 2 resamples"
        );
        ensure!(
            self.interval_level > 0.0 && self.interval_level < 1.0,
            "[evaluation] interval_level {} must lie in (0, 1)",
            self.interval_level
        );
        Ok(BootstrapSettings {
            reps: self.bootstrap,
            seed: self.bootstrap_seed,
            level: self.interval_level,
        })
    }

    fn backbones(&self, dir: &Path) -> Result<Vec<BackboneSpec>> {
        let mut backbones: Vec<BackboneSpec> = Vec::new();
        for b in &self.backbones {
            let spec = b.spec(dir)?;
            ensure!(
                !backbones.iter().any(|x| x.backbone == spec.backbone),
                "backbone {} is listed twice",
                spec.backbone.name()
            );
            backbones.push(spec);
        }
        Ok(backbones)
    }
}

impl BackboneSection {
    fn spec(&self, dir: &Path) -> Result<BackboneSpec> {
        let backbone: Backbone = parse_enum("backbone", &self.backbone)?;
        ensure!(
            backbone != Backbone::Inception,
            "backbone inception: the Inception is set by [evaluation] inception"
        );
        let metrics = self
            .metrics
            .iter()
            .map(|m| parse_metric(m))
            .collect::<Result<Vec<_>>>()?;
        let spec = BackboneSpec {
            backbone,
            weights: resolve(dir, &self.weights),
            metrics,
            per_class: self.per_class,
        };
        for m in &spec.metrics {
            let fits = match m {
                Metric::Lpips => spec.is_lpips(),
                Metric::FdDinov2 => backbone == Backbone::Dinov2L14,
                Metric::Cmmd => backbone == Backbone::ClipL14_336,
                Metric::Diversity | Metric::Vendi => !spec.is_lpips(),
                _ => false,
            };
            ensure!(
                fits,
                "backbone {}: metric {} does not fit it (diversity and vendi need an embedding backbone, lpips an LPIPS one, fd_dinov2 dinov2-l14, cmmd clip-l14-336; quality metrics go under [evaluation] metrics)",
                backbone.name(),
                crate::pipeline::evaluate::names(&[*m])
            );
        }
        ensure!(
            spec.per_class.is_none_or(|k| k >= 1),
            "backbone {}: per_class must be at least 1",
            backbone.name()
        );
        Ok(spec)
    }
}
