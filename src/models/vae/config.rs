//! diffusers' `AutoencoderKL` config (the keys both halves use), and the tensors it implies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// diffusers' `AutoencoderKL` config (other keys are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    #[serde(default = "d_out")]
    pub in_channels: usize,
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
            in_channels: d_out(),
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
        let rev: Vec<usize> = self.block_out_channels.iter().rev().copied().collect();
        let (lc, top) = (self.latent_channels, rev[0]);
        conv(&mut t, "post_quant_conv", lc, lc, 1);
        conv(&mut t, "decoder.conv_in", lc, top, 3);
        self.mid_block(&mut t, "decoder", top);
        let mut ci = top;
        for (i, &co) in rev.iter().enumerate() {
            for j in 0..=self.layers_per_block {
                let key = format!("decoder.up_blocks.{i}.resnets.{j}");
                resnet(&mut t, &key, if j == 0 { ci } else { co }, co);
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

    /// Every encoder tensor (diffusers names) with its shape: `layers_per_block` resnets and a
    /// stride-2 convolution per down block (not after the last), the mid block, and the moments
    /// (2 × latent channels: mean and log-variance).
    pub fn expected_encoder_tensors(&self) -> BTreeMap<String, Vec<usize>> {
        let mut t = BTreeMap::new();
        let ch = &self.block_out_channels;
        let (lc, top) = (self.latent_channels, ch[ch.len() - 1]);
        conv(&mut t, "encoder.conv_in", self.in_channels, ch[0], 3);
        let mut ci = ch[0];
        for (i, &co) in ch.iter().enumerate() {
            for j in 0..self.layers_per_block {
                let key = format!("encoder.down_blocks.{i}.resnets.{j}");
                resnet(&mut t, &key, if j == 0 { ci } else { co }, co);
            }
            if i + 1 < ch.len() {
                conv(
                    &mut t,
                    &format!("encoder.down_blocks.{i}.downsamplers.0.conv"),
                    co,
                    co,
                    3,
                );
            }
            ci = co;
        }
        self.mid_block(&mut t, "encoder", top);
        norm(&mut t, "encoder.conv_norm_out", top);
        conv(&mut t, "encoder.conv_out", top, 2 * lc, 3);
        conv(&mut t, "quant_conv", 2 * lc, 2 * lc, 1);
        t
    }

    /// `{part}.mid_block`: two resnets and, when the config has it, the attention.
    fn mid_block(&self, t: &mut BTreeMap<String, Vec<usize>>, part: &str, c: usize) {
        resnet(t, &format!("{part}.mid_block.resnets.0"), c, c);
        resnet(t, &format!("{part}.mid_block.resnets.1"), c, c);
        if self.mid_block_add_attention {
            norm(t, &format!("{part}.mid_block.attentions.0.group_norm"), c);
            for p in ["to_q", "to_k", "to_v", "to_out.0"] {
                t.insert(
                    format!("{part}.mid_block.attentions.0.{p}.weight"),
                    vec![c, c],
                );
                t.insert(format!("{part}.mid_block.attentions.0.{p}.bias"), vec![c]);
            }
        }
    }
}

fn conv(t: &mut BTreeMap<String, Vec<usize>>, key: &str, ci: usize, co: usize, k: usize) {
    t.insert(format!("{key}.weight"), vec![co, ci, k, k]);
    t.insert(format!("{key}.bias"), vec![co]);
}

fn norm(t: &mut BTreeMap<String, Vec<usize>>, key: &str, c: usize) {
    t.insert(format!("{key}.weight"), vec![c]);
    t.insert(format!("{key}.bias"), vec![c]);
}

fn resnet(t: &mut BTreeMap<String, Vec<usize>>, key: &str, ci: usize, co: usize) {
    norm(t, &format!("{key}.norm1"), ci);
    conv(t, &format!("{key}.conv1"), ci, co, 3);
    norm(t, &format!("{key}.norm2"), co);
    conv(t, &format!("{key}.conv2"), co, co, 3);
    if ci != co {
        conv(t, &format!("{key}.conv_shortcut"), ci, co, 1);
    }
}
