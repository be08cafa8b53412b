//! The SD-VAE decoder (diffusers `AutoencoderKL`: `post_quant_conv` + `Decoder`), eval mode.
//! Reads diffusers key names (current and legacy attention names) and the original LDM names,
//! with or without the `first_stage_model.` prefix.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::layers::Taps;
use crate::backend::{Backend, Nchw, Op, Window};
use crate::weights::source::TensorSource;

const GN_EPS: f32 = 1e-6;

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
struct Names<'a> {
    file: &'a dyn TensorSource,
    prefix: &'static str,
    style: Style,
    up_blocks: usize,
}

impl Names<'_> {
    fn detect(file: &dyn TensorSource) -> Result<Names<'_>> {
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
    fn map(&self, key: &str) -> String {
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

    fn get(&self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
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
}

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

/// `nn.Conv2d` with bias, stride 1, padding k / 2.
pub struct Conv2d<B: Backend> {
    w: B::Buf,
    b: B::Buf,
    ci: usize,
    co: usize,
    k: usize,
}

impl<B: Backend> Conv2d<B> {
    fn load(be: &B, names: &Names, key: &str, ci: usize, co: usize, k: usize) -> Result<Self> {
        Ok(Conv2d {
            w: be.upload(&names.get(&format!("{key}.weight"), &[co, ci, k, k])?)?,
            b: be.upload(&names.get(&format!("{key}.bias"), &[co])?)?,
            ci,
            co,
            k,
        })
    }

    /// (N, Ci, H, W) → (N, Co, H, W)
    fn forward(&self, be: &B, x: &B::Buf, n: usize, h: usize, w: usize) -> Result<B::Buf> {
        let dims = Nchw {
            n,
            c: self.ci,
            h,
            w,
        };
        let win = Window::square(self.k, 1, self.k / 2);
        be.conv2d(x, dims, &self.w, &self.b, self.co, win, false)
    }
}

/// `nn.GroupNorm` (affine).
pub struct GroupNorm<B: Backend> {
    gamma: B::Buf,
    beta: B::Buf,
    c: usize,
    groups: usize,
}

impl<B: Backend> GroupNorm<B> {
    fn load(be: &B, names: &Names, key: &str, c: usize, groups: usize) -> Result<Self> {
        Ok(GroupNorm {
            gamma: be.upload(&names.get(&format!("{key}.weight"), &[c])?)?,
            beta: be.upload(&names.get(&format!("{key}.bias"), &[c])?)?,
            c,
            groups,
        })
    }

    fn forward(&self, be: &B, x: &B::Buf, n: usize, hw: usize, silu: bool) -> Result<B::Buf> {
        be.group_norm(
            x,
            &self.gamma,
            &self.beta,
            n,
            self.c,
            hw,
            self.groups,
            GN_EPS,
            silu,
        )
    }
}

/// `ResnetBlock2D` without time embedding: GN → SiLU → conv ×2, plus a 1×1 shortcut when Ci ≠ Co.
pub struct ResnetBlock2D<B: Backend> {
    norm1: GroupNorm<B>,
    conv1: Conv2d<B>,
    norm2: GroupNorm<B>,
    conv2: Conv2d<B>,
    conv_shortcut: Option<Conv2d<B>>,
}

impl<B: Backend> ResnetBlock2D<B> {
    fn load(be: &B, names: &Names, key: &str, ci: usize, co: usize, groups: usize) -> Result<Self> {
        Ok(ResnetBlock2D {
            norm1: GroupNorm::load(be, names, &format!("{key}.norm1"), ci, groups)?,
            conv1: Conv2d::load(be, names, &format!("{key}.conv1"), ci, co, 3)?,
            norm2: GroupNorm::load(be, names, &format!("{key}.norm2"), co, groups)?,
            conv2: Conv2d::load(be, names, &format!("{key}.conv2"), co, co, 3)?,
            conv_shortcut: if ci != co {
                Some(Conv2d::load(
                    be,
                    names,
                    &format!("{key}.conv_shortcut"),
                    ci,
                    co,
                    1,
                )?)
            } else {
                None
            },
        })
    }

    fn forward(&self, be: &B, x: &B::Buf, n: usize, h: usize, w: usize) -> Result<B::Buf> {
        let a = self.norm1.forward(be, x, n, h * w, true)?;
        let a = self.conv1.forward(be, &a, n, h, w)?;
        let a = self.norm2.forward(be, &a, n, h * w, true)?;
        let a = self.conv2.forward(be, &a, n, h, w)?;
        // (shortcut + h) / output_scale_factor (1); IEEE addition commutes, so h += shortcut.
        let mut out = a;
        match &self.conv_shortcut {
            Some(c) => be.add(&mut out, &c.forward(be, x, n, h, w)?)?,
            None => be.add(&mut out, x)?,
        }
        Ok(out)
    }
}

/// The mid block's single-head self-attention over the H·W positions, with a residual.
pub struct Attention<B: Backend> {
    group_norm: GroupNorm<B>,
    /// to_q, to_k, to_v stacked into one (3C, C) projection.
    qkv_w: B::Buf,
    qkv_b: B::Buf,
    out_w: B::Buf,
    out_b: B::Buf,
    c: usize,
}

impl<B: Backend> Attention<B> {
    fn load(be: &B, names: &Names, key: &str, c: usize, groups: usize) -> Result<Self> {
        let mut w = Vec::with_capacity(3 * c * c);
        let mut b = Vec::with_capacity(3 * c);
        for p in ["to_q", "to_k", "to_v"] {
            w.extend(names.get(&format!("{key}.{p}.weight"), &[c, c])?);
            b.extend(names.get(&format!("{key}.{p}.bias"), &[c])?);
        }
        Ok(Attention {
            group_norm: GroupNorm::load(be, names, &format!("{key}.group_norm"), c, groups)?,
            qkv_w: be.upload(&w)?,
            qkv_b: be.upload(&b)?,
            out_w: be.upload(&names.get(&format!("{key}.to_out.0.weight"), &[c, c])?)?,
            out_b: be.upload(&names.get(&format!("{key}.to_out.0.bias"), &[c])?)?,
            c,
        })
    }

    /// x (N, C, H·W) → x + to_out(softmax(q kᵀ / √C) v)
    fn forward(&self, be: &B, x: &B::Buf, n: usize, hw: usize) -> Result<B::Buf> {
        let c = self.c;
        let h = self.group_norm.forward(be, x, n, hw, false)?;
        let tokens = be.transpose(&h, n, c, hw)?; // (N, HW, C)
        let qkv = be.linear(&tokens, &self.qkv_w, Some(&self.qkv_b), n * hw, c, 3 * c)?; // (N, HW, 3C)
        let a = be.attention(&qkv, n, hw, 1, c)?; // (N, HW, C)
        let o = be.linear(&a, &self.out_w, Some(&self.out_b), n * hw, c, c)?;
        let mut out = be.transpose(&o, n, hw, c)?; // (N, C, HW)
        be.add(&mut out, x)?;
        Ok(out)
    }
}

/// `UpDecoderBlock2D`: resnets, then nearest ×2 and a 3×3 conv (all but the last block).
pub struct UpDecoderBlock2D<B: Backend> {
    resnets: Vec<ResnetBlock2D<B>>,
    upsampler: Option<Conv2d<B>>,
}

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
    /// The backend ops its forward calls (tests/model_ops.rs checks the list).
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
        let names = Names::detect(file)?;
        let config = match file.metadata_entry("config") {
            Some(json) => serde_json::from_str::<VaeConfig>(json).with_context(|| {
                format!(
                    "{}: __metadata__ config is not an AutoencoderKL config",
                    file.origin()
                )
            })?,
            None => infer_config(&names)?,
        };
        let cfg = &config;
        ensure!(
            !cfg.block_out_channels.is_empty(),
            "VAE config: block_out_channels is empty"
        );
        ensure!(
            names.up_blocks == cfg.block_out_channels.len(),
            "{}: {} up blocks in the file, but the config has {} block_out_channels",
            file.origin(),
            names.up_blocks,
            cfg.block_out_channels.len()
        );
        // Every decoder tensor in the file must be one this architecture uses: a config that
        // disagrees with the weights must not decode silently.
        let wanted: std::collections::HashSet<String> = cfg
            .expected_tensors()
            .keys()
            .map(|k| names.map(k))
            .collect();
        let extra: Vec<&str> = file
            .tensor_names()
            .into_iter()
            .filter(|n| {
                let bare = n.strip_prefix(names.prefix).unwrap_or(n);
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
            let resnets = (0..=cfg.layers_per_block)
                .map(|j| {
                    ResnetBlock2D::load(
                        be,
                        &names,
                        &format!("decoder.up_blocks.{i}.resnets.{j}"),
                        if j == 0 { ci } else { co },
                        co,
                        g,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let upsampler = if i + 1 < rev.len() {
                Some(Conv2d::load(
                    be,
                    &names,
                    &format!("decoder.up_blocks.{i}.upsamplers.0.conv"),
                    co,
                    co,
                    3,
                )?)
            } else {
                None
            };
            up_blocks.push(UpDecoderBlock2D { resnets, upsampler });
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
            for (j, r) in block.resnets.iter().enumerate() {
                x = r.forward(be, &x, n, hh, ww)?;
                tap(&format!("tap.decoder.up_blocks.{i}.resnets.{j}.out"), &x)?;
            }
            if let Some(up) = &block.upsampler {
                let c = up.ci;
                x = be.upsample_nearest2x(&x, n, c, hh, ww)?;
                (hh, ww) = (2 * hh, 2 * ww);
                x = up.forward(be, &x, n, hh, ww)?;
            }
            tap(&format!("tap.decoder.up_blocks.{i}.out"), &x)?;
        }
        let x = self.conv_norm_out.forward(be, &x, n, hh * ww, false)?;
        tap("tap.decoder.conv_norm_out.out", &x)?;
        let x = be.silu(&x)?;
        let x = self.conv_out.forward(be, &x, n, hh, ww)?;
        be.download(&x)
    }
}

/// The architecture from tensor shapes, for files without a config (GroupNorm groups: 32).
fn infer_config(names: &Names) -> Result<VaeConfig> {
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
