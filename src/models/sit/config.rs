//! `SiT(...)`'s constructor arguments: the upstream presets, the checks, and the sizes and
//! state_dict tensors they imply.

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::weights::{Expected, WeightFile};

/// Size of the sinusoidal timestep features.
pub const FREQ_DIM: usize = 256;

/// Constructor arguments of upstream `SiT(...)`, with its defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiTConfig {
    #[serde(default = "d_input_size")]
    pub input_size: usize,
    #[serde(default = "d_patch_size")]
    pub patch_size: usize,
    #[serde(default = "d_in_channels")]
    pub in_channels: usize,
    #[serde(default = "d_hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "d_depth")]
    pub depth: usize,
    #[serde(default = "d_num_heads")]
    pub num_heads: usize,
    #[serde(default = "d_mlp_ratio")]
    pub mlp_ratio: f64,
    #[serde(default = "d_num_classes")]
    pub num_classes: usize,
    #[serde(default = "d_learn_sigma")]
    pub learn_sigma: bool,
    #[serde(default = "d_class_dropout_prob")]
    pub class_dropout_prob: f64,
}

fn d_input_size() -> usize {
    32
}
fn d_patch_size() -> usize {
    2
}
fn d_in_channels() -> usize {
    4
}
fn d_hidden_size() -> usize {
    1152
}
fn d_depth() -> usize {
    28
}
fn d_num_heads() -> usize {
    16
}
fn d_mlp_ratio() -> f64 {
    4.0
}
fn d_num_classes() -> usize {
    1000
}
fn d_learn_sigma() -> bool {
    true
}
fn d_class_dropout_prob() -> f64 {
    0.1
}

/// Upstream preset names (`SiT-XL/2` …); `-` is accepted in place of `/`.
pub const PRESETS: [&str; 12] = [
    "SiT-XL/2", "SiT-XL/4", "SiT-XL/8", "SiT-L/2", "SiT-L/4", "SiT-L/8", "SiT-B/2", "SiT-B/4",
    "SiT-B/8", "SiT-S/2", "SiT-S/4", "SiT-S/8",
];

impl SiTConfig {
    /// A named preset at `image_size` px (256 or 512; latents are image_size / 8).
    pub fn preset(name: &str, image_size: usize) -> Result<Self> {
        let canon = name.replace('-', "/").replacen("SiT/", "SiT-", 1);
        let Some((size, patch)) = canon.strip_prefix("SiT-").and_then(|s| s.split_once('/')) else {
            bail!(
                "unknown model {name:?}; expected one of {}",
                PRESETS.join(", ")
            );
        };
        let (depth, hidden, heads) = match size {
            "XL" => (28, 1152, 16),
            "L" => (24, 1024, 16),
            "B" => (12, 768, 12),
            "S" => (12, 384, 6),
            _ => bail!(
                "unknown model {name:?}; expected one of {}",
                PRESETS.join(", ")
            ),
        };
        let patch_size = match patch {
            "2" => 2,
            "4" => 4,
            "8" => 8,
            _ => bail!(
                "unknown model {name:?}; expected one of {}",
                PRESETS.join(", ")
            ),
        };
        if image_size != 256 && image_size != 512 {
            bail!("--image-size {image_size}: SiT presets exist for 256 and 512 px");
        }
        Ok(SiTConfig {
            input_size: image_size / 8,
            patch_size,
            in_channels: 4,
            hidden_size: hidden,
            depth,
            num_heads: heads,
            mlp_ratio: 4.0,
            num_classes: 1000,
            learn_sigma: true,
            class_dropout_prob: 0.1,
        })
    }

