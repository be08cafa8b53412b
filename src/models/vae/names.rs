//! How a file spells the encoder's and the decoder's tensors: diffusers names (current and
//! legacy attention names) or the original LDM ones, with or without the `first_stage_model.`
//! prefix; and the architecture read from the shapes when a file has no config.

use std::collections::HashSet;

use anyhow::{bail, ensure, Context, Result};

use super::config::VaeConfig;
use crate::weights::source::TensorSource;

/// How a file spells the decoder's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// diffusers, `to_q/to_k/to_v/to_out.0`.
    Diffusers,
    /// older diffusers files, `query/key/value/proj_attn`.
    Legacy,
    /// the original LDM / CompVis checkpoint (`decoder.up.{3-i}.block.{j}`, 1×1-conv attention).
    Ldm,
}

/// The half of the autoencoder a model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Half {
    Encoder,
    Decoder,
}

impl Half {
    fn name(self) -> &'static str {
        match self {
            Half::Encoder => "encoder",
            Half::Decoder => "decoder",
        }
    }
}

/// Maps diffusers names to the names a file uses.
pub(super) struct Names<'a> {
    file: &'a dyn TensorSource,
    prefix: &'static str,
    style: Style,
    half: Half,
    /// Down blocks (encoder) or up blocks (decoder) in the file.
    blocks: usize,
}

impl Names<'_> {
    /// Finds the prefix and the naming style of `file`'s `half`, and counts its blocks.
    pub(super) fn detect(file: &dyn TensorSource, half: Half) -> Result<Names<'_>> {
        let part = half.name();
        for prefix in ["", "first_stage_model."] {
            let has = |n: &str| file.tensor_shape(&format!("{prefix}{part}.{n}")).is_some();
            if !has("conv_in.weight") {
                continue;
            }
            let style = if has("mid.attn_1.q.weight") || has("mid.block_1.conv1.weight") {
                Style::Ldm
            } else if has("mid_block.attentions.0.query.weight") {
                Style::Legacy
            } else {
                Style::Diffusers
            };
            let block = match (style, half) {
                (Style::Ldm, Half::Decoder) => "decoder.up.",
                (_, Half::Decoder) => "decoder.up_blocks.",
                (Style::Ldm, Half::Encoder) => "encoder.down.",
                (_, Half::Encoder) => "encoder.down_blocks.",
            };
            let blocks = file
                .tensor_names()
                .into_iter()
                .filter_map(|n| {
                    n.strip_prefix(prefix)?
                        .strip_prefix(block)?
                        .split('.')
                        .next()?
                        .parse::<usize>()
                        .ok()
                })
                .max()
                .map_or(0, |m| m + 1);
            return Ok(Names {
                file,
                prefix,
                style,
                half,
                blocks,
            });
        }
        let sample: Vec<&str> = file.tensor_names().into_iter().take(4).collect();
        bail!(
            "{} has no SD-VAE {part}: no {part}.conv_in.weight (with or without the first_stage_model. prefix){}; its tensors start {:?}",
            file.origin(),
            if half == Half::Encoder {
                " (convert the whole AutoencoderKL: convert_weights.py vae --encoder)"
            } else {
                ""
            },
            sample
        )
    }

    /// The file's name for a diffusers key of this half.
    pub(super) fn map(&self, key: &str) -> String {
        let k = match self.style {
            Style::Diffusers => key.to_string(),
            Style::Legacy => key
                .replace("attentions.0.to_q", "attentions.0.query")
                .replace("attentions.0.to_k", "attentions.0.key")
                .replace("attentions.0.to_v", "attentions.0.value")
                .replace("attentions.0.to_out.0", "attentions.0.proj_attn"),
            Style::Ldm => ldm_name(key, self.blocks),
        };
        format!("{}{k}", self.prefix)
    }

    /// The tensor for a diffusers key, checked against its shape.
    pub(super) fn get(&self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let name = self.map(key);
        let found = self.file.tensor_shape(&name).with_context(|| {
            format!(
                "{}: missing tensor {name} (expected shape {shape:?})",
                self.file.origin()
            )
        })?;
        // LDM attention projections are 1×1 convs: (C, C, 1, 1) has the bytes of (C, C).
        let squeezed: Vec<usize> = found.iter().copied().filter(|&d| d != 1).collect();
        let want: Vec<usize> = shape.iter().copied().filter(|&d| d != 1).collect();
        ensure!(
            found == shape || (self.style == Style::Ldm && squeezed == want),
            "{}: tensor {name}: wrong shape, expected {shape:?}, found {found:?}",
            self.file.origin(),
        );
        self.file.f32(&name)
    }

    /// Checks that `cfg` describes exactly this half of the file: as many blocks, and no tensor
    /// of the half that the architecture does not use (a config that disagrees with the weights
    /// must not run silently).
    pub(super) fn check_against(&self, cfg: &VaeConfig) -> Result<()> {
        let file = self.file;
        let part = self.half.name();
        ensure!(
            !cfg.block_out_channels.is_empty(),
            "VAE config: block_out_channels is empty"
        );
        ensure!(
            self.blocks == cfg.block_out_channels.len(),
            "{}: {} {part} blocks in the file, but the config has {} block_out_channels",
            file.origin(),
            self.blocks,
            cfg.block_out_channels.len()
        );
        let (expected, quant) = match self.half {
            Half::Decoder => (cfg.expected_tensors(), "post_quant_conv."),
            Half::Encoder => (cfg.expected_encoder_tensors(), "quant_conv."),
        };
        let wanted: HashSet<String> = expected.keys().map(|k| self.map(k)).collect();
        let extra: Vec<&str> = file
            .tensor_names()
            .into_iter()
            .filter(|n| {
                let bare = n.strip_prefix(self.prefix).unwrap_or(n);
                (bare.starts_with(&format!("{part}.")) || bare.starts_with(quant))
                    && !wanted.contains(*n)
            })
            .collect();
        ensure!(
            extra.is_empty(),
            "{}: {} {part} tensor(s) that the config ({:?} channels, {} layers per block, attention {}) does not use, e.g. {}",
            file.origin(),
            extra.len(),
            cfg.block_out_channels,
            cfg.layers_per_block,
            cfg.mid_block_add_attention,
            extra[..extra.len().min(3)].join(", ")
        );
        Ok(())
    }
}

