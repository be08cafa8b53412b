//! DINOv2 as HF transformers runs it (`Dinov2Model`, e.g. `facebook/dinov2-base`): patch
//! embedding, class token, position grid resized to the patch grid by bicubic interpolation of
//! output size, pre-norm layers with layer scale, final LayerNorm. The embedding is the class
//! token after the final LayerNorm (`pooler_output`).
//!
//! Reads the hub checkpoint's names (`encoder.layer.{i}.attention.attention.query`, …) and the
//! transformers ≥ 5 names (`attention.q_proj`, …), with or without a `dinov2.` prefix; and the
//! original release (`dinov2_vitl14_pretrain.pth`: `blocks.{i}.attn.qkv`, `ls1.gamma`, …) as
//! dgm-eval and EDM2 run it for FD-DINOv2, whose position grid is resized with the original
//! code's scale factor (G' + 0.1)/G rather than an output size.

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use super::layers::{LayerNorm, Linear};
use super::vit::{
    bicubic_resize, cls_rows, prepend_cls, Activation, LayerDims, LayerNames, VitLayer,
};
use crate::backend::{Backend, Op};
use crate::weights::source::TensorSource;
use crate::weights::{Expected, WeightFile};

const LN_EPS: f32 = 1e-6;

/// How a file spells the attention projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Dinov2Names {
    /// `attention.attention.{query,key,value}`, `attention.output.dense` (hub files).
    Hub,
    /// `attention.{q,k,v,o}_proj` (transformers ≥ 5 state_dicts).
    Transformers5,
    /// facebookresearch/dinov2 release files: `blocks.{i}.attn.qkv`, `attn.proj`, `ls{1,2}.gamma`,
    /// `cls_token`, `pos_embed`, `patch_embed.proj`, `norm`.
    Original,
}

/// The model-level tensor names of a naming style (without the prefix).
struct TopNames {
    cls: &'static str,
    mask: &'static str,
    pos: &'static str,
    patch: &'static str,
    norm: &'static str,
}

impl Dinov2Names {
    fn top(self) -> TopNames {
        match self {
            Dinov2Names::Original => TopNames {
                cls: "cls_token",
                mask: "mask_token",
                pos: "pos_embed",
                patch: "patch_embed.proj",
                norm: "norm",
            },
            _ => TopNames {
                cls: "embeddings.cls_token",
                mask: "embeddings.mask_token",
                pos: "embeddings.position_embeddings",
                patch: "embeddings.patch_embeddings.projection",
                norm: "layernorm",
            },
        }
    }
}

/// Architecture, read from the tensor shapes (and `num_attention_heads` from the metadata config
/// when present; else head size 64).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dinov2Config {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub mlp_hidden: usize,
    pub patch_size: usize,
    /// Side of the learned position grid (37 for the 518-pixel release).
    pub position_grid: usize,
    pub prefix: String,
    pub names: Dinov2Names,
}

impl Dinov2Config {
    /// facebook/dinov2-base (ViT-B/14) or, `large`, -large (ViT-L/14), in the hub's names.
    pub fn released(large: bool) -> Self {
        let (hidden_size, num_hidden_layers, num_attention_heads) =
            if large { (1024, 24, 16) } else { (768, 12, 12) };
        Dinov2Config {
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            mlp_hidden: 4 * hidden_size,
            patch_size: 14,
            position_grid: 37,
            prefix: String::new(),
            names: Dinov2Names::Hub,
        }
    }

