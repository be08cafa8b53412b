//! The `Backend` trait: buffers of f32 and the primitive ops the networks are built from.
//! Models are generic over it, so the CPU reference and a device backend run the same model code.
//! Every op names its PyTorch equivalent; shapes are row-major, batch first.

pub mod cpu;
#[cfg(any(feature = "cuda", feature = "cuda12"))]
pub mod cuda;
mod shapes;

pub use shapes::{check_group_norm, conv2d_output, pool2d_output, Nchw, Window};

use anyhow::Result;

/// A per-sample vector stored as a column range of a (B, stride) matrix: row `b` is
/// `buf[b * stride + offset ..][..len]`. Used for the adaLN chunks (shift, scale, gate).
pub struct Cols<'a, B: ?Sized + Backend> {
    pub buf: &'a B::Buf,
    pub stride: usize,
    pub offset: usize,
}

impl<B: ?Sized + Backend> Cols<'_, B> {
    /// Checks that the view fits `b` rows of `d` values in a buffer of `len` elements.
    pub fn check(&self, len: usize, b: usize, d: usize, what: &str) -> Result<()> {
        let fits = self
            .offset
            .checked_add(d)
            .is_some_and(|end| end <= self.stride)
            && b.checked_mul(self.stride).is_some_and(|need| need <= len);
        anyhow::ensure!(
            fits,
            "{what}: column view (stride {}, offset {}) does not fit {b} rows of {d} in {len} elements",
            self.stride,
            self.offset
        );
        Ok(())
    }
}

impl<B: ?Sized + Backend> Clone for Cols<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: ?Sized + Backend> Copy for Cols<'_, B> {}

crate::named! {
    /// Arithmetic of the matrix products (`--precision`). Strict fp32 is the default and the test mode.
    #[derive(Default)]
    pub enum Precision {
        /// IEEE fp32 everywhere.
        #[default]
        Fp32 = "fp32",
        /// TF32 tensor-core products (10-bit mantissa inputs), fp32 accumulation and elementwise ops.
        Tf32 = "tf32",
        /// bf16 products, fp32 accumulation and elementwise ops.
        Bf16 = "bf16",
    }
}

/// The arithmetic of each kind of network in a job: the generator (the SiT and the VAE decoder,
/// `--precision`) and the metric backbones (the FID Inception, DINOv2, CLIP, …,
/// `--eval-precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Precisions {
    pub sampling: Precision,
    pub eval: Precision,
}

/// The activation of a ViT's MLP ([`Backend::linear_act`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `nn.GELU()` (erf).
    GeluErf,
    /// CLIP's `quick_gelu`.
    QuickGelu,
}

/// The reduction of [`Backend::pool2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Maximum over the window's inputs (padding never wins; NaN propagates).
    Max,
    /// Mean over the window's inputs inside the map (`count_include_pad=False`).
    Avg,
}

/// Every op of [`Backend`], named like its method: a job asks its backend for the ops of its
/// networks before it computes anything ([`require`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Linear,
    LayerNorm,
    Modulate,
    LayerNormModulate,
    GatedAdd,
    AddRow,
    Add,
    Silu,
    GeluTanh,
    Attention,
    Patchify,
    Unpatchify,
    GatherRows,
    LayerNormAffine,
    GeluErf,
    Relu,
    QuickGelu,
    Conv2d,
    Pool2d,
    ConcatChannels,
    GroupNorm,
    UpsampleNearest2x,
    Transpose,
    LinearGelu,
    LinearOperand,
    Operand,
    GatedAddLayerNormModulate,
    GatherRowsIdf,
}

impl Op {
    pub const ALL: [Op; 28] = [
        Op::Linear,
        Op::LayerNorm,
        Op::Modulate,
        Op::LayerNormModulate,
        Op::GatedAdd,
        Op::AddRow,
        Op::Add,
        Op::Silu,
        Op::GeluTanh,
        Op::Attention,
        Op::Patchify,
        Op::Unpatchify,
        Op::GatherRows,
        Op::LayerNormAffine,
        Op::GeluErf,
        Op::Relu,
        Op::QuickGelu,
        Op::Conv2d,
        Op::Pool2d,
        Op::ConcatChannels,
        Op::GroupNorm,
        Op::UpsampleNearest2x,
        Op::Transpose,
        Op::LinearGelu,
        Op::LinearOperand,
        Op::Operand,
        Op::GatedAddLayerNormModulate,
        Op::GatherRowsIdf,
    ];

