//! DreamSim's ensemble as the `dreamsim` package (0.2.x, `dreamsim(dreamsim_type="ensemble")`)
//! computes its embedding: three ViT-B/16 towers in the DINO code's layout, each fed the same
//! 224 × 224 image under its own normalisation, their features concatenated, then centred and
//! L2-normalised (`normalize_embedding`).
//!
//! - `dino`: DINO ViT-B/16 (torch.hub `dino_vitb16`), ImageNet mean/std, GELU, LayerNorm eps 1e-6;
//!   the feature is the class token of block 11's output, taken by a forward hook, so before the
//!   final norm.
//! - `clip`: OpenAI CLIP ViT-B/16 loaded as a DINO ViT (`load_clip_as_dino`): `pos_drop` is
//!   CLIP's `ln_pre`, quick-GELU, eps 1e-5; the feature is `norm(x)[:, 0] @ proj`.
//! - `open_clip`: OpenCLIP ViT-B/16 (LAION-400M) the same way with GELU.
//!
//! Reads the file of `scripts/convert_weights.py dreamsim`: `dino.*`, `clip.*`, `open_clip.*`
//! under the package's names, the LoRA adapters already merged, heads in the metadata config.

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use super::layers::{LayerNorm, Linear};
use super::preprocess::{CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, PIPELINE_SIZE};
use super::vit::{cls_rows, prepend_cls, Activation, LayerDims, LayerNames, VitLayer};
use crate::backend::{Backend, Op};
use crate::weights::source::TensorSource;
use crate::weights::{Expected, WeightFile};

/// The block whose output the DINO tower's feature hook reads (`PerceptualModel`'s layer 11).
const DINO_FEATURE_BLOCK: usize = 11;

/// One tower of the ensemble, in `extractor_list` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tower {
    Dino,
    Clip,
    OpenClip,
}

impl Tower {
    pub const ALL: [Tower; 3] = [Tower::Dino, Tower::Clip, Tower::OpenClip];

    pub fn prefix(self) -> &'static str {
        match self {
            Tower::Dino => "dino",
            Tower::Clip => "clip",
            Tower::OpenClip => "open_clip",
        }
    }

    fn eps(self) -> f32 {
        match self {
            Tower::Dino => 1e-6,
            _ => 1e-5,
        }
    }

    fn act(self) -> Activation {
        match self {
            Tower::Clip => Activation::QuickGelu,
            _ => Activation::GeluErf,
        }
    }

    /// `transforms.Normalize` constants the package applies before this tower.
    fn mean_std(self) -> ([f32; 3], [f32; 3]) {
        match self {
            Tower::Dino => (IMAGENET_MEAN, IMAGENET_STD),
            _ => (CLIP_MEAN, CLIP_STD),
        }
    }

    /// CLIP towers have `ln_pre` (as `pos_drop`), a final norm and a projection.
    fn is_clip(self) -> bool {
        self != Tower::Dino
    }
}

/// Sizes of one tower, read from the tensor shapes and the metadata's `num_heads`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TowerConfig {
    pub tower: Tower,
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub mlp_hidden: usize,
    pub patch_size: usize,
    /// Side of the position grid; the package runs it unresized, so grid · patch = 224.
    pub grid: usize,
    /// Width of the tower's feature: embed_dim (dino) or the projection's (CLIP towers).
    pub feature_dim: usize,
}

