//! `sitdiv decode`: sampler latents → SD-VAE → uint8 NHWC images in an ADM-style `.npz`.

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use super::decoder::{load_vae, Decoder};
use super::unit::{self, LatentSource, UnitRoute};
use crate::backend::Backend;
use crate::io::{npy, npz, write_with_manifest};

#[derive(Debug, Clone, Serialize)]
pub struct DecodeJob {
    pub vae: PathBuf,
    pub latents: PathBuf,
    pub out: PathBuf,
    /// Latents decoded per call (the unit size); results do not depend on it.
    pub batch: usize,
}

/// `sitdiv decode`: the latents file in units of `batch` rows, each through the unit route.
pub fn run_on<B: Backend>(be: &B, job: &DecodeJob) -> Result<()> {
    let (vae, sha) = load_vae(be, &job.vae)?;
    let z = npy::read_f32(&job.latents)?;
    let lc = vae.config.latent_channels;
    ensure!(
        z.shape.len() == 4 && z.shape[1] == lc,
        "{}: latents have shape {:?}, expected (N, {lc}, h, w) float32 for this VAE",
        job.latents.display(),
        z.shape
    );
    let manifest = crate::io::manifest(
        "sitdiv decode",
        &be.name(),
        serde_json::json!({
            "job": job,
            "vae_config": vae.config,
            "vae_sha256": sha,
        }),
    );
    let decoder = Decoder::Vae(Box::new(vae));
    let route = UnitRoute {
        be,
        latents: LatentSource::Given(&z),
        decoder: Some(&decoder),
    };
    let outputs = super::units(z.shape[0], job.batch.max(1))
        .into_iter()
        .map(|u| route.run(u))
        .collect::<Result<Vec<_>>>()?;
    let all = unit::concat(outputs).context("the latents file holds no rows")?;
    // Images only: the rows' labels and global indices are not known here.
    let mut members = all.batch_members(true)?;
    members.retain(|m| m.key == "arr_0");
    write_with_manifest(&job.out, &manifest, |p| npz::write(p, &members))?;
    if let Some(im) = &all.images {
        log::info!(
            "wrote {} ({} images, {}×{})",
            job.out.display(),
            all.unit.len(),
            im.height,
            im.width
        );
    }
    Ok(())
}