    /// The method's name, as messages show it.
    pub fn name(self) -> &'static str {
        match self {
            Op::Linear => "linear",
            Op::LayerNorm => "layer_norm",
            Op::Modulate => "modulate",
            Op::LayerNormModulate => "layer_norm_modulate",
            Op::GatedAdd => "gated_add",
            Op::AddRow => "add_row",
            Op::Add => "add",
            Op::Silu => "silu",
            Op::GeluTanh => "gelu_tanh",
            Op::Attention => "attention",
            Op::Patchify => "patchify",
            Op::Unpatchify => "unpatchify",
            Op::GatherRows => "gather_rows",
            Op::LayerNormAffine => "layer_norm_affine",
            Op::GeluErf => "gelu_erf",
            Op::Relu => "relu",
            Op::QuickGelu => "quick_gelu",
            Op::Conv2d => "conv2d",
            Op::Pool2d => "pool2d",
            Op::ConcatChannels => "concat_channels",
            Op::GroupNorm => "group_norm",
            Op::UpsampleNearest2x => "upsample_nearest2x",
            Op::Transpose => "transpose",
            Op::LinearGelu => "linear_gelu",
            Op::LinearOperand => "linear_operand",
            Op::Operand => "operand",
            Op::GatedAddLayerNormModulate => "gated_add_layer_norm_modulate",
            Op::GatherRowsIdf => "gather_rows_idf",
        }
    }
}

/// Fails, naming the network and the missing ops, when `be` lacks an op that `model` needs: the
/// check a job makes before its first unit, so that nothing is computed only to fail later.
pub fn require<B: Backend + ?Sized>(be: &B, model: &str, ops: &[Op]) -> Result<()> {
    let missing: Vec<&str> = ops
        .iter()
        .filter(|&&op| !be.supports(op))
        .map(|op| op.name())
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "{model} needs {} that the {} backend does not implement yet; run it with --device cpu",
        missing.join(", "),
        be.name()
    );
    Ok(())
}

/// A forward on device inputs, for [`Backend::run_graph`].
pub type Forward<'a, Buf> = dyn Fn(&[Buf]) -> Result<Buf> + 'a;

pub trait Backend: Send + Sync {
    type Buf: Send + Sync;

    /// Short description for logs and manifests ("cpu (2 threads)").
    fn name(&self) -> String;

    /// Another handle on the same device with its products in `precision`, for a stage that runs
    /// at the same time as this one's work (the sweep decodes and embeds unit k while unit k + 1
    /// samples) or for networks of another precision (the metric backbones): on a GPU, its own
    /// stream, buffers and library handles; the CPU shares its cores. Backends that cannot say so.
    fn companion(&self, _precision: Precision) -> Result<Self>
    where
        Self: Sized,
    {
        anyhow::bail!("the {} backend cannot run a second stage", self.name())
    }

    /// Whether this backend can run its products in `precision` (the CPU: strict fp32 only).
    fn runs(&self, precision: Precision) -> bool {
        precision == Precision::Fp32
    }

    /// Whether this backend implements `op` (the ops below with a default body may be missing).
    fn supports(&self, _op: Op) -> bool {
        true
    }

    fn upload(&self, data: &[f32]) -> Result<Self::Buf>;
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;