impl TowerConfig {
    fn detect(file: &WeightFile, tower: Tower) -> Result<Self> {
        let p = tower.prefix();
        let shape = |n: &str| file.shape(&format!("{p}.{n}"));
        let d = *shape("cls_token")?.last().unwrap_or(&0);
        let patch = shape("patch_embed.proj.weight")?;
        let pos = shape("pos_embed")?;
        let fc1 = shape("blocks.0.mlp.fc1.weight")?;
        let depth = (0..)
            .take_while(|i| file.info(&format!("{p}.blocks.{i}.norm1.weight")).is_some())
            .count();
        let heads: serde_json::Value = file
            .metadata()
            .get("config")
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default();
        let num_heads = heads["num_heads"][p]
            .as_u64()
            .map_or(d / 64, |h| h as usize);
        let feature_dim = if tower.is_clip() {
            let proj = shape("proj")?;
            ensure!(
                proj.len() == 2 && proj[0] == d,
                "{p}.proj has shape {proj:?}, expected ({d}, E)"
            );
            proj[1]
        } else {
            d
        };
        let grid = (pos.get(1).copied().unwrap_or(1).saturating_sub(1) as f64).sqrt() as usize;
        ensure!(
            patch.len() == 4
                && patch[1] == 3
                && patch[2] == patch[3]
                && pos.len() == 3
                && fc1.len() == 2
                && grid * grid + 1 == pos[1],
            "unexpected {p} tower shapes: patch {patch:?}, pos_embed {pos:?}, fc1 {fc1:?}"
        );
        ensure!(
            num_heads > 0 && d.is_multiple_of(num_heads),
            "{p}: {num_heads} heads do not divide the width {d}"
        );
        ensure!(
            grid * patch[2] == PIPELINE_SIZE,
            "{p}: a {grid} × {grid} position grid of {}-pixel patches; DreamSim runs {PIPELINE_SIZE}-pixel inputs",
            patch[2]
        );
        ensure!(
            tower.is_clip() || depth > DINO_FEATURE_BLOCK,
            "{p}: {depth} blocks; DreamSim reads block {DINO_FEATURE_BLOCK}'s output"
        );
        Ok(TowerConfig {
            tower,
            embed_dim: d,
            depth,
            num_heads,
            mlp_hidden: fc1[0],
            patch_size: patch[2],
            grid,
            feature_dim,
        })
    }

    fn layer_names(&self, i: usize) -> LayerNames {
        let l = format!("{}.blocks.{i}", self.tower.prefix());
        LayerNames {
            norm1: format!("{l}.norm1"),
            qkv: Some(format!("{l}.attn.qkv")),
            q: String::new(),
            k: String::new(),
            v: String::new(),
            out: format!("{l}.attn.proj"),
            ls1: None,
            norm2: format!("{l}.norm2"),
            fc1: format!("{l}.mlp.fc1"),
            fc2: format!("{l}.mlp.fc2"),
            ls2: None,
        }
    }

    /// The blocks the feature needs: all of a CLIP tower's, DINO's up to block 11.
    fn blocks_run(&self) -> usize {
        if self.tower.is_clip() {
            self.depth
        } else {
            DINO_FEATURE_BLOCK + 1
        }
    }

    fn expected_tensors(&self) -> Vec<Expected> {
        let (d, p, g, hid) = (self.embed_dim, self.patch_size, self.grid, self.mlp_hidden);
        let pre = self.tower.prefix();
        let e = |n: &str, s: &[usize]| Expected::new(format!("{pre}.{n}"), s);
        let mut out = vec![
            e("cls_token", &[1, 1, d]),
            e("pos_embed", &[1, 1 + g * g, d]),
            e("patch_embed.proj.weight", &[d, 3, p, p]),
            e("patch_embed.proj.bias", &[d]),
            e("norm.weight", &[d]),
            e("norm.bias", &[d]),
        ];
        if self.tower.is_clip() {
            out.push(e("pos_drop.weight", &[d]));
            out.push(e("pos_drop.bias", &[d]));
            out.push(e("proj", &[d, self.feature_dim]));
        }
        for i in 0..self.depth {
            let n = self.layer_names(i);
            let qkv = n.qkv.clone().unwrap_or_default();
            for (name, shape) in [
                (&n.norm1, [d, 0]),
                (&n.norm2, [d, 0]),
                (&qkv, [3 * d, d]),
                (&n.out, [d, d]),
                (&n.fc1, [hid, d]),
                (&n.fc2, [d, hid]),
            ] {
                let w: Vec<usize> = shape.iter().copied().filter(|&s| s > 0).collect();
                out.push(Expected::new(format!("{name}.weight"), &w));
                out.push(Expected::new(format!("{name}.bias"), &[shape[0]]));
            }
        }
        out
    }
}

/// The ensemble's towers, in `extractor_list` order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DreamSimConfig {
    pub towers: Vec<TowerConfig>,
}