    pub fn detect(file: &WeightFile) -> Result<Self> {
        if file.info("cls_token").is_some() && file.info("blocks.0.norm1.weight").is_some() {
            return Self::detect_original(file);
        }
        let prefix = ["", "dinov2."]
            .into_iter()
            .find(|p| file.info(&format!("{p}embeddings.cls_token")).is_some())
            .with_context(|| {
                format!(
                    "{}: not a DINOv2 checkpoint (no embeddings.cls_token or cls_token)",
                    file.path().display()
                )
            })?;
        let shape = |n: &str| file.shape(&format!("{prefix}{n}"));
        let d = *shape("embeddings.cls_token")?.last().unwrap_or(&0);
        let proj = shape("embeddings.patch_embeddings.projection.weight")?;
        let pos = shape("embeddings.position_embeddings")?;
        let fc1 = shape("encoder.layer.0.mlp.fc1.weight")?;
        ensure!(
            fc1.len() == 2,
            "{}: mlp.fc1.weight has shape {fc1:?}, expected 2-D",
            file.path().display()
        );
        let layers = (0..)
            .take_while(|i| {
                file.info(&format!("{prefix}encoder.layer.{i}.norm1.weight"))
                    .is_some()
            })
            .count();
        let names = if file
            .info(&format!(
                "{prefix}encoder.layer.0.attention.attention.query.weight"
            ))
            .is_some()
        {
            Dinov2Names::Hub
        } else {
            Dinov2Names::Transformers5
        };
        let heads = file.config_usize("num_attention_heads").unwrap_or(d / 64);
        let grid = (pos.get(1).copied().unwrap_or(1).saturating_sub(1) as f64).sqrt() as usize;
        ensure!(
            proj.len() == 4 && proj[1] == 3 && proj[2] == proj[3] && pos.len() == 3,
            "{}: unexpected DINOv2 shapes: projection {proj:?}, position embeddings {pos:?}",
            file.path().display()
        );
        ensure!(
            heads > 0 && d.is_multiple_of(heads) && grid * grid + 1 == pos[1] && layers > 0,
            "{}: DINOv2 hidden size {d}, {heads} heads, {} positions, {layers} layers do not fit together",
            file.path().display(),
            pos[1]
        );
        Ok(Dinov2Config {
            hidden_size: d,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            mlp_hidden: fc1[0],
            patch_size: proj[2],
            position_grid: grid,
            prefix: prefix.to_string(),
            names,
        })
    }

    /// The original release: heads from the metadata config (`num_heads`) or D/64 (as every
    /// released size has), no register tokens.
    fn detect_original(file: &WeightFile) -> Result<Self> {
        ensure!(
            file.info("register_tokens").is_none(),
            "{}: DINOv2 with register tokens is not supported",
            file.path().display()
        );
        let d = *file.shape("cls_token")?.last().unwrap_or(&0);
        let proj = file.shape("patch_embed.proj.weight")?;
        let pos = file.shape("pos_embed")?;
        let fc1 = file.shape("blocks.0.mlp.fc1.weight")?;
        ensure!(
            fc1.len() == 2,
            "{}: mlp.fc1.weight has shape {fc1:?}, expected 2-D",
            file.path().display()
        );
        let layers = (0..)
            .take_while(|i| file.info(&format!("blocks.{i}.norm1.weight")).is_some())
            .count();
        let grid = (pos.get(1).copied().unwrap_or(1).saturating_sub(1) as f64).sqrt() as usize;
        let heads = file.config_usize("num_heads").unwrap_or(d / 64);
        ensure!(
            proj.len() == 4
                && pos.len() == 3
                && grid * grid + 1 == pos[1]
                && heads > 0
                && d.is_multiple_of(heads),
            "{}: unexpected DINOv2 release shapes: patch {proj:?}, pos_embed {pos:?}, {heads} heads",
            file.path().display()
        );
        Ok(Dinov2Config {
            hidden_size: d,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            mlp_hidden: fc1[0],
            patch_size: proj[2],
            position_grid: grid,
            prefix: String::new(),
            names: Dinov2Names::Original,
        })
    }

