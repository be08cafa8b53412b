//! The plan of a sweep (its run configs cut into work units) and the unit files: one `.npz` per
//! unit with a `.manifest.json` holding its SHA-256, written data-last through a temporary name.
//! A unit counts as done only when both exist, the checksum matches and the manifest describes
//! the same config, range, weights and contents as the current sweep.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use super::fault::FaultHook;
use super::spec::{RunConfig, Sweep};
use crate::backend::Precision;
use crate::io::sha256_hex;
use crate::io::{manifest_path, read_checked, write_atomic, write_checked};
use crate::models::sit::SiTConfig;
use crate::pipeline::guidance_settings::GuidanceSettings;
use crate::pipeline::settings::{
    InputSettings, ModelChoice, Origin, OutputSettings, SampleJob, SamplerSettings, ShardSettings,
};
use crate::pipeline::Unit;
use crate::sampling::guidance::GuidanceMethod;
use crate::weights::WeightFile;

/// One work unit: a run config × a class × a range of global sample indices.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedUnit {
    /// Position of its run config in the plan.
    pub config: usize,
    pub class: i64,
    pub unit: Unit,
}

/// The expanded sweep with the model's classes resolved.
pub struct Plan {
    pub sweep: Sweep,
    pub out: PathBuf,
    pub classes: Vec<i64>,
    pub configs: Vec<RunConfig>,
    pub units: Vec<PlannedUnit>,
    /// SHA-256 of every input file, as unit manifests record them.
    pub hashes: Hashes,
}

/// SHA-256 of the weights (and reference) a unit depends on.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Hashes {
    pub sit: String,
    /// None for a pixel-space model.
    pub vae: Option<String>,
    pub inception: Option<String>,
    /// (backbone name, sha256) in sweep order.
    pub backbones: Vec<(String, String)>,
}

fn file_sha(path: &Path, what: &str) -> Result<String> {
    let f = WeightFile::open(path).with_context(|| format!("{what} weights"))?;
    Ok(sha256_hex(f.bytes()))
}

/// Bounds on a sweep's size, far above any study (50 000 samples × a few hundred configs), so a
/// mistyped number fails at once instead of exhausting memory.
const MAX_SAMPLES: usize = 1 << 32;
const MAX_UNITS: usize = 100_000_000;

impl Plan {
    /// Expands the sweep, checks every config's sampler settings and the weights files, and
    /// hashes the weights.
    pub fn new(sweep: Sweep, out: &Path) -> Result<Self> {
        let file = WeightFile::open(&sweep.weights).context("[model] weights")?;
        let model = match SiTConfig::from_metadata(&file)? {
            Some(c) => c,
            None => SiTConfig::preset(&sweep.model, sweep.image_size)?,
        };
        ensure!(
            sweep.vae.is_some() || model.in_channels == 3,
            "{}: the model samples {} latent channels; set [model] vae to the VAE that decodes them (only a pixel-space model, in_channels 3, needs none)",
            sweep.weights.display(),
            model.in_channels
        );
        let classes: Vec<i64> = match &sweep.classes {
            Some(c) => {
                if let Some(bad) = c
                    .iter()
                    .find(|&&l| l < 0 || l as usize >= model.num_classes)
                {
                    bail!(
                        "[defaults] classes: class {bad} is outside 0..{} (the model's classes)",
                        model.num_classes
                    );
                }
                c.clone()
            }
            None => (0..model.num_classes as i64).collect(),
        };
        let mut configs = sweep.configs.clone();
        let mut units = Vec::new();
        let mut num_units = 0usize;
        for (ci, c) in configs.iter_mut().enumerate() {
            c.num_samples = c
                .samples_per_class
                .checked_mul(classes.len())
                .filter(|&n| n <= MAX_SAMPLES)
                .with_context(|| {
                    format!(
                        "run config {}: samples_per_class {} × {} classes is more than {MAX_SAMPLES} samples",
                        c.id,
                        c.samples_per_class,
                        classes.len()
                    )
                })?;
            num_units += c.num_samples.div_ceil(sweep.unit_size);
            ensure!(
                num_units <= MAX_UNITS,
                "the sweep expands to more than {MAX_UNITS} work units: raise [run] unit_size"
            );
            let job = sample_job(&sweep, c, &classes);
            job.schedule()
                .with_context(|| format!("run config {}", c.id))?;
            if job.guidance.guidance().is_some() {
                ensure!(
                    model.label_rows() > model.num_classes,
                    "run config {}: cfg {} needs the null-class embedding, which {} lacks",
                    c.id,
                    c.cfg,
                    sweep.weights.display()
                );
            }
            // `unit_size` consecutive samples in class order (sample i has class
            // classes[i / K]): a unit may span classes, so a GPU gets full batches however few
            // samples each class has. It is named by the class of its first sample.
            let n = c.num_samples;
            for (index, start) in (0..n).step_by(sweep.unit_size).enumerate() {
                units.push(PlannedUnit {
                    config: ci,
                    class: classes[start / c.samples_per_class],
                    unit: Unit {
                        index,
                        start,
                        end: (start + sweep.unit_size).min(n),
                    },
                });
            }
        }
        let hashes = Hashes::of(&sweep, &file)?;
        Ok(Plan {
            sweep,
            out: out.to_path_buf(),
            classes,
            configs,
            units,
            hashes,
        })
    }