    /// `F.linear(x, w, b)`: x (M, K), w (N, K), b (N) → (M, N).
    fn linear(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        b: Option<&Self::Buf>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Self::Buf>;

    /// `F.layer_norm(x, (D,), eps=eps)` without affine parameters: x (R, D) → (R, D).
    fn layer_norm(&self, x: &Self::Buf, rows: usize, d: usize, eps: f32) -> Result<Self::Buf>;

    /// adaLN modulate, in place: `x = x * (1 + scale[:, None]) + shift[:, None]` with x (B, T, D).
    fn modulate(
        &self,
        x: &mut Self::Buf,
        shift: Cols<Self>,
        scale: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
    ) -> Result<()>;

    /// `modulate(layer_norm(x), shift, scale)`: the input of every adaLN branch. Backends may fuse it.
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_modulate(
        &self,
        x: &Self::Buf,
        shift: Cols<Self>,
        scale: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
        eps: f32,
    ) -> Result<Self::Buf> {
        let mut y = self.layer_norm(x, b * t, d, eps)?;
        self.modulate(&mut y, shift, scale, b, t, d)?;
        Ok(y)
    }

    /// Gated residual, in place: `x = x + gate[:, None] * y` with x, y (B, T, D).
    fn gated_add(
        &self,
        x: &mut Self::Buf,
        y: &Self::Buf,
        gate: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
    ) -> Result<()>;

    /// `x = x + row[None]` in place: x (B, R) plus a row (R) broadcast over the batch.
    fn add_row(&self, x: &mut Self::Buf, row: &Self::Buf, b: usize, r: usize) -> Result<()>;

    /// `x = x + y` in place (same shape).
    fn add(&self, x: &mut Self::Buf, y: &Self::Buf) -> Result<()>;

    /// `F.silu(x)` = x·sigmoid(x), out of place.
    fn silu(&self, x: &Self::Buf) -> Result<Self::Buf>;

    /// `F.gelu(x, approximate='tanh')`, in place.
    fn gelu_tanh(&self, x: &mut Self::Buf) -> Result<()>;

    /// timm `Attention` core (`F.scaled_dot_product_attention`, no mask, scale head_dim^-1/2):
    /// qkv (B, T, 3·H·Dh) with q, k, v in that order and heads contiguous inside each → (B, T, H·Dh).
    fn attention(
        &self,
        qkv: &Self::Buf,
        b: usize,
        t: usize,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self::Buf>;

    /// Conv2d(k = s = p) input rearrangement: x (B, C, H, W) → (B, (H/p)·(W/p), C·p·p), tokens
    /// row-major, features ordered (c, a, b) like the flattened conv weight (D, C, p, p).
    fn patchify(
        &self,
        x: &Self::Buf,
        b: usize,
        c: usize,
        h: usize,
        w: usize,
        p: usize,
    ) -> Result<Self::Buf>;

    /// SiT `unpatchify` keeping the first `c_keep` of `c_out` channels:
    /// o (B, T, p·p·c_out) → (B, c_keep, H, W), `out[n, ch, p·i+a, p·j+b] = o[n, i·G+j, (a·p+b)·c_out + ch]`.
    #[allow(clippy::too_many_arguments)]
    fn unpatchify(
        &self,
        o: &Self::Buf,
        b: usize,
        c_out: usize,
        c_keep: usize,
        h: usize,
        w: usize,
        p: usize,
    ) -> Result<Self::Buf>;

    /// `nn.Embedding` lookup: table (V, D), ids (B) → (B, D). Ids are checked by the caller.
    fn gather_rows(&self, table: &Self::Buf, ids: &[usize], d: usize) -> Result<Self::Buf>;

    // ---- fused forms: the CPU runs them as the ops they are made of (so its bits never
    // change); a GPU backend runs each as one pass, in the precision its products want ----------

    /// A weight that is only ever the right operand of `linear` (`nn.Linear.weight`) or the
    /// kernel of `conv2d`: a backend may store it in its GEMM precision (bf16 under
    /// `--precision bf16`).
    fn upload_weight(&self, w: &[f32]) -> Result<Self::Buf> {
        self.upload(w)
    }

    /// The weight (N, K) of a conditioning product: one computed per image, not per token, or
    /// with a K of a few values (SiT's timestep MLP, adaLN and patch embedding). Its rounding
    /// errors reach every token of every block while it costs under 1 % of a forward, so a
    /// backend that rounds its products' inputs may keep these near fp32 (the GPU: 3xTF32).
    fn upload_precise_weight(&self, w: &[f32], _k: usize) -> Result<Self::Buf> {
        self.upload(w)
    }

    /// `x` (rows of `k`) as the left operand of later products with precise weights (SiLU(c)
    /// before every adaLN): a backend may convert it to their form once. Only `linear` may
    /// consume the result.
    fn operand(&self, x: Self::Buf, _k: usize) -> Result<Self::Buf> {
        Ok(x)
    }

    /// `F.gelu(F.linear(x, w, b), approximate='tanh')`, whose result feeds only another
    /// product (the MLP's fc2).
    fn linear_gelu(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        b: Option<&Self::Buf>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Self::Buf> {
        let mut y = self.linear(x, w, b, m, k, n)?;
        self.gelu_tanh(&mut y)?;
        Ok(y)
    }

    /// `act(F.linear(x, w, b))`, the first product of a ViT's MLP: a backend may apply the
    /// activation as the product's epilogue.
    #[allow(clippy::too_many_arguments)]
    fn linear_act(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        b: Option<&Self::Buf>,
        m: usize,
        k: usize,
        n: usize,
        act: Activation,
    ) -> Result<Self::Buf> {
        let mut y = self.linear(x, w, b, m, k, n)?;
        match act {
            Activation::GeluErf => self.gelu_erf(&mut y)?,
            Activation::QuickGelu => self.quick_gelu(&mut y)?,
        }
        Ok(y)
    }

    /// `x += F.linear(inp, w, b)`, the last product of a residual branch: a backend may add it
    /// as the product's epilogue.
    #[allow(clippy::too_many_arguments)]
    fn linear_residual(
        &self,
        x: &mut Self::Buf,
        inp: &Self::Buf,
        w: &Self::Buf,
        b: Option<&Self::Buf>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<()> {
        let y = self.linear(inp, w, b, m, k, n)?;
        self.add(x, &y)
    }

    /// `linear` whose result feeds only `attention` (the fused qkv).
    fn linear_operand(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        b: Option<&Self::Buf>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Self::Buf> {
        self.linear(x, w, b, m, k, n)
    }

    /// `gated_add(x, y, gate)` then `layer_norm_modulate(x, shift, scale)`: the end of one adaLN
    /// branch and the input of the next, whose result feeds only a product.
    #[allow(clippy::too_many_arguments)]
    fn gated_add_layer_norm_modulate(
        &self,
        x: &mut Self::Buf,
        y: &Self::Buf,
        gate: Cols<Self>,
        shift: Cols<Self>,
        scale: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
        eps: f32,
    ) -> Result<Self::Buf> {
        self.gated_add(x, y, gate, b, t, d)?;
        self.layer_norm_modulate(x, shift, scale, b, t, d, eps)
    }

    /// `gather_rows` with the ids in a buffer, as exact integers in f32 (below 2²⁴): the lookup
    /// of a forward whose inputs are all device buffers.
    fn gather_rows_idf(&self, table: &Self::Buf, ids: &Self::Buf, d: usize) -> Result<Self::Buf> {
        let ids = self
            .download(ids)?
            .iter()
            .map(|&v| {
                anyhow::ensure!(
                    v >= 0.0 && v.fract() == 0.0 && v < 16_777_216.0,
                    "gather_rows_idf: id {v} is not an exact index"
                );
                Ok(v as usize)
            })
            .collect::<Result<Vec<usize>>>()?;
        self.gather_rows(table, &ids, d)
    }

    /// Runs `f` on `inputs` (uploaded) and returns its result on the host. A GPU backend may
    /// capture the device work of the first call for each `key` into a graph and replay it, so
    /// `f` must depend only on the inputs' values, with shapes fixed by `key`.
    fn run_graph(&self, _key: &str, inputs: &[&[f32]], f: &Forward<Self::Buf>) -> Result<Vec<f32>> {
        let bufs = inputs
            .iter()
            .map(|x| self.upload(x))
            .collect::<Result<Vec<_>>>()?;
        self.download(&f(&bufs)?)
    }

    /// What the backend counted so far (launches, products by compute type, allocations, host
    /// synchronisations), for benchmarks; `None` when it counts nothing.
    fn counters(&self) -> Option<serde_json::Value> {
        None
    }

    /// Marks the start of a named range of work (an NVTX range on a GPU with `--nvtx`).
    fn range_push(&self, _name: &str) {}

    /// Ends the innermost range.
    fn range_pop(&self) {}

    // ---- ops of the metric backbones (ViTs) ----------------------------------------------------
    // Backends without them report so; the CPU backend has them all.

    /// `F.layer_norm(x, (D,), gamma, beta, eps)`: x (R, D) → (R, D).
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_affine(
        &self,
        _x: &Self::Buf,
        _gamma: &Self::Buf,
        _beta: &Self::Buf,
        _rows: usize,
        _d: usize,
        _eps: f32,
    ) -> Result<Self::Buf> {
        anyhow::bail!("layer_norm_affine is not implemented on {}", self.name())
    }

    /// `F.gelu(x)` (exact, erf), in place.
    fn gelu_erf(&self, _x: &mut Self::Buf) -> Result<()> {
        anyhow::bail!("gelu_erf is not implemented on {}", self.name())
    }

    /// `F.relu(x)`, in place (NaN stays NaN).
    fn relu(&self, _x: &mut Self::Buf) -> Result<()> {
        anyhow::bail!("relu is not implemented on {}", self.name())
    }

    /// CLIP's `quick_gelu`: x·sigmoid(1.702·x), in place.
    fn quick_gelu(&self, _x: &mut Self::Buf) -> Result<()> {
        anyhow::bail!("quick_gelu is not implemented on {}", self.name())
    }

    // ---- ops of the convolutional networks (SD-VAE decoder, Inception) ---------------------
    // Backends without them report so; the CPU backend has them all.

    /// `F.conv2d(x, w, b, stride, padding)`, then ReLU when `relu`: x (N, Ci, H, W),
    /// w (Co, Ci, kh, kw), b (Co) → (N, Co, H', W') with (H', W') = `win.output(H, W)`.
    #[allow(clippy::too_many_arguments)]
    fn conv2d(
        &self,
        _x: &Self::Buf,
        _dims: Nchw,
        _w: &Self::Buf,
        _b: &Self::Buf,
        _co: usize,
        _win: Window,
        _relu: bool,
    ) -> Result<Self::Buf> {
        anyhow::bail!("conv2d is not implemented on {}", self.name())
    }

    /// `F.max_pool2d` or `F.avg_pool2d(count_include_pad=False)` over x (N, C, H, W) →
    /// (N, C, H', W'). A window covering the whole map is `F.adaptive_avg_pool2d(x, 1)`.
    fn pool2d(&self, _x: &Self::Buf, _dims: Nchw, _win: Window, _pool: Pool) -> Result<Self::Buf> {
        anyhow::bail!("pool2d is not implemented on {}", self.name())
    }

    /// `torch.cat(parts, dim=1)` for parts (N, C_i, HW), given as (buffer, C_i).
    fn concat_channels(
        &self,
        _parts: &[(&Self::Buf, usize)],
        _n: usize,
        _hw: usize,
    ) -> Result<Self::Buf> {
        anyhow::bail!("concat_channels is not implemented on {}", self.name())
    }

    /// `F.group_norm(x, groups, gamma, beta, eps)` on x (N, C, HW), then SiLU when `silu`.
    #[allow(clippy::too_many_arguments)]
    fn group_norm(
        &self,
        _x: &Self::Buf,
        _gamma: &Self::Buf,
        _beta: &Self::Buf,
        _n: usize,
        _c: usize,
        _hw: usize,
        _groups: usize,
        _eps: f32,
        _silu: bool,
    ) -> Result<Self::Buf> {
        anyhow::bail!("group_norm is not implemented on {}", self.name())
    }

    /// `F.interpolate(x, scale_factor=2, mode='nearest')`: (N, C, H, W) → (N, C, 2H, 2W).
    fn upsample_nearest2x(
        &self,
        _x: &Self::Buf,
        _n: usize,
        _c: usize,
        _h: usize,
        _w: usize,
    ) -> Result<Self::Buf> {
        anyhow::bail!("upsample_nearest2x is not implemented on {}", self.name())
    }

    /// `x.transpose(1, 2)` for x (B, R, C) → (B, C, R).
    fn transpose(&self, _x: &Self::Buf, _b: usize, _r: usize, _c: usize) -> Result<Self::Buf> {
        anyhow::bail!("transpose is not implemented on {}", self.name())
    }
}
