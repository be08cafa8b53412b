//! `sitdiv sample`: validate every input up front, run the shard's work units through the unit
//! route, write the latents (cond half only) and the image batch with their manifests, atomically.

use anyhow::{bail, ensure, Context, Result};

use super::decoder::Decoder;
use super::inputs::read_inputs;
use super::progress::Progress;
use super::settings::{OutputSettings, SampleJob};
use super::shard_units;
use super::unit::{self, LatentSource, UnitOutput, UnitRoute, UnitSampler};
use crate::backend::cpu::Cpu;
use crate::backend::Backend;
use crate::io::{npy, npz, write_with_manifest};
use crate::models::sit::{SiT, SiTConfig};
use crate::models::synthetic;
use crate::sampling::guidance::GuidanceMethod;
use crate::weights::source::TensorSource;
use crate::weights::WeightFile;

/// Loads the model named by the job: a weights file (its metadata config wins over `--model`) or
/// seeded synthetic weights.
pub fn load_model<B: Backend>(be: &B, job: &SampleJob) -> Result<(SiT<B>, String)> {
    let m = &job.model;
    match (&m.weights, m.synthetic) {
        (Some(_), true) => bail!("--weights and --synthetic exclude each other"),
        (None, false) => bail!("give --weights FILE (safetensors, upstream key names) or --synthetic for seeded random weights"),
        (Some(p), false) => {
            // The name must be valid even when the file's metadata config wins over it.
            let preset = SiTConfig::preset(&m.model, m.image_size);
            let file = WeightFile::open(p)?;
            let cfg = match SiTConfig::from_metadata(&file)? {
                Some(c) => {
                    preset?;
                    c
                }
                None => preset?,
            };
            let sha = crate::io::sha256_hex(file.bytes());
            let model = SiT::load(be, &file as &dyn TensorSource, cfg)?;
            Ok((model, sha))
        }
        (None, true) => {
            let cfg = SiTConfig::preset(&m.model, m.image_size)?;
            log::warn!("using synthetic weights (seeded random init of {}): samples are not images of anything", m.model);
            let src = synthetic::sit(&cfg, 0);
            Ok((SiT::load(be, &src, cfg)?, "synthetic-seed-0".to_string()))
        }
    }
}

/// Loads autoguidance's guide model (`--guide-weights`), which must take the main model's inputs
/// and give its outputs.
pub fn load_guide<B: Backend>(
    be: &B,
    job: &SampleJob,
    main: &SiTConfig,
) -> Result<Option<(SiT<B>, String)>> {
    let auto = job.guidance.method == GuidanceMethod::Autoguidance;
    let key = job.origin.key("guide-weights");
    let p = match (&job.model.guide_weights, auto) {
        (None, false) => return Ok(None),
        (None, true) => bail!(
            "{} needs {key} FILE: the weaker SiT that guides",
            job.origin.setting("guidance", "autoguidance")
        ),
        (Some(p), false) => bail!(
            "{key} {} is for {}",
            p.display(),
            job.origin.setting("guidance", "autoguidance")
        ),
        (Some(p), true) => p,
    };
    let file = WeightFile::open(p)?;
    let cfg = match SiTConfig::from_metadata(&file)? {
        Some(c) => c,
        None => main.clone(),
    };
    let same = (cfg.input_size, cfg.in_channels, cfg.num_classes)
        == (main.input_size, main.in_channels, main.num_classes);
    ensure!(
        same,
        "{key} {}: the guide takes {}×{}×{} inputs of {} classes, the model {}×{}×{} of {}",
        p.display(),
        cfg.in_channels,
        cfg.input_size,
        cfg.input_size,
        cfg.num_classes,
        main.in_channels,
        main.input_size,
        main.input_size,
        main.num_classes
    );
    let sha = crate::io::sha256_hex(file.bytes());
    let guide = SiT::load(be, &file as &dyn TensorSource, cfg)
        .with_context(|| format!("{key} {}", p.display()))?;
    Ok(Some((guide, sha)))
}

/// Runs the job on the CPU backend.
pub fn run(job: &SampleJob) -> Result<()> {
    run_on(&Cpu, job)
}

/// Checks that the outputs asked for make sense together.
fn check_outputs(job: &SampleJob) -> Result<()> {
    let o = &job.outputs;
    match (&o.vae, &o.out) {
        (Some(_), None) => bail!(
            "--vae needs --out: the VAE decodes the samples into an image batch in --out"
        ),
        (None, None) if o.latents_out.is_none() => bail!(
            "nothing to write: give --latents-out FILE, or --out DIR (with --vae FILE for a latent model)"
        ),
        _ => {}
    }
    if o.png_grid.is_some() && o.out.is_none() {
        bail!("--png-grid needs images: give --out DIR (and --vae FILE for a latent model)");
    }
    Ok(())
}

