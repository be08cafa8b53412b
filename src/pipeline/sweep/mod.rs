//! `sitdiv sweep plan|run|status|merge`: a sweep file expanded into work units (run config ×
//! class × index range), the units of one shard sampled, decoded and embedded into verified unit
//! files, progress reported, and the finished sweep merged into one JSON per run config and a
//! tidy `results.csv`.
//!
//! Output folder layout:
//! ```text
//! plan.json                          run configs and unit counts
//! units/<config>/c<class>-<start>-<end>.npz (+ .manifest.json)
//! completed.log                      one line per unit written (path, checksum)
//! results/<config>.json (+ .manifest.json), results.csv
//! ```

mod axes;
pub mod demo;
mod fault;
mod locate;
pub mod merge;
mod quality;
mod reference;
pub mod spec;
pub mod units;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use self::fault::FaultHook;
use self::quality::QualityNet;
use self::spec::BackboneSpec;
use self::units::{load_plan, sample_job, write_unit, Plan, PlannedUnit, UnitState};

use super::decoder::Decoder;
use super::embed::Embedder;
use super::inputs::read_inputs;
use super::sample::{load_guide, load_model};
use super::unit::{LatentSource, UnitOutput, UnitRoute, UnitSampler};
use crate::backend::{Backend, Precisions};
use crate::io::{npy, npz};
use crate::models::sit::SiT;
use crate::sampling::guidance::GuidanceMethod;

/// `sitdiv sweep plan`: checks the sweep, writes `plan.json` and prints the run configs.
pub fn plan(sweep_file: &Path, out: Option<&Path>, num_shards: usize) -> Result<()> {
    let plan = load_plan(sweep_file, out)?;
    ensure!(num_shards >= 1, "--num-shards must be at least 1");
    plan.write()?;
    println!(
        "sweep {}: {} run configs, {} classes, {} work units of ≤ {} samples → {}",
        plan.sweep.name,
        plan.configs.len(),
        plan.classes.len(),
        plan.units.len(),
        plan.sweep.unit_size,
        plan.out.display()
    );
    println!("| config | samples | units |");
    println!("|---|---|---|");
    for (i, c) in plan.configs.iter().enumerate() {
        let n = plan.units.iter().filter(|u| u.config == i).count();
        println!("| {} | {} | {n} |", c.id, c.num_samples);
    }
    let per = plan.shard(0, num_shards)?.len();
    println!(
        "{num_shards} shard(s): shard 0 runs {per} units (array: --array=0-{})",
        num_shards - 1
    );
    Ok(())
}

/// The networks that turn a unit's latents into its members, with the evaluation stage's
/// backends: the VAE's in the sampling precision, the backbones' in the evaluation precision.
struct Evaluators<B: Backend> {
    decode_be: B,
    embed_be: B,
    decoder: Decoder<B>,
    quality: Option<QualityNet<B>>,
    embedders: Vec<Embedder<B>>,
}

/// The SiT, autoguidance's guide, and the evaluators.
type Networks<B> = (SiT<B>, Option<SiT<B>>, Evaluators<B>);

/// The SiT on the sampling backend `be` (and autoguidance's guide when a run config uses it),
/// and the evaluators on companions of it.
fn load_networks<B: Backend>(be: &B, precisions: Precisions, plan: &Plan) -> Result<Networks<B>> {
    let job = sample_job(&plan.sweep, &plan.configs[0], &plan.classes);
    let (sit, _) = load_model(be, &job)?;
    let guide = match plan
        .configs
        .iter()
        .find(|c| c.guidance == GuidanceMethod::Autoguidance)
    {
        Some(c) => {
            let job = sample_job(&plan.sweep, c, &plan.classes);
            load_guide(be, &job, &sit.config)?.map(|(g, _)| g)
        }
        None => None,
    };
    let decode_be = be.companion(precisions.sampling)?;
    let eval = be.companion(precisions.eval)?;
    let (decoder, _) = Decoder::load(
        &decode_be,
        plan.sweep.vae.as_deref(),
        sit.config.in_channels,
    )?;
    let quality = plan
        .sweep
        .inception
        .as_ref()
        .map(|s| QualityNet::load(&eval, s))
        .transpose()?;
    let embedders = plan
        .sweep
        .backbones
        .iter()
        .map(|b| Embedder::load(&eval, b.backbone, &b.weights).map(|(e, _)| e))
        .collect::<Result<Vec<_>>>()?;
    Ok((
        sit,
        guide,
        Evaluators {
            decode_be,
            embed_be: eval,
            decoder,
            quality,
            embedders,
        },
    ))
}