    /// `plan.json`: the run configs and their unit counts (no paths, times or hosts).
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "sweep": self.sweep.name,
            "sweep_sha256": self.sweep.file_sha256,
            "unit_size": self.sweep.unit_size,
            "classes": self.classes,
            "num_units": self.units.len(),
            "configs": self.configs.iter().enumerate().map(|(i, c)| serde_json::json!({
                "config": c,
                "units": self.units.iter().filter(|u| u.config == i).count(),
            })).collect::<Vec<_>>(),
        })
    }

    /// Writes `plan.json` into the output folder (identical bytes from every task).
    pub fn write(&self) -> Result<()> {
        crate::io::probe_folder(&self.out)?;
        let text = serde_json::to_string_pretty(&self.summary())? + "\n";
        let path = self.out.join("plan.json");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            write_atomic(&path, text.as_bytes())?;
        }
        Ok(())
    }

    /// The units of shard `i` of `n`: a contiguous block of the plan's unit list.
    pub fn shard(&self, i: usize, n: usize) -> Result<&[PlannedUnit]> {
        ensure!(
            n >= 1 && i < n,
            "--shard-index {i} must be below --num-shards {n}"
        );
        let k = self.units.len();
        Ok(&self.units[k * i / n..k * (i + 1) / n])
    }

    pub fn unit_file(&self, u: &PlannedUnit) -> PathBuf {
        self.out
            .join("units")
            .join(&self.configs[u.config].id)
            .join(format!(
                "c{}-{:08}-{:08}.npz",
                u.class, u.unit.start, u.unit.end
            ))
    }

    /// The quality network's arrays in a unit: `pool`, `spatial` (Inception only) and `logits`.
    pub fn quality_keys(&self) -> Vec<String> {
        match &self.sweep.inception {
            None => Vec::new(),
            Some(super::spec::InceptionSource::ToyClassifier(_)) => {
                vec!["pool".into(), "logits".into()]
            }
            Some(_) => ["pool", "spatial", "logits"].map(String::from).to_vec(),
        }
    }

    /// The npz keys every unit must hold under the current evaluation settings.
    pub fn required_keys(&self) -> Vec<String> {
        // The unit's image batch (sitdiv sample's layout), then its features.
        let mut k = Vec::new();
        if self.sweep.keep_images {
            k.push("arr_0".to_string());
        }
        k.extend(["arr_1".to_string(), "indices".to_string()]);
        k.extend(self.quality_keys());
        for b in &self.sweep.backbones {
            k.push(b.key());
            if b.is_lpips() {
                k.push(format!("{}.indices", b.backbone.name()));
            }
        }
        k
    }

    /// The manifest fields a done unit must match.
    pub fn identity(&self, u: &PlannedUnit) -> serde_json::Value {
        serde_json::json!({
            "config": self.configs[u.config],
            "class": u.class,
            "start": u.unit.start,
            "end": u.unit.end,
            "weights_sha256": self.hashes,
        })
    }

    /// Whether a unit is done, missing or must be redone.
    pub fn state(&self, u: &PlannedUnit) -> UnitState {
        let data = self.unit_file(u);
        let mpath = manifest_path(&data);
        if !data.exists() || !mpath.exists() {
            return UnitState::Missing;
        }
        let check = || -> Result<()> {
            let (_, m) = read_checked(&data)?;
            ensure!(
                m["unit"] == self.identity(u),
                "made with other settings or weights"
            );
            let have: Vec<String> = serde_json::from_value(m["contents"].clone())?;
            let missing: Vec<String> = self
                .required_keys()
                .into_iter()
                .filter(|k| !have.contains(k))
                .collect();
            ensure!(missing.is_empty(), "lacks {}", missing.join(", "));
            Ok(())
        };
        match check() {
            Ok(()) => UnitState::Done,
            Err(e) => UnitState::Invalid(format!("{e:#}")),
        }
    }
}

impl Plan {
    /// The precision every unit's backbones ran in (`eval_precision` of their manifests; units
    /// of older versions ran every network in `precision`). Units that disagree are an error:
    /// their features would not be comparable.
    pub fn eval_precision(&self) -> Result<Precision> {
        let mut seen: Option<(Precision, PathBuf)> = None;
        for u in &self.units {
            let mpath = manifest_path(&self.unit_file(u));
            let m: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(&mpath)
                    .with_context(|| format!("cannot read {}", mpath.display()))?,
            )
            .with_context(|| format!("{}: not JSON", mpath.display()))?;
            let field = Some(&m["eval_precision"])
                .filter(|v| !v.is_null())
                .unwrap_or(&m["precision"]);
            let p = match field {
                serde_json::Value::Null => Precision::Fp32,
                v => serde_json::from_value(v.clone())
                    .with_context(|| format!("{}: eval_precision {v}", mpath.display()))?,
            };
            match &seen {
                None => seen = Some((p, mpath)),
                Some((q, first)) => ensure!(
                    *q == p,
                    "units embedded in different precisions cannot be merged: {} ({q}) and {} \
                     ({p}); run `sitdiv sweep run` for one set again with the other's --eval-precision",
                    first.display(),
                    mpath.display()
                ),
            }
        }
        Ok(seen.map_or(Precision::Fp32, |(p, _)| p))
    }
}

