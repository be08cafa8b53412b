//! `sitdiv decode`: sampler latents → SD-VAE → uint8 NHWC images in an ADM-style `.npz`.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use serde::Serialize;

use crate::backend::Backend;
use crate::io::{npy, npz, write_with_manifest};
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

/// What turns samples into uint8 images: the SD-VAE, or nothing for a pixel-space model (whose
/// samples are RGB in [−1, 1], quantised as upstream quantises the VAE's output).
pub enum Decoder<B: Backend> {
    Vae(Box<AutoencoderKL<B>>),
    Pixels,
}

impl<B: Backend> Decoder<B> {
    /// The VAE at `vae`, checked against the model's channels; without one the model must
    /// sample RGB pixels. Returns the VAE file's SHA-256 too.
    pub fn load(
        be: &B,
        vae: Option<&Path>,
        model_channels: usize,
    ) -> Result<(Self, Option<String>)> {
        let Some(path) = vae else {
            ensure!(
                model_channels == 3,
                "the model samples {model_channels} latent channels: give the VAE that decodes them (--vae / [model] vae); only a pixel-space model (in_channels 3) needs none"
            );
            return Ok((Decoder::Pixels, None));
        };
        let (v, sha) = load_vae(be, path)?;
        ensure!(
            v.config.latent_channels == model_channels,
            "{}: the VAE decodes {} latent channels, but the model samples {model_channels}",
            path.display(),
            v.config.latent_channels,
        );
        Ok((Decoder::Vae(Box::new(v)), Some(sha)))
    }

    /// Image side for samples of side `s`.
    pub fn side(&self, s: usize) -> usize {
        match self {
            Decoder::Vae(v) => s * v.scale(),
            Decoder::Pixels => s,
        }
    }

    pub fn out_channels(&self) -> usize {
        match self {
            Decoder::Vae(v) => v.config.out_channels,
            Decoder::Pixels => 3,
        }
    }

    /// Samples (N, C, s, s) → uint8 (N, side, side, 3), the VAE run `batch` at a time.
    pub fn images(&self, be: &B, z: &[f32], n: usize, s: usize, batch: usize) -> Result<Vec<u8>> {
        match self {
            Decoder::Vae(v) => decode_images(be, v, z, n, s, s, batch),
            Decoder::Pixels => {
                ensure!(
                    z.len() == n * 3 * s * s,
                    "pixel samples: {} values for ({n}, 3, {s}, {s})",
                    z.len()
                );
                Ok(to_uint8_nhwc(z, n, 3, s, s))
            }
        }
    }

    /// The manifest fields that describe it.
    pub fn describe(&self) -> serde_json::Value {
        match self {
            Decoder::Vae(v) => serde_json::json!({ "vae_config": v.config }),
            Decoder::Pixels => serde_json::json!({ "vae_config": null, "pixel_space": true }),
        }
    }
}

/// Loads a VAE file, naming the file in every error.
pub fn load_vae<B: Backend>(be: &B, path: &Path) -> Result<(AutoencoderKL<B>, String)> {
    let file = WeightFile::open(path)?;
    let vae = AutoencoderKL::load(be, &file)?;
    Ok((vae, crate::io::sha256_hex(file.bytes())))
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
        npy: npy::encode_u8(&[n, oh, ow, vae.config.out_channels], &images)?,
    };
    write_with_manifest(&job.out, &manifest, |p| npz::write(p, &[arr]))?;
    log::info!("wrote {} ({n} images, {oh}×{ow})", job.out.display());
    Ok(())
}