    fn layer_names(&self, i: usize) -> LayerNames {
        if self.names == Dinov2Names::Original {
            let l = format!("blocks.{i}");
            return LayerNames {
                norm1: format!("{l}.norm1"),
                qkv: Some(format!("{l}.attn.qkv")),
                q: String::new(),
                k: String::new(),
                v: String::new(),
                out: format!("{l}.attn.proj"),
                ls1: Some(format!("{l}.ls1.gamma")),
                norm2: format!("{l}.norm2"),
                fc1: format!("{l}.mlp.fc1"),
                fc2: format!("{l}.mlp.fc2"),
                ls2: Some(format!("{l}.ls2.gamma")),
            };
        }
        let l = format!("{}encoder.layer.{i}", self.prefix);
        let (q, k, v, o) = match self.names {
            Dinov2Names::Hub => (
                "attention.attention.query",
                "attention.attention.key",
                "attention.attention.value",
                "attention.output.dense",
            ),
            _ => (
                "attention.q_proj",
                "attention.k_proj",
                "attention.v_proj",
                "attention.o_proj",
            ),
        };
        LayerNames {
            norm1: format!("{l}.norm1"),
            qkv: None,
            q: format!("{l}.{q}"),
            k: format!("{l}.{k}"),
            v: format!("{l}.{v}"),
            out: format!("{l}.{o}"),
            ls1: Some(format!("{l}.layer_scale1.lambda1")),
            norm2: format!("{l}.norm2"),
            fc1: format!("{l}.mlp.fc1"),
            fc2: format!("{l}.mlp.fc2"),
            ls2: Some(format!("{l}.layer_scale2.lambda1")),
        }
    }

    /// Every tensor the model reads (the unused `mask_token` is allowed too).
    pub fn expected_tensors(&self) -> Vec<Expected> {
        let (d, p, g, hid) = (
            self.hidden_size,
            self.patch_size,
            self.position_grid,
            self.mlp_hidden,
        );
        let e = |n: &str, s: &[usize]| Expected::new(format!("{}{n}", self.prefix), s);
        let t = self.names.top();
        let mut out = vec![
            e(t.cls, &[1, 1, d]),
            e(t.mask, &[1, d]),
            e(t.pos, &[1, 1 + g * g, d]),
            e(&format!("{}.weight", t.patch), &[d, 3, p, p]),
            e(&format!("{}.bias", t.patch), &[d]),
            e(&format!("{}.weight", t.norm), &[d]),
            e(&format!("{}.bias", t.norm), &[d]),
        ];
        for i in 0..self.num_hidden_layers {
            let n = self.layer_names(i);
            let qkv: Vec<(&String, [usize; 2])> = match &n.qkv {
                Some(f) => vec![(f, [3 * d, d])],
                None => vec![(&n.q, [d, d]), (&n.k, [d, d]), (&n.v, [d, d])],
            };
            for (name, shape) in qkv.into_iter().chain([
                (&n.norm1, [d, 0]),
                (&n.norm2, [d, 0]),
                (&n.out, [d, d]),
                (&n.fc1, [hid, d]),
                (&n.fc2, [d, hid]),
            ]) {
                let w: Vec<usize> = shape.iter().copied().filter(|&s| s > 0).collect();
                out.push(Expected::new(format!("{name}.weight"), &w));
                out.push(Expected::new(format!("{name}.bias"), &[shape[0]]));
            }
            for ls in [&n.ls1, &n.ls2].into_iter().flatten() {
                out.push(Expected::new(ls.clone(), &[d]));
            }
        }
        out
    }
}

pub struct Dinov2<B: Backend> {
    /// The patch Conv2d (kernel = stride = p) as patchify + GEMM.
    patch: Linear<B>,
    cls: Vec<f32>,
    /// (1 + G², D), the class position first.
    positions: Vec<f32>,
    layers: Vec<VitLayer<B>>,
    layernorm: LayerNorm<B>,
    pub config: Dinov2Config,
}

