//! `sitdiv decode`: sampler latents → SD-VAE → uint8 NHWC images in an ADM-style `.npz`.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use serde::Serialize;

use super::{npy, npz, write_with_manifest};
use crate::backend::Backend;
use crate::models::vae::{to_uint8_nhwc, AutoencoderKL};
use crate::weights::WeightFile;

#[derive(Debug, Clone, Serialize)]
pub struct DecodeJob {
    pub vae: PathBuf,
    pub latents: PathBuf,
    pub out: PathBuf,
    /// Latents decoded per call; results do not depend on it.
    pub batch: usize,
}

/// Decodes latents (N, C, h, w) in chunks of `batch` into uint8 (N, H, W, 3).
pub fn decode_images<B: Backend>(
    be: &B,
    vae: &AutoencoderKL<B>,
    z: &[f32],
    n: usize,
    h: usize,
    w: usize,
    batch: usize,
) -> Result<Vec<u8>> {
    ensure!(
        z.len() == n * vae.config.latent_channels * h * w,
        "VAE decode: {} latent values for ({n}, {}, {h}, {w})",
        z.len(),
        vae.config.latent_channels
    );
    let per = vae.config.latent_channels * h * w;
    let (oh, ow) = (h * vae.scale(), w * vae.scale());
    let mut out = Vec::with_capacity(n * oh * ow * vae.config.out_channels);
    for start in (0..n).step_by(batch.max(1)) {
        let m = batch.max(1).min(n - start);
        let x = vae.decode(be, &z[start * per..(start + m) * per], m, h, w, None)?;
        out.extend(to_uint8_nhwc(&x, m, vae.config.out_channels, oh, ow));
    }
    Ok(out)
}

/// Loads a VAE file, naming the file in every error.
pub fn load_vae<B: Backend>(be: &B, path: &Path) -> Result<(AutoencoderKL<B>, String)> {
    let file = WeightFile::open(path)?;
    let vae = AutoencoderKL::load(be, &file)?;
    Ok((vae, super::sample::sha256_hex(file.bytes())))
}

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
    let (n, h, w) = (z.shape[0], z.shape[2], z.shape[3]);
    let images = decode_images(be, &vae, &z.data, n, h, w, job.batch)?;
    let (oh, ow) = (h * vae.scale(), w * vae.scale());
    let manifest = serde_json::json!({
        "tool": "sitdiv decode",
        "version": env!("CARGO_PKG_VERSION"),
        "job": job,
        "vae_config": vae.config,
        "vae_sha256": sha,
        "device": be.name(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    });
    let arr = npz::Member {
        key: "arr_0".into(),
        npy: npz::encode_u8(&[n, oh, ow, vae.config.out_channels], &images),
    };
    write_with_manifest(&job.out, &manifest, |p| npz::write(p, &[arr]))?;
    log::info!("wrote {} ({n} images, {oh}×{ow})", job.out.display());
    Ok(())
}
