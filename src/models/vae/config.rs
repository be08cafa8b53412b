//! The decoder half of diffusers' `AutoencoderKL` config, and the tensors it implies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The decoder half of diffusers' `AutoencoderKL` config (other keys are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    #[serde(default = "d_latent")]
    pub latent_channels: usize,
    #[serde(default = "d_channels")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "d_layers")]
    pub layers_per_block: usize,
    #[serde(default = "d_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "d_scaling")]
    pub scaling_factor: f64,
    #[serde(default = "d_out")]
    pub out_channels: usize,
    #[serde(default = "d_attn")]
    pub mid_block_add_attention: bool,
}

fn d_latent() -> usize {
    4
}
fn d_channels() -> Vec<usize> {
    vec![128, 256, 512, 512]
}
fn d_layers() -> usize {
    2
}
fn d_groups() -> usize {
    32
}
fn d_scaling() -> f64 {
    0.18215
}
fn d_out() -> usize {
    3
}
fn d_attn() -> bool {
    true
}

impl VaeConfig {
    /// The SD-VAE (sd-vae-ft-ema / -mse) decoder.
    pub fn sd() -> Self {
        VaeConfig {
            latent_channels: d_latent(),
            block_out_channels: d_channels(),
            layers_per_block: d_layers(),
            norm_num_groups: d_groups(),
            scaling_factor: d_scaling(),
            out_channels: d_out(),
            mid_block_add_attention: d_attn(),
        }
    }

    /// Every decoder tensor (diffusers names) with its shape.
    pub fn expected_tensors(&self) -> BTreeMap<String, Vec<usize>> {
        let mut t = BTreeMap::new();
        let conv =
            |t: &mut BTreeMap<String, Vec<usize>>, key: &str, ci: usize, co: usize, k: usize| {
                t.insert(format!("{key}.weight"), vec![co, ci, k, k]);
                t.insert(format!("{key}.bias"), vec![co]);
            };
        let norm = |t: &mut BTreeMap<String, Vec<usize>>, key: &str, c: usize| {
            t.insert(format!("{key}.weight"), vec![c]);
            t.insert(format!("{key}.bias"), vec![c]);
        };
        let resnet = |t: &mut BTreeMap<String, Vec<usize>>, key: &str, ci: usize, co: usize| {
            norm(t, &format!("{key}.norm1"), ci);
            conv(t, &format!("{key}.conv1"), ci, co, 3);
            norm(t, &format!("{key}.norm2"), co);
            conv(t, &format!("{key}.conv2"), co, co, 3);
            if ci != co {
                conv(t, &format!("{key}.conv_shortcut"), ci, co, 1);
            }
        };
        let rev: Vec<usize> = self.block_out_channels.iter().rev().copied().collect();
        let (lc, top) = (self.latent_channels, rev[0]);
        conv(&mut t, "post_quant_conv", lc, lc, 1);
        conv(&mut t, "decoder.conv_in", lc, top, 3);
        resnet(&mut t, "decoder.mid_block.resnets.0", top, top);
        resnet(&mut t, "decoder.mid_block.resnets.1", top, top);
        if self.mid_block_add_attention {
            norm(&mut t, "decoder.mid_block.attentions.0.group_norm", top);
            for p in ["to_q", "to_k", "to_v", "to_out.0"] {
                t.insert(
                    format!("decoder.mid_block.attentions.0.{p}.weight"),
                    vec![top, top],
                );
                t.insert(
                    format!("decoder.mid_block.attentions.0.{p}.bias"),
                    vec![top],
                );
            }
        }
        let mut ci = top;
        for (i, &co) in rev.iter().enumerate() {
            for j in 0..=self.layers_per_block {
                resnet(
                    &mut t,
                    &format!("decoder.up_blocks.{i}.resnets.{j}"),
                    if j == 0 { ci } else { co },
                    co,
                );
            }
            if i + 1 < rev.len() {
                conv(
                    &mut t,
                    &format!("decoder.up_blocks.{i}.upsamplers.0.conv"),
                    co,
                    co,
                    3,
                );
            }
            ci = co;
        }
        let last = *rev.last().unwrap_or(&top);
        norm(&mut t, "decoder.conv_norm_out", last);
        conv(&mut t, "decoder.conv_out", last, self.out_channels, 3);
        t
    }
}