impl<B: Backend> Dinov2<B> {
    /// The backend ops its forward calls (tests/models/model_ops.rs checks the list).
    pub const OPS: &'static [Op] = &[
        Op::AddRow,
        Op::Patchify,
        Op::Add,
        Op::Attention,
        Op::ConcatChannels,
        Op::GatherRows,
        Op::GeluErf,
        Op::Linear,
        Op::LayerNormAffine,
    ];

    pub fn load(be: &B, src: &dyn TensorSource, config: Dinov2Config) -> Result<Self> {
        crate::backend::require(be, "DINOv2", Self::OPS)?;
        src.check(&config.expected_tensors())?;
        let (d, p) = (config.hidden_size, config.patch_size);
        let pre = &config.prefix;
        let dims = LayerDims {
            d,
            hidden: config.mlp_hidden,
            heads: config.num_attention_heads,
            eps: LN_EPS,
            act: Activation::GeluErf,
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| VitLayer::load(be, src, &config.layer_names(i), dims))
            .collect::<Result<Vec<_>>>()?;
        let t = config.names.top();
        Ok(Dinov2 {
            patch: Linear::load(be, src, &format!("{pre}{}", t.patch), 3 * p * p, d)?,
            cls: src.f32(&format!("{pre}{}", t.cls))?,
            positions: src.f32(&format!("{pre}{}", t.pos))?,
            layers,
            layernorm: LayerNorm::load(be, src, &format!("{pre}{}", t.norm), d, LN_EPS)?,
            config,
        })
    }

    /// `interpolate_pos_encoding`: the learned grid as is when it matches a square input, else
    /// bicubic-resized to (gh, gw). → (1 + gh·gw, D)
    fn positions_for(&self, gh: usize, gw: usize) -> Vec<f32> {
        let (d, g) = (self.config.hidden_size, self.config.position_grid);
        if gh * gw == g * g && gh == gw {
            return self.positions.clone();
        }
        // (G², D) → (D, G, G) → resize → (D, gh, gw) → (gh·gw, D)
        let patch = &self.positions[d..];
        let chw: Vec<f32> = (0..d)
            .flat_map(|c| (0..g * g).map(move |p| patch[p * d + c]))
            .collect();
        // The release's code asks for a scale factor (G' + 0.1)/G (its "historical kludge");
        // transformers asks for the output size.
        let scale_factor = (self.config.names == Dinov2Names::Original)
            .then(|| ((gh as f64 + 0.1) / g as f64, (gw as f64 + 0.1) / g as f64));
        let r = bicubic_resize(&chw, (d, g, g), (gh, gw), scale_factor);
        let mut out = self.positions[..d].to_vec();
        for p in 0..gh * gw {
            out.extend((0..d).map(|c| r[c * gh * gw + p]));
        }
        out
    }

    /// Class-token embeddings (B, D) of preprocessed images x (B, 3, H, W).
    pub fn forward(&self, be: &B, x: &[f32], b: usize, (h, w): (usize, usize)) -> Result<Vec<f32>> {
        let (d, p) = (self.config.hidden_size, self.config.patch_size);
        ensure!(
            x.len() == b * 3 * h * w,
            "DINOv2: {} input values for ({b}, 3, {h}, {w})",
            x.len()
        );
        if h % p != 0 || w % p != 0 {
            bail!("DINOv2: input {h}×{w} is not a multiple of the patch size {p}");
        }
        let (gh, gw) = (h / p, w / p);
        let t = gh * gw;
        let patches = be.patchify(&be.upload(x)?, b, 3, h, w, p)?; // (B, T, 3·p·p)
        let emb = self.patch.forward(be, &patches, b * t)?; // (B, T, D)
        let mut x = prepend_cls(be, &emb, &self.cls, b, t)?; // (B, 1+T, D)
        be.add_row(
            &mut x,
            &be.upload(&self.positions_for(gh, gw))?,
            b,
            (1 + t) * d,
        )?;
        for layer in &self.layers {
            layer.forward(be, &mut x, b, 1 + t)?;
        }
        let cls = cls_rows(be, &x, b, 1 + t, d)?; // (B, D); LayerNorm is per row
        be.download(&self.layernorm.forward(be, &cls, b)?)
    }
}