/// One unit's latents, sampled by the SiT (the first stage of the unit route).
fn sample_unit<B: Backend>(
    be: &B,
    plan: &Plan,
    (sit, guide): (&SiT<B>, Option<&SiT<B>>),
    u: &PlannedUnit,
) -> Result<UnitOutput> {
    let c = &plan.configs[u.config];
    let job = sample_job(&plan.sweep, c, &plan.classes);
    let schedule = job.schedule()?;
    let inputs = read_inputs(&job, &sit.config)?;
    let route = UnitRoute {
        be,
        latents: LatentSource::Model(UnitSampler {
            be,
            model: sit,
            guide: guide.filter(|_| c.guidance == GuidanceMethod::Autoguidance),
            job: &job,
            inputs: &inputs,
            schedule: &schedule,
        }),
        decoder: None,
    };
    route
        .run(u.unit)
        .with_context(|| format!("run config {}", c.id))
}

/// The rest of the unit route: decode, then the image batch's members (as `sitdiv sample`
/// writes them), the quality network's features and each backbone's.
fn evaluate_unit<B: Backend>(
    plan: &Plan,
    nets: &Evaluators<B>,
    u: &PlannedUnit,
    latents: UnitOutput,
) -> Result<Vec<npz::Member>> {
    let c = &plan.configs[u.config];
    let out = latents.decoded(&nets.decode_be, &nets.decoder)?;
    let be = &nets.embed_be;
    let mut m = out.batch_members(plan.sweep.keep_images)?;
    let images = out.images.context("the unit route decoded no images")?;
    let dims = (u.unit.len(), images.height, images.width, images.channels);
    if let Some(net) = &nets.quality {
        m.extend(net.members(be, &images.data, dims)?);
    }
    for (spec, emb) in plan.sweep.backbones.iter().zip(&nets.embedders) {
        m.extend(backbone_members(
            be,
            spec,
            emb,
            &images.data,
            dims,
            u,
            c.samples_per_class,
        )?);
    }
    Ok(m)
}

/// A backbone's rows of a unit's images: `<backbone>.embedding`, or for LPIPS the rows of the
/// first `per_class` samples of each class (of `samples_per_class` in class order) and their
/// global `.indices`.
fn backbone_members<B: Backend>(
    be: &B,
    spec: &BackboneSpec,
    emb: &Embedder<B>,
    images: &[u8],
    dims: (usize, usize, usize, usize),
    u: &PlannedUnit,
    samples_per_class: usize,
) -> Result<Vec<npz::Member>> {
    let (n, h, w, ch) = dims;
    let per_image = h * w * ch;
    let keep: Vec<usize> = (0..n)
        .filter(|&r| {
            spec.per_class
                .is_none_or(|k| (u.unit.start + r) % samples_per_class < k)
        })
        .collect();
    let sel: Vec<u8> = keep
        .iter()
        .flat_map(|&r| images[r * per_image..(r + 1) * per_image].iter().copied())
        .collect();
    let rows = if keep.is_empty() {
        Vec::new()
    } else {
        emb.embed(be, &sel, (keep.len(), h, w, ch))?
    };
    let width = rows.len().checked_div(keep.len()).unwrap_or(0);
    let mut m = vec![npz::Member {
        key: spec.key(),
        npy: npy::encode_f32(&[keep.len(), width], &rows)?,
    }];
    if spec.is_lpips() {
        let idx: Vec<i64> = keep.iter().map(|&r| (u.unit.start + r) as i64).collect();
        m.push(npz::Member {
            key: format!("{}.indices", spec.backbone.name()),
            npy: npy::encode_i64(&[idx.len()], &idx)?,
        });
    }
    Ok(m)
}

