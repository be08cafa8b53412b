//! Scalable Interpolant Transformer (willisma/SiT `models.py`), eval mode.
//! One struct per upstream module, loaded by its state_dict prefix, generic over the backend.

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::layers::{Linear, Taps};
use crate::backend::{Backend, Cols, Op};
use crate::weights::source::TensorSource;
use crate::weights::{Expected, WeightFile};

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

/// Size of the sinusoidal timestep features.
pub const FREQ_DIM: usize = 256;
const LN_EPS: f32 = 1e-6;

/// `TimestepEmbedder.timestep_embedding(t, 256)`: `[cos(t·f_k), sin(t·f_k)]` with
/// `f_k = exp(fl32(−ln 10000)·k / 128)` computed in f32 in the reference's order. (N) → (N, 256).
pub fn timestep_embedding(t: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let c = -(10000f64.ln()) as f32;
    let freqs: Vec<f32> = (0..half)
        .map(|k| ((c * k as f32) / half as f32).exp())
        .collect();
    let mut out = vec![0f32; t.len() * dim];
    for (row, &tt) in out.chunks_mut(dim).zip(t) {
        for (k, &f) in freqs.iter().enumerate() {
            let arg = (tt * f) as f64;
            row[k] = arg.cos() as f32;
            row[half + k] = arg.sin() as f32;
        }
    }
    out
}

/// `x_embedder`: timm `PatchEmbed`, a Conv2d with kernel = stride = p, run as patchify + GEMM.
pub struct PatchEmbed<B: Backend> {
    proj: Linear<B>,
}

/// `t_embedder`: sinusoidal features → Linear → SiLU → Linear.
pub struct TimestepEmbedder<B: Backend> {
    mlp0: Linear<B>,
    mlp2: Linear<B>,
}

/// `y_embedder`: the label table, null class at index `num_classes`.
pub struct LabelEmbedder<B: Backend> {
    table: B::Buf,
}

/// timm `Attention`: fused qkv, softmax attention, output projection.
pub struct Attention<B: Backend> {
    qkv: Linear<B>,
    proj: Linear<B>,
}

/// timm `Mlp`: fc1 → tanh-GELU → fc2.
pub struct Mlp<B: Backend> {
    fc1: Linear<B>,
    fc2: Linear<B>,
}

/// `SiTBlock`: adaLN-Zero transformer block.
pub struct SiTBlock<B: Backend> {
    attn: Attention<B>,
    mlp: Mlp<B>,
    ada: Linear<B>,
}

/// `FinalLayer`: adaLN (shift, scale) → LayerNorm → Linear to p²·C_out features.
pub struct FinalLayer<B: Backend> {
    ada: Linear<B>,
    linear: Linear<B>,
}

pub struct SiT<B: Backend> {
    pub config: SiTConfig,
    pos_embed: B::Buf,
    x_embedder: PatchEmbed<B>,
    t_embedder: TimestepEmbedder<B>,
    y_embedder: LabelEmbedder<B>,
    blocks: Vec<SiTBlock<B>>,
    final_layer: FinalLayer<B>,
}