    /// The config stored in a weights file's `__metadata__["config"]`, if any.
    pub fn from_metadata(file: &WeightFile) -> Result<Option<Self>> {
        let Some(json) = file.metadata().get("config") else {
            return Ok(None);
        };
        let cfg: SiTConfig = serde_json::from_str(json).with_context(|| {
            format!(
                "{}: __metadata__ config is not a SiT config",
                file.path().display()
            )
        })?;
        cfg.validate()
            .with_context(|| format!("{}: __metadata__ config", file.path().display()))?;
        Ok(Some(cfg))
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.patch_size > 0 && self.input_size.is_multiple_of(self.patch_size),
            "input_size {} is not a multiple of patch_size {}",
            self.input_size,
            self.patch_size
        );
        ensure!(
            self.num_heads > 0 && self.hidden_size.is_multiple_of(self.num_heads),
            "hidden_size {} is not a multiple of num_heads {}",
            self.hidden_size,
            self.num_heads
        );
        ensure!(
            self.hidden_size.is_multiple_of(4),
            "hidden_size {} is not a multiple of 4 (2-D sin-cos embedding)",
            self.hidden_size
        );
        ensure!(
            self.depth > 0 && self.in_channels > 0 && self.num_classes > 0,
            "depth, in_channels and num_classes must be positive"
        );
        Ok(())
    }

    pub fn grid(&self) -> usize {
        self.input_size / self.patch_size
    }
    pub fn tokens(&self) -> usize {
        self.grid() * self.grid()
    }
    pub fn out_channels(&self) -> usize {
        if self.learn_sigma {
            2 * self.in_channels
        } else {
            self.in_channels
        }
    }
    pub fn mlp_hidden(&self) -> usize {
        (self.hidden_size as f64 * self.mlp_ratio) as usize
    }
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
    /// Rows of the label table: one more (the null class) when label dropout was used in training.
    pub fn label_rows(&self) -> usize {
        self.num_classes + usize::from(self.class_dropout_prob > 0.0)
    }
    /// Floats per latent sample (C·H·W).
    pub fn sample_len(&self) -> usize {
        self.in_channels * self.input_size * self.input_size
    }

    /// Every state_dict tensor with its shape, in upstream order.
    pub fn expected_tensors(&self) -> Vec<Expected> {
        let (d, p, c) = (self.hidden_size, self.patch_size, self.in_channels);
        let mut v = vec![
            Expected::new("pos_embed", &[1, self.tokens(), d]),
            Expected::new("x_embedder.proj.weight", &[d, c, p, p]),
            Expected::new("x_embedder.proj.bias", &[d]),
            Expected::new("t_embedder.mlp.0.weight", &[d, FREQ_DIM]),
            Expected::new("t_embedder.mlp.0.bias", &[d]),
            Expected::new("t_embedder.mlp.2.weight", &[d, d]),
            Expected::new("t_embedder.mlp.2.bias", &[d]),
            Expected::new("y_embedder.embedding_table.weight", &[self.label_rows(), d]),
        ];
        let h = self.mlp_hidden();
        for k in 0..self.depth {
            let b = format!("blocks.{k}");
            v.extend([
                Expected::new(format!("{b}.attn.qkv.weight"), &[3 * d, d]),
                Expected::new(format!("{b}.attn.qkv.bias"), &[3 * d]),
                Expected::new(format!("{b}.attn.proj.weight"), &[d, d]),
                Expected::new(format!("{b}.attn.proj.bias"), &[d]),
                Expected::new(format!("{b}.mlp.fc1.weight"), &[h, d]),
                Expected::new(format!("{b}.mlp.fc1.bias"), &[h]),
                Expected::new(format!("{b}.mlp.fc2.weight"), &[d, h]),
                Expected::new(format!("{b}.mlp.fc2.bias"), &[d]),
                Expected::new(format!("{b}.adaLN_modulation.1.weight"), &[6 * d, d]),
                Expected::new(format!("{b}.adaLN_modulation.1.bias"), &[6 * d]),
            ]);
        }
        let o = p * p * self.out_channels();
        v.extend([
            Expected::new("final_layer.linear.weight", &[o, d]),
            Expected::new("final_layer.linear.bias", &[o]),
            Expected::new("final_layer.adaLN_modulation.1.weight", &[2 * d, d]),
            Expected::new("final_layer.adaLN_modulation.1.bias", &[2 * d]),
        ]);
        v
    }

    /// Multiply-accumulates of one forward per image (GEMMs and attention products).
    pub fn macs_per_image(&self) -> f64 {
        let (d, t, h) = (
            self.hidden_size as f64,
            self.tokens() as f64,
            self.mlp_hidden() as f64,
        );
        let block = t * d * 3.0 * d + 2.0 * t * t * d + t * d * d + 2.0 * t * d * h + d * 6.0 * d;
        let p2c = (self.patch_size * self.patch_size * self.in_channels) as f64;
        self.depth as f64 * block
            + t * p2c * d
            + (FREQ_DIM as f64 * d + d * d)
            + (d * 2.0 * d + t * d * p2c / self.in_channels as f64 * self.out_channels() as f64)
    }
}
