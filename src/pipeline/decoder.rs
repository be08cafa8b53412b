//! What turns samples into uint8 images: the SD-VAE decoder of a latent model, or the
//! quantisation of a pixel-space model's RGB samples.

use std::path::Path;

use anyhow::{ensure, Result};

use crate::backend::Backend;
use crate::models::vae::{to_uint8_nhwc, AutoencoderKL};
use crate::weights::WeightFile;

/// Decodes latents (N, C, h, w) in one call into uint8 (N, H, W, 3).
fn decode_images<B: Backend>(
    be: &B,
    vae: &AutoencoderKL<B>,
    z: &[f32],
    n: usize,
    h: usize,
    w: usize,
) -> Result<Vec<u8>> {
    ensure!(
        z.len() == n * vae.config.latent_channels * h * w,
        "VAE decode: {} latent values for ({n}, {}, {h}, {w})",
        z.len(),
        vae.config.latent_channels
    );
    let x = vae.decode(be, z, n, h, w, None)?;
    Ok(to_uint8_nhwc(
        &x,
        n,
        vae.config.out_channels,
        h * vae.scale(),
        w * vae.scale(),
    ))
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

    /// Samples (n, C, h, w) → uint8 (n, H, W, 3) in one decoder call (the caller's unit is the
    /// batch; images do not depend on it).
    pub fn images(&self, be: &B, z: &[f32], n: usize, (h, w): (usize, usize)) -> Result<Vec<u8>> {
        match self {
            Decoder::Vae(v) => decode_images(be, v, z, n, h, w),
            Decoder::Pixels => {
                ensure!(
                    z.len() == n * 3 * h * w,
                    "pixel samples: {} values for ({n}, 3, {h}, {w})",
                    z.len()
                );
                Ok(to_uint8_nhwc(z, n, 3, h, w))
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
