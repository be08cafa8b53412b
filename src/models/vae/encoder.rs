//! The SD-VAE encoder (diffusers `AutoencoderKL`: `Encoder` + `quant_conv`) and its diagonal
//! Gaussian posterior, eval mode: images in [−1, 1] → latent moments → mean, std, samples.

use anyhow::{ensure, Context, Result};

use super::blocks::{Attention, Conv2d, DownEncoderBlock2D, GroupNorm, ResnetBlock2D};
use super::config::VaeConfig;
use super::names::{infer_config, Half, Names};
use crate::backend::{Backend, Op};
use crate::models::layers::Taps;
use crate::weights::source::TensorSource;

/// diffusers `AutoencoderKL` encode path: `Encoder` then `quant_conv`.
pub struct Encoder<B: Backend> {
    pub config: VaeConfig,
    conv_in: Conv2d<B>,
    down_blocks: Vec<DownEncoderBlock2D<B>>,
    mid_resnets: [ResnetBlock2D<B>; 2],
    mid_attention: Option<Attention<B>>,
    conv_norm_out: GroupNorm<B>,
    conv_out: Conv2d<B>,
    quant_conv: Conv2d<B>,
}

impl<B: Backend> Encoder<B> {
    /// The backend ops its forward calls (tests/models/model_ops.rs checks the list).
    pub const OPS: &'static [Op] = &[
        Op::Add,
        Op::Attention,
        Op::Conv2d,
        Op::GroupNorm,
        Op::Linear,
        Op::Transpose,
    ];

    /// Loads the encoder from `file`; the config is `config`, else the file's metadata, else
    /// read from the shapes.
    pub fn load(be: &B, file: &dyn TensorSource, config: Option<VaeConfig>) -> Result<Self> {
        crate::backend::require(be, "the SD-VAE encoder", Self::OPS)?;
        let names = Names::detect(file, Half::Encoder)?;
        let config = match (config, file.metadata_entry("config")) {
            (Some(c), _) => c,
            (None, Some(json)) => serde_json::from_str::<VaeConfig>(json).with_context(|| {
                format!(
                    "{}: __metadata__ config is not an AutoencoderKL config",
                    file.origin()
                )
            })?,
            (None, None) => infer_config(&names)?,
        };
        names.check_against(&config)?;
        let (cfg, g) = (&config, config.norm_num_groups);
        let ch = &cfg.block_out_channels;
        let top = ch[ch.len() - 1];
        let mut down_blocks = Vec::new();
        let mut ci = ch[0];
        for (i, &co) in ch.iter().enumerate() {
            let down = i + 1 < ch.len();
            let layers = cfg.layers_per_block;
            down_blocks.push(DownEncoderBlock2D::load(
                be,
                &names,
                i,
                (ci, co),
                down,
                layers,
                g,
            )?);
            ci = co;
        }
        let mid = |j: usize| {
            let key = format!("encoder.mid_block.resnets.{j}");
            ResnetBlock2D::load(be, &names, &key, top, top, g)
        };
        let lc2 = 2 * cfg.latent_channels;
        Ok(Encoder {
            conv_in: Conv2d::load(be, &names, "encoder.conv_in", cfg.in_channels, ch[0], 3)?,
            down_blocks,
            mid_resnets: [mid(0)?, mid(1)?],
            mid_attention: if cfg.mid_block_add_attention {
                let key = "encoder.mid_block.attentions.0";
                Some(Attention::load(be, &names, key, top, g)?)
            } else {
                None
            },
            conv_norm_out: GroupNorm::load(be, &names, "encoder.conv_norm_out", top, g)?,
            conv_out: Conv2d::load(be, &names, "encoder.conv_out", top, lc2, 3)?,
            quant_conv: Conv2d::load(be, &names, "quant_conv", lc2, lc2, 1)?,
            config,
        })
    }

    /// Input side over latent side (÷2 per downsampling block).
    pub fn scale(&self) -> usize {
        1 << (self.config.block_out_channels.len() - 1)
    }

    /// `quant_conv(encoder(x))` for images x (N, C, H, W) in [−1, 1]: the posterior's moments
    /// (N, 2·latent channels, H/s, W/s), the mean's channels first.
    pub fn moments(
        &self,
        be: &B,
        x: &[f32],
        n: usize,
        (h, w): (usize, usize),
        mut taps: Option<&mut Taps>,
    ) -> Result<Vec<f32>> {
        let c = self.config.in_channels;
        ensure!(
            x.len() == n * c * h * w,
            "VAE encode: {} values for images ({n}, {c}, {h}, {w})",
            x.len()
        );
        let mut tap = |name: &str, buf: &B::Buf| -> Result<()> {
            if let Some(t) = taps.as_deref_mut() {
                t.insert(name.to_string(), be.download(buf)?);
            }
            Ok(())
        };
        let x = be.upload(x)?;
        let mut x = self.conv_in.forward(be, &x, n, h, w)?;
        let (mut hh, mut ww) = (h, w);
        for (i, block) in self.down_blocks.iter().enumerate() {
            (x, (hh, ww)) = block.forward(be, x, n, (hh, ww))?;
            tap(&format!("tap.encoder.down_blocks.{i}.out"), &x)?;
        }
        x = self.mid_resnets[0].forward(be, &x, n, hh, ww)?;
        if let Some(a) = &self.mid_attention {
            x = a.forward(be, &x, n, hh * ww)?;
        }
        x = self.mid_resnets[1].forward(be, &x, n, hh, ww)?;
        tap("tap.encoder.mid_block.out", &x)?;
        let x = self.conv_norm_out.forward(be, &x, n, hh * ww, true)?;
        let x = self.conv_out.forward(be, &x, n, hh, ww)?;
        let x = self.quant_conv.forward(be, &x, n, hh, ww)?;
        be.download(&x)
    }
}

/// diffusers' `DiagonalGaussianDistribution` of the moments (N, 2C, h, w): each (N, C, h, w).
pub struct Posterior {
    pub mean: Vec<f32>,
    /// Clamped to [−30, 20].
    pub logvar: Vec<f32>,
    /// exp(logvar / 2).
    pub std: Vec<f32>,
}

impl Posterior {
    pub fn new(moments: &[f32], n: usize, latent_channels: usize) -> Result<Self> {
        let per = moments.len() / n.max(1);
        ensure!(
            n > 0 && per * n == moments.len() && per.is_multiple_of(2 * latent_channels),
            "VAE moments: {} values for {n} images of 2 × {latent_channels} channels",
            moments.len()
        );
        let half = per / 2;
        let (mut mean, mut logvar) = (Vec::with_capacity(n * half), Vec::with_capacity(n * half));
        for m in moments.chunks_exact(per) {
            mean.extend_from_slice(&m[..half]);
            logvar.extend(m[half..].iter().map(|v| v.clamp(-30.0, 20.0)));
        }
        let std = logvar.iter().map(|v| (0.5 * v).exp()).collect();
        Ok(Posterior { mean, logvar, std })
    }

    /// mean + std · noise, noise shaped as the mean.
    pub fn sample(&self, noise: &[f32]) -> Result<Vec<f32>> {
        ensure!(
            noise.len() == self.mean.len(),
            "VAE posterior: {} noise values for {} latents",
            noise.len(),
            self.mean.len()
        );
        Ok(self
            .mean
            .iter()
            .zip(&self.std)
            .zip(noise)
            .map(|((m, s), z)| m + s * z)
            .collect())
    }
}