impl Hashes {
    /// SHA-256 of every input file of `sweep` (`file`: its SiT weights, already open).
    fn of(sweep: &Sweep, file: &WeightFile) -> Result<Self> {
        Ok(Hashes {
            sit: sha256_hex(file.bytes()),
            vae: match &sweep.vae {
                Some(p) => Some(file_sha(p, "[model] vae")?),
                None => None,
            },
            inception: match &sweep.inception {
                Some(super::spec::InceptionSource::File(p)) => {
                    Some(file_sha(p, "[evaluation] inception")?)
                }
                Some(super::spec::InceptionSource::ToyClassifier(p)) => {
                    Some(file_sha(p, "[evaluation] classifier")?)
                }
                Some(super::spec::InceptionSource::Formula) => Some("formula-seed-2015".into()),
                None => None,
            },
            backbones: sweep
                .backbones
                .iter()
                .map(|b| {
                    Ok((
                        b.backbone.name().to_string(),
                        file_sha(&b.weights, &format!("backbone {}", b.backbone.name()))?,
                    ))
                })
                .collect::<Result<_>>()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum UnitState {
    Done,
    Missing,
    /// Present but not usable: a checksum mismatch, other settings, missing arrays.
    Invalid(String),
}
/// The settings of run config `c`: its sampler and guidance over the settings' defaults, class-major
/// samples of the sweep's classes. Errors name the sweep's keys.
pub fn sample_job(sweep: &Sweep, c: &RunConfig, classes: &[i64]) -> SampleJob {
    let (sd, gd) = (SamplerSettings::default(), GuidanceSettings::default());
    SampleJob {
        model: ModelChoice {
            weights: Some(sweep.weights.clone()),
            guide_weights: sweep
                .guide_weights
                .clone()
                .filter(|_| c.guidance == GuidanceMethod::Autoguidance),
            synthetic: false,
            model: sweep.model.clone(),
            image_size: sweep.image_size,
        },
        sampler: SamplerSettings {
            method: c.method,
            steps: c.steps,
            diffusion_form: c.diffusion_form.unwrap_or(sd.diffusion_form),
            diffusion_norm: c.diffusion_norm.unwrap_or(sd.diffusion_norm),
            last_step: c.last_step.unwrap_or(sd.last_step),
            last_step_size: c.last_step_size.unwrap_or(sd.last_step_size),
            ..sd
        },
        guidance: GuidanceSettings {
            cfg: c.cfg,
            cfg_interval: c.cfg_interval,
            cfg_interval_mode: c.interval_mode.unwrap_or(gd.cfg_interval_mode),
            method: c.guidance,
            params: c.params,
            ..gd
        },
        inputs: InputSettings {
            seed: c.seed,
            classes: Some(classes.to_vec()),
            samples_per_class: Some(c.samples_per_class),
            ..InputSettings::default()
        },
        outputs: OutputSettings::default(),
        shard: ShardSettings {
            unit_size: sweep.unit_size,
            ..ShardSettings::default()
        },
        precision: Precision::Fp32,
        origin: Origin::SweepFile,
    }
}

/// Writes a unit: manifest (with the data's checksum) first, then the data through a temporary
/// name; appends a line to `completed.log` once the data is in place.
pub fn write_unit(
    plan: &Plan,
    u: &PlannedUnit,
    bytes: &[u8],
    mut manifest: serde_json::Value,
    fault: (&FaultHook, usize),
) -> Result<()> {
    let data = plan.unit_file(u);
    manifest["unit"] = plan.identity(u);
    write_checked(&data, bytes, manifest, || {
        fault.0.before_write(fault.1, &data, bytes)
    })?;
    let line = format!(
        "{} {}\n",
        data.strip_prefix(&plan.out).unwrap_or(&data).display(),
        sha256_hex(bytes)
    );
    let log = plan.out.join("completed.log");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .with_context(|| format!("cannot append to {}", log.display()))
}

/// The output folder: `--out`, else `runs/<sweep name>`.
fn out_dir(sweep: &Sweep, out: Option<&Path>) -> PathBuf {
    out.map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("runs").join(&sweep.name))
}

pub(crate) fn load_plan(sweep_file: &Path, out: Option<&Path>) -> Result<Plan> {
    let sweep = Sweep::load(sweep_file)?;
    let dir = out_dir(&sweep, out);
    Plan::new(sweep, &dir).map_err(|e| {
        let text = std::fs::read_to_string(sweep_file).unwrap_or_default();
        super::locate::in_file(sweep_file, &text, e)
    })
}
