//! How a file spells the decoder's tensors: diffusers names (current and legacy attention
//! names) or the original LDM ones, with or without the `first_stage_model.` prefix; and the
//! architecture read from the shapes when a file has no config.

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

/// Maps diffusers names to the names a file uses.
pub(super) struct Names<'a> {
    file: &'a dyn TensorSource,
    prefix: &'static str,
    style: Style,
    /// Up blocks in the file.
    up_blocks: usize,
}

impl Names<'_> {
    /// Finds the prefix and the naming style of `file`, and counts its up blocks.
    pub(super) fn detect(file: &dyn TensorSource) -> Result<Names<'_>> {
        for prefix in ["", "first_stage_model."] {
            let has = |n: &str| file.tensor_shape(&format!("{prefix}{n}")).is_some();
            if !has("decoder.conv_in.weight") {
                continue;
            }
            let style =
                if has("decoder.mid.attn_1.q.weight") || has("decoder.mid.block_1.conv1.weight") {
                    Style::Ldm
                } else if has("decoder.mid_block.attentions.0.query.weight") {
                    Style::Legacy
                } else {
                    Style::Diffusers
                };
            let block = if style == Style::Ldm {
                "decoder.up."
            } else {
                "decoder.up_blocks."
            };
            let up_blocks = file
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
                up_blocks,
            });
        }
        let sample: Vec<&str> = file.tensor_names().into_iter().take(4).collect();
        bail!(
            "{} is not an SD-VAE decoder: no decoder.conv_in.weight (with or without the first_stage_model. prefix); its tensors start {:?}",
            file.origin(),
            sample
        )
    }

    /// The file's name for a diffusers decoder key.
    pub(super) fn map(&self, key: &str) -> String {
        let k = match self.style {
            Style::Diffusers => key.to_string(),
            Style::Legacy => key
                .replace("attentions.0.to_q", "attentions.0.query")
                .replace("attentions.0.to_k", "attentions.0.key")
                .replace("attentions.0.to_v", "attentions.0.value")
                .replace("attentions.0.to_out.0", "attentions.0.proj_attn"),
            Style::Ldm => ldm_name(key, self.up_blocks),
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

    /// Checks that `cfg` describes exactly the decoder in the file: as many up blocks, and no
    /// decoder tensor that the architecture does not use (a config that disagrees with the
    /// weights must not decode silently).
    pub(super) fn check_against(&self, cfg: &VaeConfig) -> Result<()> {
        let file = self.file;
        ensure!(
            !cfg.block_out_channels.is_empty(),
            "VAE config: block_out_channels is empty"
        );
        ensure!(
            self.up_blocks == cfg.block_out_channels.len(),
            "{}: {} up blocks in the file, but the config has {} block_out_channels",
            file.origin(),
            self.up_blocks,
            cfg.block_out_channels.len()
        );
        let wanted: HashSet<String> = cfg.expected_tensors().keys().map(|k| self.map(k)).collect();
        let extra: Vec<&str> = file
            .tensor_names()
            .into_iter()
            .filter(|n| {
                let bare = n.strip_prefix(self.prefix).unwrap_or(n);
                (bare.starts_with("decoder.") || bare.starts_with("post_quant_conv."))
                    && !wanted.contains(*n)
            })
            .collect();
        ensure!(
            extra.is_empty(),
            "{}: {} decoder tensor(s) that the config ({:?} channels, {} layers per block, attention {}) does not use, e.g. {}",
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

/// The LDM name of a diffusers decoder key, for a decoder of `nb` up blocks (LDM counts them
/// from the other end).
fn ldm_name(key: &str, nb: usize) -> String {
    let k = key
        .replace("decoder.conv_norm_out", "decoder.norm_out")
        .replace("decoder.mid_block.resnets.0", "decoder.mid.block_1")
        .replace("decoder.mid_block.resnets.1", "decoder.mid.block_2")
        .replace(
            "decoder.mid_block.attentions.0.group_norm",
            "decoder.mid.attn_1.norm",
        )
        .replace(
            "decoder.mid_block.attentions.0.to_q",
            "decoder.mid.attn_1.q",
        )
        .replace(
            "decoder.mid_block.attentions.0.to_k",
            "decoder.mid.attn_1.k",
        )
        .replace(
            "decoder.mid_block.attentions.0.to_v",
            "decoder.mid.attn_1.v",
        )
        .replace(
            "decoder.mid_block.attentions.0.to_out.0",
            "decoder.mid.attn_1.proj_out",
        )
        .replace("conv_shortcut", "nin_shortcut");
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
    let lc = shape("post_quant_conv.weight").context("VAE: no post_quant_conv.weight")?[0];
    let mut rev = Vec::new();
    for i in 0..names.up_blocks {
        rev.push(
            shape(&format!("decoder.up_blocks.{i}.resnets.0.conv2.weight"))
                .context("VAE: missing an up-block resnet")?[0],
        );
    }
    let layers = (0..)
        .take_while(|j| shape(&format!("decoder.up_blocks.0.resnets.{j}.conv1.weight")).is_some())
        .count()
        .saturating_sub(1);
    let out = shape("decoder.conv_out.weight").context("VAE: no decoder.conv_out.weight")?[0];
    Ok(VaeConfig {
        latent_channels: lc,
        block_out_channels: rev.into_iter().rev().collect(),
        layers_per_block: layers,
        norm_num_groups: 32,
        scaling_factor: 0.18215,
        out_channels: out,
        mid_block_add_attention: shape("decoder.mid_block.attentions.0.to_q.weight").is_some(),
    })
}
