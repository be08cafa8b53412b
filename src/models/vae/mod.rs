//! The SD-VAE (diffusers `AutoencoderKL`), eval mode: the decoder (`post_quant_conv` +
//! `Decoder`) here, the encoder in [`encoder`]. Reads diffusers key names (current and legacy
//! attention names) and the original LDM names, with or without the `first_stage_model.` prefix
//! ([`names`]).

mod blocks;
mod config;
pub mod encoder;
mod names;

use anyhow::{ensure, Context, Result};

use super::layers::Taps;
use crate::backend::{Backend, Op};
use crate::weights::source::TensorSource;
pub use blocks::{
    Attention, Conv2d, DownEncoderBlock2D, GroupNorm, ResnetBlock2D, UpDecoderBlock2D,
};
pub use config::VaeConfig;
pub use encoder::{Encoder, Posterior};
use names::{infer_config, Half, Names};

/// diffusers `AutoencoderKL` decode path.
pub struct AutoencoderKL<B: Backend> {
    pub config: VaeConfig,
    post_quant_conv: Conv2d<B>,
    conv_in: Conv2d<B>,
    mid_resnets: [ResnetBlock2D<B>; 2],
    mid_attention: Option<Attention<B>>,
    up_blocks: Vec<UpDecoderBlock2D<B>>,
    conv_norm_out: GroupNorm<B>,
    conv_out: Conv2d<B>,
}

impl<B: Backend> AutoencoderKL<B> {
    /// The backend ops its forward calls (tests/models/model_ops.rs checks the list).
    pub const OPS: &'static [Op] = &[
        Op::Add,
        Op::Attention,
        Op::Conv2d,
        Op::GroupNorm,
        Op::Linear,
        Op::Silu,
        Op::Transpose,
        Op::UpsampleNearest2x,
    ];

    /// Loads the decoder from `file`; the config comes from its metadata, else from the shapes.
    pub fn load(be: &B, file: &dyn TensorSource) -> Result<Self> {
        crate::backend::require(be, "the SD-VAE decoder", Self::OPS)?;
        let names = Names::detect(file, Half::Decoder)?;
        let config = match file.metadata_entry("config") {
            Some(json) => serde_json::from_str::<VaeConfig>(json).with_context(|| {
                format!(
                    "{}: __metadata__ config is not an AutoencoderKL config",
                    file.origin()
                )
            })?,
            None => infer_config(&names)?,
        };
        names.check_against(&config)?;
        let cfg = &config;
        let g = cfg.norm_num_groups;
        let rev: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let top = rev[0];
        let lc = cfg.latent_channels;
        let mid = |j: usize| {
            ResnetBlock2D::load(
                be,
                &names,
                &format!("decoder.mid_block.resnets.{j}"),
                top,
                top,
                g,
            )
        };
        let mut up_blocks = Vec::new();
        let mut ci = top;
        for (i, &co) in rev.iter().enumerate() {
            // Every block but the last ends with an upsampler.
            let upsample = i + 1 < rev.len();
            let layers = cfg.layers_per_block;
            up_blocks.push(UpDecoderBlock2D::load(
                be,
                &names,
                i,
                (ci, co),
                upsample,
                layers,
                g,
            )?);
            ci = co;
        }
        let last = *rev.last().unwrap_or(&top);
        Ok(AutoencoderKL {
            post_quant_conv: Conv2d::load(be, &names, "post_quant_conv", lc, lc, 1)?,
            conv_in: Conv2d::load(be, &names, "decoder.conv_in", lc, top, 3)?,
            mid_resnets: [mid(0)?, mid(1)?],
            mid_attention: if cfg.mid_block_add_attention {
                Some(Attention::load(
                    be,
                    &names,
                    "decoder.mid_block.attentions.0",
                    top,
                    g,
                )?)
            } else {
                None
            },
            up_blocks,
            conv_norm_out: GroupNorm::load(be, &names, "decoder.conv_norm_out", last, g)?,
            conv_out: Conv2d::load(be, &names, "decoder.conv_out", last, cfg.out_channels, 3)?,
            config,
        })
    }

    /// Output side of a latent side (×2 per upsampling block).
    pub fn scale(&self) -> usize {
        1 << (self.config.block_out_channels.len() - 1)
    }

    /// `vae.decode(z / scaling_factor).sample` for sampler-scale latents z (N, C, h, w) →
    /// (N, 3, H, W), unbounded.
    pub fn decode(
        &self,
        be: &B,
        z: &[f32],
        n: usize,
        h: usize,
        w: usize,
        mut taps: Option<&mut Taps>,
    ) -> Result<Vec<f32>> {
        let lc = self.config.latent_channels;
        ensure!(
            z.len() == n * lc * h * w,
            "VAE decode: {} latent values for ({n}, {lc}, {h}, {w})",
            z.len()
        );
        let mut tap = |name: &str, buf: &B::Buf| -> Result<()> {
            if let Some(t) = taps.as_deref_mut() {
                t.insert(name.to_string(), be.download(buf)?);
            }
            Ok(())
        };
        let s = self.config.scaling_factor as f32;
        let scaled: Vec<f32> = z.iter().map(|&v| v / s).collect(); // true division, as on the CPU
        let x = be.upload(&scaled)?;
        let x = self.post_quant_conv.forward(be, &x, n, h, w)?;
        tap("tap.post_quant_conv.out", &x)?;
        let mut x = self.conv_in.forward(be, &x, n, h, w)?;
        tap("tap.decoder.conv_in.out", &x)?;
        x = self.mid_resnets[0].forward(be, &x, n, h, w)?;
        tap("tap.decoder.mid_block.resnets.0.out", &x)?;
        if let Some(a) = &self.mid_attention {
            x = a.forward(be, &x, n, h * w)?;
            tap("tap.decoder.mid_block.attentions.0.out", &x)?;
        }
        x = self.mid_resnets[1].forward(be, &x, n, h, w)?;
        tap("tap.decoder.mid_block.out", &x)?;
        let (mut hh, mut ww) = (h, w);
        for (i, block) in self.up_blocks.iter().enumerate() {
            (x, (hh, ww)) = block.forward(be, x, n, (hh, ww), &mut |j, x| {
                tap(&format!("tap.decoder.up_blocks.{i}.resnets.{j}.out"), x)
            })?;
            tap(&format!("tap.decoder.up_blocks.{i}.out"), &x)?;
        }
        let x = self.conv_norm_out.forward(be, &x, n, hh * ww, false)?;
        tap("tap.decoder.conv_norm_out.out", &x)?;
        let x = be.silu(&x)?;
        let x = self.conv_out.forward(be, &x, n, hh, ww)?;
        be.download(&x)
    }
}

/// The reference's uint8 conversion: `clamp(127.5·x + 128, 0, 255)` truncated, NCHW → NHWC.
pub fn to_uint8_nhwc(x: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; n * h * w * c];
    for s in 0..n {
        for ch in 0..c {
            for p in 0..h * w {
                let v = (127.5f32 * x[(s * c + ch) * h * w + p] + 128.0).clamp(0.0, 255.0);
                out[(s * h * w + p) * c + ch] = v as u8;
            }
        }
    }
    out
}