/// `sitdiv sweep run`: the units of one shard that are not done yet.
pub fn run<B: Backend>(
    be: &B,
    sweep_file: &Path,
    out: Option<&Path>,
    shard_index: usize,
    num_shards: usize,
    precisions: Precisions,
) -> Result<()> {
    let plan = load_plan(sweep_file, out)?;
    plan.write()?;
    let mine = plan.shard(shard_index, num_shards)?;
    let todo: Vec<&PlannedUnit> = mine
        .iter()
        .filter(|u| match plan.state(u) {
            UnitState::Done => false,
            UnitState::Missing => true,
            UnitState::Invalid(why) => {
                log::warn!("{}: {why}; computing it again", plan.unit_file(u).display());
                true
            }
        })
        .collect();
    log::info!(
        "sweep {} shard {shard_index}/{num_shards}: {} units, {} done, {} to do, on {}",
        plan.sweep.name,
        mine.len(),
        mine.len() - todo.len(),
        todo.len(),
        be.name()
    );
    if todo.is_empty() {
        return Ok(());
    }
    // Three stages, each on a thread of its own, one unit in flight between two: the SiT samples
    // unit k + 1 on `be` while unit k is decoded and embedded on companion backends (on a GPU
    // their own streams) and the host packs and writes unit k − 1. Units are written in order.
    let (sit, guide, evaluators) = load_networks(be, precisions, &plan)?;
    let fault = FaultHook::from_env(shard_index);
    let samples: usize = todo.iter().map(|u| u.unit.len()).sum();
    let progress = super::progress::Progress::new(samples as u64);
    let device = be.name();
    let unit_err = |u: &PlannedUnit| format!("unit {}", plan.unit_file(u).display());
    std::thread::scope(|s| {
        let (to_eval, sampled) = std::sync::mpsc::sync_channel::<(&PlannedUnit, UnitOutput)>(1);
        let (to_write, evaluated) =
            std::sync::mpsc::sync_channel::<(usize, &PlannedUnit, Vec<npz::Member>)>(1);
        let (plan, fault, device, evaluators) = (&plan, &fault, &device, &evaluators);
        let evaluator = s.spawn(move || -> Result<()> {
            for (k, (u, latents)) in sampled.into_iter().enumerate() {
                let members =
                    evaluate_unit(plan, evaluators, u, latents).with_context(|| unit_err(u))?;
                // A closed channel means the writer failed: its error is the one to report.
                if to_write.send((k, u, members)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let stamp = Stamp {
            device,
            shard: [shard_index, num_shards],
            precisions,
        };
        let writer = s.spawn(move || write_stage(plan, evaluated, fault, stamp, progress));
        let mut sampled_all = Ok(());
        for u in &todo {
            match sample_unit(be, plan, (&sit, guide.as_ref()), u).with_context(|| unit_err(u)) {
                Ok(latents) => {
                    if to_eval.send((u, latents)).is_err() {
                        break; // the evaluator failed
                    }
                }
                Err(e) => {
                    sampled_all = Err(e);
                    break;
                }
            }
        }
        drop(to_eval);
        let join = |h: std::thread::ScopedJoinHandle<'_, Result<()>>, what: &str| {
            h.join()
                .map_err(|_| anyhow::anyhow!("the sweep's {what} thread panicked"))?
        };
        let (evaluated_all, written_all) = (join(evaluator, "evaluation"), join(writer, "writer"));
        // The units finished before a failure are on disk: a rerun resumes after them. A
        // sampling error is reported first, then an evaluation error, then a write error.
        sampled_all.and(evaluated_all).and(written_all)
    })
}

/// What every unit's manifest records of the run.
struct Stamp<'a> {
    device: &'a str,
    shard: [usize; 2],
    precisions: Precisions,
}

/// The last stage of `sweep run`: packs each evaluated unit (npz, hashes, manifest) and writes
/// it, in order.
fn write_stage(
    plan: &Plan,
    evaluated: std::sync::mpsc::Receiver<(usize, &PlannedUnit, Vec<npz::Member>)>,
    fault: &FaultHook,
    stamp: Stamp,
    progress: super::progress::Progress,
) -> Result<()> {
    for (k, u, members) in evaluated {
        let data = plan.unit_file(u);
        let bytes = npz::to_bytes(&data, &members)?;
        let manifest = crate::io::manifest(
            "sitdiv sweep run",
            stamp.device,
            serde_json::json!({
                "sweep": plan.sweep.name,
                "sweep_sha256": plan.sweep.file_sha256,
                "contents": members.iter().map(|m| m.key.clone()).collect::<Vec<_>>(),
                "shard": stamp.shard,
                "precision": stamp.precisions.sampling,
                "eval_precision": stamp.precisions.eval,
            }),
        );
        write_unit(plan, u, &bytes, manifest, (fault, k))?;
        progress.unit_done(&u.unit);
    }
    progress.finish();
    Ok(())
}

/// Every unit (one shard) then the merge, as `sitdiv demo` runs a sweep; returns the output
/// folder.
pub fn run_all<B: Backend>(
    be: &B,
    sweep_file: &Path,
    out: Option<&Path>,
    precisions: Precisions,
) -> Result<PathBuf> {
    run(be, sweep_file, out, 0, 1, precisions)?;
    merge::merge(be, sweep_file, out)?;
    Ok(load_plan(sweep_file, out)?.out)
}

/// `sitdiv sweep status`: done / to-do / invalid units, per run config and in all.
pub fn status(sweep_file: &Path, out: Option<&Path>) -> Result<()> {
    let plan = load_plan(sweep_file, out)?;
    let mut per: BTreeMap<usize, [usize; 3]> = BTreeMap::new();
    let mut invalid = Vec::new();
    for u in &plan.units {
        let e = per.entry(u.config).or_default();
        match plan.state(u) {
            UnitState::Done => e[0] += 1,
            UnitState::Missing => e[1] += 1,
            UnitState::Invalid(why) => {
                e[2] += 1;
                invalid.push(format!("{}: {why}", plan.unit_file(u).display()));
            }
        }
    }
    let total = plan.units.len();
    let done: usize = per.values().map(|v| v[0]).sum();
    println!("| config | units | done | missing | invalid |");
    println!("|---|---|---|---|---|");
    for (i, v) in &per {
        println!(
            "| {} | {} | {} | {} | {} |",
            plan.configs[*i].id,
            v.iter().sum::<usize>(),
            v[0],
            v[1],
            v[2]
        );
    }
    println!(
        "sweep {}: {done}/{total} units done ({:.1} %), {} missing, {} invalid",
        plan.sweep.name,
        100.0 * done as f64 / total.max(1) as f64,
        per.values().map(|v| v[1]).sum::<usize>(),
        invalid.len()
    );
    for line in &invalid {
        println!("invalid (will be computed again): {line}");
    }
    let leftovers = leftover_temporaries(&plan.out.join("units"));
    if leftovers > 0 {
        println!("{leftovers} temporary file(s) of interrupted writes under {} (ignored; safe to delete once no task runs)", plan.out.join("units").display());
    }
    Ok(())
}

/// `*.tmp.*` files left by writes that were killed.
fn leftover_temporaries(units: &Path) -> usize {
    let Ok(configs) = std::fs::read_dir(units) else {
        return 0;
    };
    configs
        .flatten()
        .filter_map(|c| std::fs::read_dir(c.path()).ok())
        .flat_map(|d| d.flatten())
        .filter(|f| f.file_name().to_string_lossy().contains(".tmp."))
        .count()
}
