//! The CLIP image tower as HF transformers runs it (`CLIPVisionModelWithProjection`, e.g.
//! `openai/clip-vit-base-patch32`): patch embedding without bias, class embedding, learned
//! positions, `pre_layrnorm`, quick-GELU layers, `post_layernorm` on the class token, then
//! `visual_projection`. The embedding is `image_embeds` (the projected pooled output).
//!
//! Reads the HF names (`vision_model.*`, `visual_projection.weight`).

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use super::layers::{LayerNorm, Linear};
use super::vit::{cls_rows, prepend_cls, Activation, LayerDims, LayerNames, VitLayer};
use crate::backend::{Backend, Op};
use crate::weights::source::TensorSource;
use crate::weights::{Expected, WeightFile};

const LN_EPS: f32 = 1e-5;
const V: &str = "vision_model";

/// Architecture, read from the tensor shapes (heads from the metadata config, else head size 64).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub patch_size: usize,
    pub image_size: usize,
    pub projection_dim: usize,
}

impl ClipVisionConfig {
    /// The image tower of openai/clip-vit-base-patch32.
    pub fn b32() -> Self {
        ClipVisionConfig {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            patch_size: 32,
            image_size: 224,
            projection_dim: 512,
        }
    }

    pub fn detect(file: &WeightFile) -> Result<Self> {
        let shape = |n: &str| {
            file.shape(n)
                .with_context(|| format!("{}: not a CLIP image tower", file.path().display()))
        };
        let patch = shape(&format!("{V}.embeddings.patch_embedding.weight"))?;
        let pos = shape(&format!("{V}.embeddings.position_embedding.weight"))?;
        let fc1 = shape(&format!("{V}.encoder.layers.0.mlp.fc1.weight"))?;
        let proj = shape("visual_projection.weight")?;
        let layers = (0..)
            .take_while(|i| {
                file.info(&format!("{V}.encoder.layers.{i}.layer_norm1.weight"))
                    .is_some()
            })
            .count();
        ensure!(
            patch.len() == 4 && pos.len() == 2 && fc1.len() == 2 && proj.len() == 2,
            "{}: unexpected CLIP shapes: patch {patch:?}, positions {pos:?}, fc1 {fc1:?}, projection {proj:?}",
            file.path().display()
        );
        let d = patch[0];
        let heads = file.config_usize("num_attention_heads").unwrap_or(d / 64);
        let grid = ((pos[0].saturating_sub(1)) as f64).sqrt() as usize;
        ensure!(
            patch.len() == 4 && patch[1] == 3 && heads > 0 && d.is_multiple_of(heads)
                && grid * grid + 1 == pos[0] && layers > 0,
            "{}: unexpected CLIP shapes: patch {patch:?}, positions {pos:?}, {layers} layers, {heads} heads",
            file.path().display()
        );
        Ok(ClipVisionConfig {
            hidden_size: d,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: fc1[0],
            patch_size: patch[2],
            image_size: grid * patch[2],
            projection_dim: proj[0],
        })
    }

    fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    fn layer_names(i: usize) -> LayerNames {
        let l = format!("{V}.encoder.layers.{i}");
        LayerNames {
            norm1: format!("{l}.layer_norm1"),
            qkv: None,
            q: format!("{l}.self_attn.q_proj"),
            k: format!("{l}.self_attn.k_proj"),
            v: format!("{l}.self_attn.v_proj"),
            out: format!("{l}.self_attn.out_proj"),
            ls1: None,
            norm2: format!("{l}.layer_norm2"),
            fc1: format!("{l}.mlp.fc1"),
            fc2: format!("{l}.mlp.fc2"),
            ls2: None,
        }
    }

    pub fn expected_tensors(&self) -> Vec<Expected> {
        let (d, p, g, hid) = (
            self.hidden_size,
            self.patch_size,
            self.grid(),
            self.intermediate_size,
        );
        let mut out = vec![
            Expected::new(format!("{V}.embeddings.class_embedding"), &[d]),
            Expected::new(
                format!("{V}.embeddings.patch_embedding.weight"),
                &[d, 3, p, p],
            ),
            Expected::new(
                format!("{V}.embeddings.position_embedding.weight"),
                &[1 + g * g, d],
            ),
            Expected::new("visual_projection.weight", &[self.projection_dim, d]),
        ];
        for ln in ["pre_layrnorm", "post_layernorm"] {
            out.push(Expected::new(format!("{V}.{ln}.weight"), &[d]));
            out.push(Expected::new(format!("{V}.{ln}.bias"), &[d]));
        }
        for i in 0..self.num_hidden_layers {
            let n = Self::layer_names(i);
            for (name, rows, cols) in [
                (&n.norm1, d, 0),
                (&n.norm2, d, 0),
                (&n.q, d, d),
                (&n.k, d, d),
                (&n.v, d, d),
                (&n.out, d, d),
                (&n.fc1, hid, d),
                (&n.fc2, d, hid),
            ] {
                let w: Vec<usize> = [rows, cols].into_iter().filter(|&s| s > 0).collect();
                out.push(Expected::new(format!("{name}.weight"), &w));
                out.push(Expected::new(format!("{name}.bias"), &[rows]));
            }
        }
        out
    }
}

