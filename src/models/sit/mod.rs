//! Scalable Interpolant Transformer (willisma/SiT `models.py`), eval mode.
//! One struct per upstream module, loaded by its state_dict prefix, generic over the backend.

mod config;

use anyhow::{bail, ensure, Result};

use super::layers::{Linear, Taps};
use crate::backend::{Backend, Cols, Op};
use crate::weights::source::TensorSource;
pub use config::{SiTConfig, FREQ_DIM, PRESETS};

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
    /// The backend ops its forward calls (tests/models/model_ops.rs checks the list).
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
        // REPA checkpoints carry the projector heads of their alignment loss: unused here.
        file.check_ignoring(&config.expected_tensors(), &["projectors."])?;
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
                    ada: Linear::load_precise(
                        be,
                        file,
                        &format!("{b}.adaLN_modulation.1"),
                        d,
                        6 * d,
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SiT {
            pos_embed: be.upload(&file.f32("pos_embed")?)?,
            x_embedder: PatchEmbed {
                proj: Linear::load_precise(be, file, "x_embedder.proj", c * p * p, d)?,
            },
            t_embedder: TimestepEmbedder {
                mlp0: Linear::load_precise(be, file, "t_embedder.mlp.0", FREQ_DIM, d)?,
                mlp2: Linear::load_precise(be, file, "t_embedder.mlp.2", d, d)?,
            },
            y_embedder: LabelEmbedder {
                table: be.upload(&file.f32("y_embedder.embedding_table.weight")?)?,
            },
            blocks,
            final_layer: FinalLayer {
                ada: Linear::load_precise(be, file, "final_layer.adaLN_modulation.1", d, 2 * d)?,
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
        let n = t.len();
        ensure!(
            y.len() == n,
            "SiT forward: {} labels for a batch of {n}",
            y.len()
        );
        // Class ids travel as exact f32 integers, so that every input is a plain device buffer.
        let idf: Vec<f32> = self.check_labels(y)?.iter().map(|&i| i as f32).collect();
        self.run(be, x, t, &idf, ClassIn::Ids, taps)
    }

    /// `forward` with the class embeddings given, y_emb (N, D), in place of the label table's
    /// rows (CADS's annealed condition).
    pub fn forward_embedded(
        &self,
        be: &B,
        x: &[f32],
        t: &[f32],
        y_emb: &[f32],
    ) -> Result<Vec<f32>> {
        let (n, d) = (t.len(), self.config.hidden_size);
        ensure!(
            y_emb.len() == n * d,
            "SiT forward: {} class-embedding floats for a batch of {n}×{d}",
            y_emb.len()
        );
        self.run(be, x, t, y_emb, ClassIn::Embedded, None)
    }

    /// The label table's rows of `y`, (N, D).
    pub fn class_embeddings(&self, be: &B, y: &[i64]) -> Result<Vec<f32>> {
        let idf: Vec<f32> = self.check_labels(y)?.iter().map(|&i| i as f32).collect();
        let ids = be.upload(&idf)?;
        be.download(&be.gather_rows_idf(&self.y_embedder.table, &ids, self.config.hidden_size)?)
    }

    /// The labels as table rows, refusing any outside the table.
    fn check_labels(&self, y: &[i64]) -> Result<Vec<usize>> {
        let cfg = &self.config;
        y.iter()
            .map(|&l| {
                if l >= 0 && (l as usize) < cfg.label_rows() {
                    Ok(l as usize)
                } else {
                    bail!("class label {l} is outside 0..{} (null class {} exists only with class_dropout_prob > 0)", cfg.label_rows(), cfg.num_classes)
                }
            })
            .collect()
    }

    /// Uploads the inputs and runs the device work (captured once per shape when no taps are
    /// asked for).
    fn run(
        &self,
        be: &B,
        x: &[f32],
        t: &[f32],
        class: &[f32],
        how: ClassIn,
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
        let freq = timestep_embedding(t, FREQ_DIM); // (N, 256)
        let Some(taps) = taps else {
            // Shapes are fixed by the model and the batch: the backend may capture the device work
            // once and replay it.
            let key = format!("SiT@{:p} n={n} {how:?}", self);
            return be.run_graph(&key, &[x, &freq, class], &|bufs| {
                self.core(be, &bufs[0], &bufs[1], &bufs[2], how, n, None)
            });
        };
        let bufs = [be.upload(x)?, be.upload(&freq)?, be.upload(class)?];
        let out = self.core(be, &bufs[0], &bufs[1], &bufs[2], how, n, Some(taps))?;
        be.download(&out)
    }

    /// The device work of `forward`: x (N, C, H, W), the timesteps' sinusoidal features (N, 256)
    /// and the class ids (N, exact f32) or embeddings (N, D) → (N, C, H, W).
    #[allow(clippy::too_many_arguments)]
    fn core(
        &self,
        be: &B,
        xb: &B::Buf,
        freq: &B::Buf,
        class: &B::Buf,
        how: ClassIn,
        n: usize,
        mut taps: Option<&mut Taps>,
    ) -> Result<B::Buf> {
        let want_taps = taps.is_some();
        let mut tap = |name: &str, buf: &B::Buf| -> Result<()> {
            if let Some(taps) = taps.as_deref_mut() {
                taps.insert(name.to_string(), be.download(buf)?);
            }
            Ok(())
        };
        be.range_push("SiT forward");
        let mut h = self.tokens(be, xb, n, &mut tap)?; // (N, T, D)
        let c = self.conditioning(be, freq, class, how, n, &mut tap)?; // (N, D)

        // Every adaLN starts with SiLU(c), the left operand of its product.
        let c_act = be.operand(be.silu(&c)?, self.config.hidden_size)?;
        let y = self.blocks(be, &mut h, &c_act, n, &mut tap)?; // (N, T, D)
        let out = self.final_output(be, &y, n, want_taps, &mut tap)?; // (N, C, H, W)
        be.range_pop();
        Ok(out)
    }

    /// Patch embedding + fixed positional embedding: x (N, C, H, W) → (N, T, D).
    fn tokens(&self, be: &B, xb: &B::Buf, n: usize, tap: &mut Tap<B>) -> Result<B::Buf> {
        let cfg = &self.config;
        let (d, tok, s, p) = (
            cfg.hidden_size,
            cfg.tokens(),
            cfg.input_size,
            cfg.patch_size,
        );
        let patches = be.patchify(xb, n, cfg.in_channels, s, s, p)?; // (N, T, C·p·p)
        let mut h = self.x_embedder.proj.forward(be, &patches, n * tok)?; // (N, T, D)
        tap("tap.x_embedder.out", &h)?;
        be.add_row(&mut h, &self.pos_embed, n, tok * d)?;
        tap("tap.pos_added_tokens", &h)?;
        Ok(h)
    }

    /// The conditioning c = t_emb + y_emb (N, D).
    fn conditioning(
        &self,
        be: &B,
        freq: &B::Buf,
        class: &B::Buf,
        how: ClassIn,
        n: usize,
        tap: &mut Tap<B>,
    ) -> Result<B::Buf> {
        tap("tap.t_embedder.freq_embedding", freq)?;
        let t1 = self.t_embedder.mlp0.forward(be, freq, n)?;
        let t_emb = self.t_embedder.mlp2.forward(be, &be.silu(&t1)?, n)?; // (N, D)
        tap("tap.t_embedder.out", &t_emb)?;
        let d = self.config.hidden_size;
        let gathered;
        let y_emb = match how {
            ClassIn::Ids => {
                gathered = be.gather_rows_idf(&self.y_embedder.table, class, d)?; // (N, D)
                &gathered
            }
            ClassIn::Embedded => class,
        };
        tap("tap.y_embedder.out", y_emb)?;
        let mut c = t_emb;
        be.add(&mut c, y_emb)?;
        tap("tap.c", &c)?;
        Ok(c)
    }

    /// The adaLN output that block `k` reads, (N, 6D); past the last block, the final layer's
    /// (N, 2D): shift, scale.
    fn adaln(&self, be: &B, c_act: &B::Buf, n: usize, k: usize) -> Result<B::Buf> {
        match self.blocks.get(k) {
            Some(b) => b.ada.forward(be, c_act, n),
            None => self.final_layer.ada.forward(be, c_act, n),
        }
    }

    /// Row width of [`Self::adaln`]`(k)`.
    fn adaln_width(&self, k: usize) -> usize {
        let d = self.config.hidden_size;
        if k < self.blocks.len() {
            6 * d
        } else {
            2 * d
        }
    }

    /// The tap name of [`Self::adaln`]`(k)`.
    fn adaln_tap(&self, k: usize) -> String {
        if k < self.blocks.len() {
            format!("tap.blocks.{k}.adaLN_modulation.out")
        } else {
            "tap.final_layer.adaLN_modulation.out".to_string()
        }
    }

    /// The transformer blocks over h (N, T, D), in place; returns the final layer's input,
    /// LN(h)·(1 + scale) + shift (N, T, D).
    fn blocks(
        &self,
        be: &B,
        h: &mut B::Buf,
        c_act: &B::Buf,
        n: usize,
        tap: &mut Tap<B>,
    ) -> Result<B::Buf> {
        let cfg = &self.config;
        let (d, tok) = (cfg.hidden_size, cfg.tokens());
        // Each branch ends with its gated residual fused into the LayerNorm + modulate of the
        // next one, so every block needs the next adaLN: block k+1's, or the final layer's.
        let mut m = self.adaln(be, c_act, n, 0)?;
        tap(&self.adaln_tap(0), &m)?;
        let (shift, scale) = shift_scale::<B>(&m, self.adaln_width(0), d);
        let mut y = be.layer_norm_modulate(h, shift, scale, n, tok, d, LN_EPS)?;
        for (k, block) in self.blocks.iter().enumerate() {
            let next = self.adaln(be, c_act, n, k + 1)?;
            tap(&self.adaln_tap(k + 1), &next)?;
            be.range_push("SiT block");
            let io = BlockIo {
                m: &m,
                next: shift_scale::<B>(&next, self.adaln_width(k + 1), d),
            };
            y = block.forward(be, h, &y, io, n, cfg, &mut |name, buf| {
                tap(&format!("tap.blocks.{k}.{name}"), buf)
            })?;
            be.range_pop();
            m = next;
        }
        Ok(y)
    }

    /// Final layer: its LayerNorm + modulate came with the last residual, so y (N, T, D) →
    /// Linear → unpatchify → (N, C, H, W), the first C channels.
    fn final_output(
        &self,
        be: &B,
        y: &B::Buf,
        n: usize,
        want_taps: bool,
        tap: &mut Tap<B>,
    ) -> Result<B::Buf> {
        let cfg = &self.config;
        let (tok, s, p) = (cfg.tokens(), cfg.input_size, cfg.patch_size);
        let o = self.final_layer.linear.forward(be, y, n * tok)?; // (N, T, p²·C_out)
        tap("tap.final_layer.out", &o)?;
        let c_out = cfg.out_channels();
        if want_taps {
            let full = be.unpatchify(&o, n, c_out, c_out, s, s, p)?;
            tap("tap.unpatchified", &full)?;
        }
        be.unpatchify(&o, n, c_out, cfg.in_channels, s, s, p) // (N, C, H, W)
    }
}

/// Records an intermediate tensor under a name (a no-op without taps).
/// How the class enters the conditioning: table row ids, or the embeddings themselves.
#[derive(Debug, Clone, Copy)]
enum ClassIn {
    Ids,
    Embedded,
}

type Tap<'a, B> = dyn FnMut(&str, &<B as Backend>::Buf) -> Result<()> + 'a;

/// The shift and scale columns (the first two D-wide chunks) of an adaLN output with rows of
/// `width`.
fn shift_scale<B: Backend>(m: &B::Buf, width: usize, d: usize) -> (Cols<'_, B>, Cols<'_, B>) {
    (
        Cols {
            buf: m,
            stride: width,
            offset: 0,
        },
        Cols {
            buf: m,
            stride: width,
            offset: d,
        },
    )
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
        tap: &mut Tap<B>,
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