impl<B: Backend> SiT<B> {
    /// The backend ops its forward calls (tests/model_ops.rs checks the list).
    pub const OPS: &'static [Op] = &[
        Op::Linear,
        Op::LinearOperand,
        Op::LinearGelu,
        Op::Operand,
        Op::LayerNormModulate,
        Op::GatedAddLayerNormModulate,
        Op::AddRow,
        Op::Add,
        Op::Silu,
        Op::Attention,
        Op::Patchify,
        Op::Unpatchify,
        Op::GatherRowsIdf,
    ];

    /// Checks every tensor of `file` against `config` (all problems at once), then uploads them.
    pub fn load(be: &B, file: &dyn TensorSource, config: SiTConfig) -> Result<Self> {
        crate::backend::require(be, "SiT", Self::OPS)?;
        config.validate()?;
        file.check(&config.expected_tensors())?;
        let (d, p, c) = (config.hidden_size, config.patch_size, config.in_channels);
        let h = config.mlp_hidden();
        let blocks = (0..config.depth)
            .map(|k| {
                let b = format!("blocks.{k}");
                Ok(SiTBlock {
                    attn: Attention {
                        qkv: Linear::load(be, file, &format!("{b}.attn.qkv"), d, 3 * d)?,
                        proj: Linear::load(be, file, &format!("{b}.attn.proj"), d, d)?,
                    },
                    mlp: Mlp {
                        fc1: Linear::load(be, file, &format!("{b}.mlp.fc1"), d, h)?,
                        fc2: Linear::load(be, file, &format!("{b}.mlp.fc2"), h, d)?,
                    },
                    ada: Linear::load(be, file, &format!("{b}.adaLN_modulation.1"), d, 6 * d)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SiT {
            pos_embed: be.upload(&file.f32("pos_embed")?)?,
            x_embedder: PatchEmbed {
                proj: Linear::load(be, file, "x_embedder.proj", c * p * p, d)?,
            },
            t_embedder: TimestepEmbedder {
                mlp0: Linear::load(be, file, "t_embedder.mlp.0", FREQ_DIM, d)?,
                mlp2: Linear::load(be, file, "t_embedder.mlp.2", d, d)?,
            },
            y_embedder: LabelEmbedder {
                table: be.upload(&file.f32("y_embedder.embedding_table.weight")?)?,
            },
            blocks,
            final_layer: FinalLayer {
                ada: Linear::load(be, file, "final_layer.adaLN_modulation.1", d, 2 * d)?,
                linear: Linear::load(
                    be,
                    file,
                    "final_layer.linear",
                    d,
                    p * p * config.out_channels(),
                )?,
            },
            config,
        })
    }

    /// The null (unconditional) class id.
    pub fn null_class(&self) -> usize {
        self.config.num_classes
    }

    /// `SiT.forward(x, t, y)`: x (N, C, H, W), t (N), y (N) → (N, C, H, W) (the first C channels
    /// of the unpatchified output when learn_sigma).
    pub fn forward(&self, be: &B, x: &[f32], t: &[f32], y: &[i64]) -> Result<Vec<f32>> {
        self.forward_taps(be, x, t, y, None)
    }

    /// `forward`, recording intermediate tensors into `taps` when given.
    pub fn forward_taps(
        &self,
        be: &B,
        x: &[f32],
        t: &[f32],
        y: &[i64],
        taps: Option<&mut Taps>,
    ) -> Result<Vec<f32>> {
        let cfg = &self.config;
        let n = t.len();
        ensure!(
            x.len() == n * cfg.sample_len(),
            "SiT forward: x has {} floats, expected {n}×{}",
            x.len(),
            cfg.sample_len()
        );
        ensure!(
            y.len() == n,
            "SiT forward: {} labels for a batch of {n}",
            y.len()
        );
        let ids = y
            .iter()
            .map(|&l| {
                if l >= 0 && (l as usize) < cfg.label_rows() {
                    Ok(l as usize)
                } else {
                    bail!("class label {l} is outside 0..{} (null class {} exists only with class_dropout_prob > 0)", cfg.label_rows(), cfg.num_classes)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let freq = timestep_embedding(t, FREQ_DIM); // (N, 256)
                                                    // Class ids travel as exact f32 integers, so that every input is a plain device buffer.
        let idf: Vec<f32> = ids.iter().map(|&i| i as f32).collect();
        let Some(taps) = taps else {
            // Shapes are fixed by the model and the batch: the backend may capture the device work
            // once and replay it.
            let key = format!("SiT@{:p} n={n}", self);
            return be.run_graph(&key, &[x, &freq, &idf], &|bufs| {
                self.core(be, &bufs[0], &bufs[1], &bufs[2], n, None)
            });
        };
        let bufs = [be.upload(x)?, be.upload(&freq)?, be.upload(&idf)?];
        let out = self.core(be, &bufs[0], &bufs[1], &bufs[2], n, Some(taps))?;
        be.download(&out)
    }

    /// The device work of `forward`: x (N, C, H, W), the timesteps' sinusoidal features (N, 256)
    /// and the class ids (N, exact f32) → (N, C, H, W).
    fn core(
        &self,
        be: &B,
        xb: &B::Buf,
        freq: &B::Buf,
        ids: &B::Buf,
        n: usize,
        mut taps: Option<&mut Taps>,
    ) -> Result<B::Buf> {
        let cfg = &self.config;
        let (d, tok, s, p) = (
            cfg.hidden_size,
            cfg.tokens(),
            cfg.input_size,
            cfg.patch_size,
        );
        let want_taps = taps.is_some();
        let mut tap = |name: &str, buf: &B::Buf| -> Result<()> {
            if let Some(taps) = taps.as_deref_mut() {
                taps.insert(name.to_string(), be.download(buf)?);
            }
            Ok(())
        };
        be.range_push("SiT forward");

        // Patch embedding + fixed positional embedding.
        let patches = be.patchify(xb, n, cfg.in_channels, s, s, p)?; // (N, T, C·p·p)
        let mut h = self.x_embedder.proj.forward(be, &patches, n * tok)?; // (N, T, D)
        tap("tap.x_embedder.out", &h)?;
        be.add_row(&mut h, &self.pos_embed, n, tok * d)?;
        tap("tap.pos_added_tokens", &h)?;

        // Conditioning c = t_emb + y_emb.
        tap("tap.t_embedder.freq_embedding", freq)?;
        let t1 = self.t_embedder.mlp0.forward(be, freq, n)?;
        let t_emb = self.t_embedder.mlp2.forward(be, &be.silu(&t1)?, n)?; // (N, D)
        tap("tap.t_embedder.out", &t_emb)?;
        let y_emb = be.gather_rows_idf(&self.y_embedder.table, ids, d)?; // (N, D)
        tap("tap.y_embedder.out", &y_emb)?;
        let mut c = t_emb;
        be.add(&mut c, &y_emb)?;
        tap("tap.c", &c)?;
        // Every adaLN starts with SiLU(c), the left operand of its product.
        let c_act = be.operand(be.silu(&c)?)?;

        // Each branch ends with its gated residual fused into the LayerNorm + modulate of the
        // next one, so every block needs the next adaLN: block k+1's, or the final layer's.
        let ada = |k: usize| -> Result<B::Buf> {
            match self.blocks.get(k) {
                Some(b) => b.ada.forward(be, &c_act, n), // (N, 6D)
                None => self.final_layer.ada.forward(be, &c_act, n), // (N, 2D): shift, scale
            }
        };
        let width = |k: usize| if k < self.blocks.len() { 6 * d } else { 2 * d };
        let mut m = ada(0)?;
        if self.blocks.is_empty() {
            tap("tap.final_layer.adaLN_modulation.out", &m)?;
        } else {
            tap("tap.blocks.0.adaLN_modulation.out", &m)?;
        }
        let (w0, stride) = (width(0), |k| width(k));
        let mut y = be.layer_norm_modulate(
            &h,
            Cols {
                buf: &m,
                stride: w0,
                offset: 0,
            },
            Cols {
                buf: &m,
                stride: w0,
                offset: d,
            },
            n,
            tok,
            d,
            LN_EPS,
        )?;
        for (k, block) in self.blocks.iter().enumerate() {
            let next = ada(k + 1)?;
            if k + 1 < self.blocks.len() {
                tap(&format!("tap.blocks.{}.adaLN_modulation.out", k + 1), &next)?;
            } else {
                tap("tap.final_layer.adaLN_modulation.out", &next)?;
            }
            be.range_push("SiT block");
            let w = stride(k + 1);
            let io = BlockIo {
                m: &m,
                next: (
                    Cols {
                        buf: &next,
                        stride: w,
                        offset: 0,
                    },
                    Cols {
                        buf: &next,
                        stride: w,
                        offset: d,
                    },
                ),
            };
            y = block.forward(be, &mut h, &y, io, n, cfg, &mut |name, buf| {
                tap(&format!("tap.blocks.{k}.{name}"), buf)
            })?;
            be.range_pop();
            m = next;
        }

        // Final layer: its LayerNorm + modulate came with the last residual.
        let o = self.final_layer.linear.forward(be, &y, n * tok)?; // (N, T, p²·C_out)
        tap("tap.final_layer.out", &o)?;
        let c_out = cfg.out_channels();
        if want_taps {
            let full = be.unpatchify(&o, n, c_out, c_out, s, s, p)?;
            tap("tap.unpatchified", &full)?;
        }
        let out = be.unpatchify(&o, n, c_out, cfg.in_channels, s, s, p)?; // (N, C, H, W)
        be.range_pop();
        Ok(out)
    }
}

/// What a block reads beyond its input: its adaLN output (N, 6D), and the shift and scale of the
/// branch after it, whose LayerNorm + modulate it computes with its last residual.
struct BlockIo<'a, B: Backend> {
    m: &'a B::Buf,
    next: (Cols<'a, B>, Cols<'a, B>),
}

impl<B: Backend> SiTBlock<B> {
    /// x (N, T, D) in place, y = LN(x)·(1 + scale_msa) + shift_msa (its first branch's input)
    /// → the next branch's input, LN(x')·(1 + next scale) + next shift.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        be: &B,
        x: &mut B::Buf,
        y: &B::Buf,
        io: BlockIo<B>,
        n: usize,
        cfg: &SiTConfig,
        tap: &mut dyn FnMut(&str, &B::Buf) -> Result<()>,
    ) -> Result<B::Buf> {
        let (d, t) = (cfg.hidden_size, cfg.tokens());
        // Chunks in upstream order: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp.
        let chunk = |i: usize| Cols {
            buf: io.m,
            stride: 6 * d,
            offset: i * d,
        };

        be.range_push("attention");
        let qkv = self.attn.qkv.forward_operand(be, y, n * t)?; // (N, T, 3D)
        let a = be.attention(&qkv, n, t, cfg.num_heads, cfg.head_dim())?; // (N, T, D)
        let a = self.attn.proj.forward(be, &a, n * t)?;
        be.range_pop();
        tap("attn.out", &a)?;
        let y =
            be.gated_add_layer_norm_modulate(x, &a, chunk(2), chunk(3), chunk(4), n, t, d, LN_EPS)?;

        be.range_push("MLP");
        let hid = self.mlp.fc1.forward_gelu(be, &y, n * t)?; // (N, T, 4D)
        let mo = self.mlp.fc2.forward(be, &hid, n * t)?; // (N, T, D)
        be.range_pop();
        tap("mlp.out", &mo)?;
        let (shift, scale) = io.next;
        let next =
            be.gated_add_layer_norm_modulate(x, &mo, chunk(5), shift, scale, n, t, d, LN_EPS)?;
        tap("out", x)?;
        Ok(next)
    }
}
