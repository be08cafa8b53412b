//! Convolutions on tensor cores: im2col into the arena (a chunk of images at a time), then one
//! strided-batched cuBLASLt product per chunk that adds W · cols onto the bias and applies the
//! ReLU in its epilogue; a 1×1 stride-1 convolution multiplies its input directly. Nearest
//! upsampling. CPU twin: src/backend/cpu/conv.rs; test: tests/ops/op_conv.rs.

use anyhow::{ensure, Result};

use super::buf::{Dtype, GpuBuf};
use super::gemm;
use super::launch::grid_1d;
use super::Cuda;
use crate::backend::{conv2d_output, Nchw, Window};

/// The im2col block of one chunk stays under this many bytes (1 GiB): larger batches run in
/// chunks of images, each one strided-batched product.
const COLS_BYTES: usize = 1 << 30;

/// `F.conv2d(x, w, b, stride, padding)` (+ ReLU) with x (N, Ci, H, W), w (Co, Ci, kh, kw) in the
/// GEMM operand type (f32, or bf16 under `--precision bf16`), b (Co) f32 → (N, Co, H', W') f32.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    be: &Cuda,
    x: &GpuBuf,
    d: Nchw,
    w: &GpuBuf,
    b: &GpuBuf,
    co: usize,
    win: Window,
    relu: bool,
) -> Result<GpuBuf> {
    let (ho, wo) = conv2d_output(d, x.len(), (w.len(), b.len()), co, win)?;
    ensure!(
        x.dtype() == Dtype::F32 && b.dtype() == Dtype::F32,
        "conv2d: x is {:?} and the bias {:?}; both must be f32",
        x.dtype(),
        b.dtype()
    );
    let k = d.c * win.kh * win.kw;
    let hw = ho * wo;
    let y = be.alloc(d.n * co * hw, Dtype::F32)?; // (N, Co, H'·W')
    if y.is_empty() {
        return Ok(y);
    }
    fill_bias(be, &y, b, co, hw)?;
    if k == 0 {
        // An empty sum: the bias, then the ReLU.
        return finish_empty(be, y, relu);
    }
    let operand = w.dtype();
    let es = operand.size();
    if win == Window::square(1, 1, 0) && operand == Dtype::F32 {
        // x (Ci, H·W) per image is already the product's operand.
        gemm::conv_matmul(be, x.ptr(), w, y.ptr(), (hw, k, co), d.n, relu)?;
        return Ok(y);
    }
    let per_image = k * hw * es;
    let chunk = (COLS_BYTES / per_image.max(1)).clamp(1, d.n);
    let cols = be.alloc(chunk * k * hw, operand)?; // (chunk, K, H'·W')
    let mut img0 = 0;
    while img0 < d.n {
        let images = chunk.min(d.n - img0);
        im2col(be, x, d, win, (ho, wo), img0, images, &cols)?;
        let y0 = y.ptr() + (img0 * co * hw * 4) as u64;
        gemm::conv_matmul(be, cols.ptr(), w, y0, (hw, k, co), images, relu)?;
        img0 += images;
    }
    Ok(y)
}

/// y (N, Co, HW) = b[co], the C of the product.
fn fill_bias(be: &Cuda, y: &GpuBuf, b: &GpuBuf, co: usize, hw: usize) -> Result<()> {
    let n = y.len();
    be.launch(&be.k.fill_bias)
        .buf(y)
        .buf(b)
        .int(co, "Co")
        .long(hw)
        .long(n)
        .run(grid_1d(n)?)?;
    be.done("fill_bias_f32")
}

fn finish_empty(be: &Cuda, mut y: GpuBuf, relu: bool) -> Result<GpuBuf> {
    if relu {
        super::act::relu(be, &mut y)?;
    }
    Ok(y)
}

/// cols of images img0..img0 + images, in `cols`' type.
#[allow(clippy::too_many_arguments)]
fn im2col(
    be: &Cuda,
    x: &GpuBuf,
    d: Nchw,
    win: Window,
    (ho, wo): (usize, usize),
    img0: usize,
    images: usize,
    cols: &GpuBuf,
) -> Result<()> {
    let n = images * d.c * win.kh * win.kw * ho * wo;
    let k = if cols.dtype() == Dtype::F32 {
        &be.k.im2col
    } else {
        &be.k.im2col_bf16
    };
    be.launch(k)
        .addr(x.ptr() + (img0 * d.c * d.h * d.w * 4) as u64)
        .buf(cols)
        .int(d.c, "Ci")
        .int(d.h, "H")
        .int(d.w, "W")
        .int(win.kh, "kh")
        .int(win.kw, "kw")
        .int(win.stride, "stride")
        .int(win.ph, "pad h")
        .int(win.pw, "pad w")
        .int(ho, "H'")
        .int(wo, "W'")
        .long(n)
        .run(grid_1d(n)?)?;
    be.done(k.sig.name)
}

/// `F.interpolate(x, scale_factor=2, mode='nearest')`: (N, C, H, W) → (N, C, 2H, 2W).
pub fn upsample_nearest2x(
    be: &Cuda,
    x: &GpuBuf,
    (n, c, h, w): (usize, usize, usize, usize),
) -> Result<GpuBuf> {
    ensure!(
        x.len() == n * c * h * w && x.dtype() == Dtype::F32,
        "upsample: {} {:?} elements for f32 ({n}, {c}, {h}, {w})",
        x.len(),
        x.dtype()
    );
    let len = 4 * x.len();
    let y = be.alloc(len, Dtype::F32)?;
    if len == 0 {
        return Ok(y);
    }
    be.launch(&be.k.upsample_nearest2x)
        .buf(x)
        .buf(&y)
        .int(h, "H")
        .int(w, "W")
        .long(len)
        .run(grid_1d(len)?)?;
    be.done("upsample_nearest2x_f32")?;
    Ok(y)
}