pub struct ClipVision<B: Backend> {
    /// The patch Conv2d (kernel = stride = p, no bias) as patchify + GEMM.
    patch: Linear<B>,
    class_embedding: Vec<f32>,
    /// (1 + G², D)
    positions: B::Buf,
    pre_layrnorm: LayerNorm<B>,
    layers: Vec<VitLayer<B>>,
    post_layernorm: LayerNorm<B>,
    visual_projection: Linear<B>,
    pub config: ClipVisionConfig,
}

impl<B: Backend> ClipVision<B> {
    /// The backend ops its forward calls (tests/models/model_ops.rs checks the list).
    pub const OPS: &'static [Op] = &[
        Op::AddRow,
        Op::Patchify,
        Op::Add,
        Op::Attention,
        Op::ConcatChannels,
        Op::GatherRows,
        Op::QuickGelu,
        Op::Linear,
        Op::LayerNormAffine,
    ];

    pub fn load(be: &B, src: &dyn TensorSource, config: ClipVisionConfig) -> Result<Self> {
        crate::backend::require(be, "CLIP", Self::OPS)?;
        src.check(&config.expected_tensors())?;
        let (d, p) = (config.hidden_size, config.patch_size);
        let dims = LayerDims {
            d,
            hidden: config.intermediate_size,
            heads: config.num_attention_heads,
            eps: LN_EPS,
            act: Activation::QuickGelu,
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| VitLayer::load(be, src, &ClipVisionConfig::layer_names(i), dims))
            .collect::<Result<Vec<_>>>()?;
        Ok(ClipVision {
            patch: Linear::load_no_bias(
                be,
                src,
                &format!("{V}.embeddings.patch_embedding"),
                3 * p * p,
                d,
            )?,
            class_embedding: src.f32(&format!("{V}.embeddings.class_embedding"))?,
            positions: be
                .upload(&src.f32(&format!("{V}.embeddings.position_embedding.weight"))?)?,
            pre_layrnorm: LayerNorm::load(be, src, &format!("{V}.pre_layrnorm"), d, LN_EPS)?,
            layers,
            post_layernorm: LayerNorm::load(be, src, &format!("{V}.post_layernorm"), d, LN_EPS)?,
            visual_projection: Linear::load_no_bias(
                be,
                src,
                "visual_projection",
                d,
                config.projection_dim,
            )?,
            config,
        })
    }

    /// `image_embeds` (B, projection_dim) of preprocessed images x (B, 3, S, S), S the
    /// model's image size.
    pub fn forward(&self, be: &B, x: &[f32], b: usize) -> Result<Vec<f32>> {
        let (d, p, s) = (
            self.config.hidden_size,
            self.config.patch_size,
            self.config.image_size,
        );
        ensure!(
            x.len() == b * 3 * s * s,
            "CLIP: {} input values for ({b}, 3, {s}, {s})",
            x.len()
        );
        let t = (s / p) * (s / p);
        let patches = be.patchify(&be.upload(x)?, b, 3, s, s, p)?; // (B, T, 3·p·p)
        let emb = self.patch.forward(be, &patches, b * t)?; // (B, T, D)
        let mut x = prepend_cls(be, &emb, &self.class_embedding, b, t)?; // (B, 1+T, D)
        be.add_row(&mut x, &self.positions, b, (1 + t) * d)?;
        let mut x = self.pre_layrnorm.forward(be, &x, b * (1 + t))?;
        for layer in &self.layers {
            layer.forward(be, &mut x, b, 1 + t)?;
        }
        let pooled = self
            .post_layernorm
            .forward(be, &cls_rows(be, &x, b, 1 + t, d)?, b)?;
        be.download(&self.visual_projection.forward(be, &pooled, b)?)
    }
}