impl DreamSimConfig {
    pub fn detect(file: &WeightFile) -> Result<Self> {
        ensure!(
            file.info("dino.cls_token").is_some() && file.info("clip.cls_token").is_some(),
            "{}: not a DreamSim ensemble (no dino.cls_token / clip.cls_token; convert the package's cache folder with scripts/convert_weights.py dreamsim)",
            file.path().display()
        );
        let towers = Tower::ALL
            .iter()
            .map(|&t| TowerConfig::detect(file, t))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("{}: DreamSim ensemble", file.path().display()))?;
        Ok(DreamSimConfig { towers })
    }

    /// The released ensemble's shapes: three ViT-B/16 (12 blocks, 768 wide, 12 heads), CLIP
    /// projections to 512 (for benchmarks on formula weights).
    pub fn released() -> Self {
        let towers = Tower::ALL
            .iter()
            .map(|&tower| TowerConfig {
                tower,
                embed_dim: 768,
                depth: 12,
                num_heads: 12,
                mlp_hidden: 3072,
                patch_size: 16,
                grid: 14,
                feature_dim: if tower.is_clip() { 512 } else { 768 },
            })
            .collect();
        DreamSimConfig { towers }
    }

    /// Every tensor the ensemble reads.
    pub fn expected_tensors(&self) -> Vec<Expected> {
        self.towers
            .iter()
            .flat_map(TowerConfig::expected_tensors)
            .collect()
    }

    /// Width of the concatenated embedding (1792 for the released ensemble).
    pub fn embedding_dim(&self) -> usize {
        self.towers.iter().map(|t| t.feature_dim).sum()
    }
}

/// One `VisionTransformer` of the package with the feature the ensemble takes from it.
pub struct VisionTransformer<B: Backend> {
    /// The patch Conv2d (kernel = stride = p, with bias) as patchify + GEMM.
    patch_embed: Linear<B>,
    cls_token: Vec<f32>,
    /// (1 + G², D)
    pos_embed: B::Buf,
    /// CLIP's `ln_pre`, installed as `pos_drop`.
    pos_drop: Option<LayerNorm<B>>,
    blocks: Vec<VitLayer<B>>,
    /// Final norm and projection (D, E) as a Linear (E, D): CLIP towers only.
    head: Option<(LayerNorm<B>, Linear<B>)>,
    pub config: TowerConfig,
}

impl<B: Backend> VisionTransformer<B> {
    fn load(be: &B, src: &dyn TensorSource, config: TowerConfig) -> Result<Self> {
        let (d, p, t) = (config.embed_dim, config.patch_size, config.tower);
        let pre = t.prefix();
        let dims = LayerDims {
            d,
            hidden: config.mlp_hidden,
            heads: config.num_heads,
            eps: t.eps(),
            act: t.act(),
        };
        let blocks = (0..config.blocks_run())
            .map(|i| VitLayer::load(be, src, &config.layer_names(i), dims))
            .collect::<Result<Vec<_>>>()?;
        let norm = |n: &str| LayerNorm::load(be, src, &format!("{pre}.{n}"), d, t.eps());
        let head = if t.is_clip() {
            // x @ proj with proj (D, E) is a Linear with weight projᵀ (E, D).
            let e = config.feature_dim;
            let proj = src.f32(&format!("{pre}.proj"))?;
            let w: Vec<f32> = (0..e)
                .flat_map(|o| (0..d).map(move |i| (o, i)))
                .map(|(o, i)| proj[i * e + o])
                .collect();
            Some((norm("norm")?, Linear::new(be, &w, None, d, e)?))
        } else {
            None
        };
        Ok(VisionTransformer {
            patch_embed: Linear::load(be, src, &format!("{pre}.patch_embed.proj"), 3 * p * p, d)?,
            cls_token: src.f32(&format!("{pre}.cls_token"))?,
            pos_embed: be.upload(&src.f32(&format!("{pre}.pos_embed"))?)?,
            pos_drop: if t.is_clip() {
                Some(norm("pos_drop")?)
            } else {
                None
            },
            blocks,
            head,
            config,
        })
    }