/// The LDM name of a diffusers key, for a decoder of `nb` up blocks (LDM counts them from the
/// other end; the encoder's down blocks keep their order).
fn ldm_name(key: &str, nb: usize) -> String {
    let mut k = key
        .replace(".conv_norm_out", ".norm_out")
        .replace(".mid_block.resnets.0", ".mid.block_1")
        .replace(".mid_block.resnets.1", ".mid.block_2")
        .replace(".mid_block.attentions.0.group_norm", ".mid.attn_1.norm")
        .replace(".mid_block.attentions.0.to_q", ".mid.attn_1.q")
        .replace(".mid_block.attentions.0.to_k", ".mid.attn_1.k")
        .replace(".mid_block.attentions.0.to_v", ".mid.attn_1.v")
        .replace(".mid_block.attentions.0.to_out.0", ".mid.attn_1.proj_out")
        .replace("conv_shortcut", "nin_shortcut");
    // encoder.down_blocks.{i}.resnets.{j} → encoder.down.{i}.block.{j}; downsamplers.0 → downsample.
    if k.starts_with("encoder.down_blocks.") {
        k = k
            .replacen("encoder.down_blocks.", "encoder.down.", 1)
            .replacen(".resnets.", ".block.", 1)
            .replacen(".downsamplers.0.", ".downsample.", 1);
    }
    // decoder.up_blocks.{i}.resnets.{j} → decoder.up.{nb−1−i}.block.{j}; upsamplers.0 → upsample.
    if let Some(rest) = k.strip_prefix("decoder.up_blocks.") {
        if let Some((i, tail)) = rest.split_once('.') {
            if let Ok(i) = i.parse::<usize>() {
                let tail = tail.replacen("resnets.", "block.", 1).replacen(
                    "upsamplers.0.",
                    "upsample.",
                    1,
                );
                return format!("decoder.up.{}.{tail}", nb - 1 - i);
            }
        }
    }
    k
}

/// The architecture from tensor shapes, for files without a config (GroupNorm groups: 32).
pub(super) fn infer_config(names: &Names) -> Result<VaeConfig> {
    let shape = |key: &str| names.file.tensor_shape(&names.map(key));
    let mut cfg = VaeConfig::sd();
    cfg.norm_num_groups = 32;
    match names.half {
        Half::Decoder => {
            cfg.latent_channels =
                shape("post_quant_conv.weight").context("VAE: no post_quant_conv.weight")?[0];
            let mut rev = Vec::new();
            for i in 0..names.blocks {
                rev.push(
                    shape(&format!("decoder.up_blocks.{i}.resnets.0.conv2.weight"))
                        .context("VAE: missing an up-block resnet")?[0],
                );
            }
            cfg.block_out_channels = rev.into_iter().rev().collect();
            cfg.layers_per_block = (0..)
                .take_while(|j| {
                    shape(&format!("decoder.up_blocks.0.resnets.{j}.conv1.weight")).is_some()
                })
                .count()
                .saturating_sub(1);
            cfg.out_channels =
                shape("decoder.conv_out.weight").context("VAE: no decoder.conv_out.weight")?[0];
        }
        Half::Encoder => {
            cfg.latent_channels =
                shape("quant_conv.weight").context("VAE: no quant_conv.weight")?[0] / 2;
            cfg.block_out_channels = (0..names.blocks)
                .map(|i| {
                    shape(&format!("encoder.down_blocks.{i}.resnets.0.conv2.weight"))
                        .map(|s| s[0])
                        .context("VAE: missing a down-block resnet")
                })
                .collect::<Result<_>>()?;
            cfg.layers_per_block = (0..)
                .take_while(|j| {
                    shape(&format!("encoder.down_blocks.0.resnets.{j}.conv1.weight")).is_some()
                })
                .count();
            cfg.in_channels =
                shape("encoder.conv_in.weight").context("VAE: no encoder.conv_in.weight")?[1];
        }
    }
    let part = names.half.name();
    cfg.mid_block_add_attention =
        shape(&format!("{part}.mid_block.attentions.0.to_q.weight")).is_some();
    Ok(cfg)
}