/// Fails before any compute when an output folder cannot be created or written.
fn probe_outputs(o: &OutputSettings) -> Result<()> {
    if let Some(dir) = &o.out {
        crate::io::probe_folder(dir)?;
    }
    for f in [&o.latents_out, &o.png_grid].into_iter().flatten() {
        if let Some(dir) = f.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::io::probe_folder(dir)?;
        }
    }
    Ok(())
}

pub fn run_on<B: Backend>(be: &B, job: &SampleJob) -> Result<()> {
    let schedule = job.schedule()?;
    check_outputs(job)?;
    let (model, weights_sha) = load_model(be, job)?;
    let cfg = model.config.clone();
    let guide = load_guide(be, job, &cfg)?;
    // The decoder is loaded before any sampling, so a bad file fails fast.
    let decoder = match &job.outputs.out {
        Some(_) => Some(Decoder::load(
            be,
            job.outputs.vae.as_deref(),
            cfg.in_channels,
        )?),
        None => None,
    };
    probe_outputs(&job.outputs)?;
    check_guidance(job, &cfg)?;
    let inputs = read_inputs(job, &cfg)?;
    let sh = &job.shard;
    let units = shard_units(
        inputs.num_samples,
        sh.unit_size,
        sh.shard_index,
        sh.num_shards,
    )?;
    let total: usize = units.iter().map(super::Unit::len).sum();
    log::info!(
        "{} on {}: {total} samples in {} unit(s) of shard {}/{}, grid ({}, {}) × {}",
        job.sampler.method,
        &be.name(),
        units.len(),
        sh.shard_index,
        sh.num_shards,
        schedule.t0,
        schedule.t1,
        job.sampler.steps
    );
    let route = UnitRoute {
        be,
        latents: LatentSource::Model(UnitSampler {
            be,
            model: &model,
            guide: guide.as_ref().map(|(g, _)| g),
            job,
            inputs: &inputs,
            schedule: &schedule,
        }),
        decoder: decoder.as_ref().map(|(d, _)| d),
    };
    let progress = Progress::new(total as u64);
    let mut outputs = Vec::with_capacity(units.len());
    for u in &units {
        outputs.push(route.run(*u)?);
        progress.unit_done(u);
    }
    progress.finish();
    let Some(all) = unit::concat(outputs) else {
        bail!(
            "shard {} of {} holds no samples; nothing was written",
            sh.shard_index,
            sh.num_shards
        );
    };
    let manifest = crate::io::manifest(
        "sitdiv sample",
        &be.name(),
        serde_json::json!({
            "job": job,
            "model_config": cfg,
            "weights_sha256": weights_sha,
            "guide_weights_sha256": guide.as_ref().map(|(_, sha)| sha),
            "t0": schedule.t0,
            "t1": schedule.t1,
            "sample_eps": schedule.sample_eps,
            "units": units.iter().map(|u| [u.start, u.end]).collect::<Vec<_>>(),
            "network_forwards": all.network_forwards,
            "precision": job.precision,
        }),
    );
    write_outputs(job, &cfg, manifest, &all, decoder.as_ref())
}

/// Writes the shard's latents and its image batch (with the png grid), each with the manifest.
fn write_outputs<B: Backend>(
    job: &SampleJob,
    cfg: &SiTConfig,
    mut manifest: serde_json::Value,
    all: &UnitOutput,
    decoder: Option<&(Decoder<B>, Option<String>)>,
) -> Result<()> {
    let rows = all.unit.len();
    if let Some(path) = &job.outputs.latents_out {
        let shape = [rows, cfg.in_channels, cfg.input_size, cfg.input_size];
        write_with_manifest(path, &manifest, |p| npy::write_f32(p, &shape, &all.latents))?;
        log::info!("wrote {} ({rows} samples)", path.display());
    }
    if let (Some((decoder, vae_sha)), Some(dir), Some(im)) =
        (decoder, &job.outputs.out, &all.images)
    {
        let path = dir.join(format!("{}.npz", job.batch_name()));
        manifest["vae_sha256"] = serde_json::json!(vae_sha);
        if let (Some(m), serde_json::Value::Object(d)) =
            (manifest.as_object_mut(), decoder.describe())
        {
            m.extend(d);
        }
        let members = all.batch_members(true)?;
        write_with_manifest(&path, &manifest, |p| npz::write(p, &members))?;
        log::info!(
            "wrote {} ({rows} images, {}×{})",
            path.display(),
            im.height,
            im.width
        );
        if let Some(grid) = &job.outputs.png_grid {
            super::grid::write_png_grid(grid, &im.data, rows, im.height, im.width, im.channels)?;
            log::info!("wrote {}", grid.display());
        }
    }
    Ok(())
}

/// Refuses guidance when the weights have no null-class row.
pub fn check_guidance(job: &SampleJob, cfg: &SiTConfig) -> Result<()> {
    if job.guidance.guidance().is_some() && cfg.label_rows() == cfg.num_classes {
        bail!(
            "{} needs the null-class embedding, but these weights have none (class_dropout_prob = 0)",
            job.origin.setting("cfg", job.guidance.cfg)
        );
    }
    Ok(())
}