    /// The tower's feature (B, feature_dim) of normalised images x (B, 3, 224, 224).
    fn forward(&self, be: &B, x: &[f32], b: usize) -> Result<B::Buf> {
        let (d, p, s) = (self.config.embed_dim, self.config.patch_size, PIPELINE_SIZE);
        let t = self.config.grid * self.config.grid;
        let patches = be.patchify(&be.upload(x)?, b, 3, s, s, p)?; // (B, T, 3·p·p)
        let emb = self.patch_embed.forward(be, &patches, b * t)?; // (B, T, D)
        let mut x = prepend_cls(be, &emb, &self.cls_token, b, t)?; // (B, 1+T, D)
        be.add_row(&mut x, &self.pos_embed, b, (1 + t) * d)?;
        if let Some(ln) = &self.pos_drop {
            x = ln.forward(be, &x, b * (1 + t))?;
        }
        for block in &self.blocks {
            block.forward(be, &mut x, b, 1 + t)?;
        }
        let cls = cls_rows(be, &x, b, 1 + t, d)?; // (B, D)
        match &self.head {
            // The final norm is per row, so norming the class rows alone equals norm(x)[:, 0].
            Some((norm, proj)) => proj.forward(be, &norm.forward(be, &cls, b)?, b),
            None => Ok(cls),
        }
    }
}

pub struct DreamSim<B: Backend> {
    towers: Vec<VisionTransformer<B>>,
    pub config: DreamSimConfig,
}

impl<B: Backend> DreamSim<B> {
    /// The backend ops its forward calls (tests/models/model_ops.rs checks the list).
    pub const OPS: &'static [Op] = &[
        Op::AddRow,
        Op::Patchify,
        Op::Add,
        Op::Attention,
        Op::ConcatChannels,
        Op::GatherRows,
        Op::GeluErf,
        Op::QuickGelu,
        Op::Linear,
        Op::LayerNormAffine,
    ];

    pub fn load(be: &B, src: &dyn TensorSource, config: DreamSimConfig) -> Result<Self> {
        crate::backend::require(be, "DreamSim", Self::OPS)?;
        src.check(&config.expected_tensors())?;
        let towers = config
            .towers
            .iter()
            .map(|c| VisionTransformer::load(be, src, c.clone()))
            .collect::<Result<Vec<_>>>()?;
        Ok(DreamSim { towers, config })
    }

    /// Embeddings (B, Σ feature_dim) of images x (B, 3, 224, 224) in [0, 1] (the package's
    /// Resize((224, 224), bicubic) + ToTensor), each row centred and L2-normalised.
    pub fn embed(&self, be: &B, x: &[f32], b: usize) -> Result<Vec<f32>> {
        let s = PIPELINE_SIZE;
        ensure!(
            x.len() == b * 3 * s * s,
            "DreamSim: {} input values for ({b}, 3, {s}, {s})",
            x.len()
        );
        let width = self.config.embedding_dim();
        let mut feats = Vec::with_capacity(self.towers.len()); // (B, E) per tower
        for tower in &self.towers {
            let (mean, std) = tower.config.tower.mean_std();
            // transforms.Normalize on the ToTensor output, in f32.
            let xn: Vec<f32> = x
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let ch = (i / (s * s)) % 3;
                    (v - mean[ch]) / std[ch]
                })
                .collect();
            feats.push((tower.forward(be, &xn, b)?, tower.config.feature_dim));
        }
        // The towers' features side by side, in one copy to the host: (B, width).
        let parts: Vec<(&B::Buf, usize)> = feats.iter().map(|(f, e)| (f, *e)).collect();
        let mut out = be.download(&be.concat_channels(&parts, b, 1)?)?;
        for row in out.chunks_mut(width) {
            normalize_embedding(row);
        }
        Ok(out)
    }
}

/// The package's `normalize_embedding`: subtract the row's mean, then divide by the L2 norm of
/// the centred row (in f64, rounded once).
fn normalize_embedding(row: &mut [f32]) {
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / row.len() as f64;
    let norm = row
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        .sqrt();
    for v in row.iter_mut() {
        *v = ((*v as f64 - mean) / norm) as f32;
    }
}
