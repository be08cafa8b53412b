//! Activations and the cast of GEMM operands to bf16. CPU twin: src/backend/cpu/act.rs; test:
//! tests/ops/op_act.rs.

use anyhow::{bail, ensure, Result};

use super::buf::{Dtype, GpuBuf};
use super::launch::{grid_1d, Kernel};
use super::Cuda;

pub fn silu(be: &Cuda, x: &GpuBuf) -> Result<GpuBuf> {
    ensure!(
        x.dtype() == Dtype::F32,
        "silu: expects f32, got {:?}",
        x.dtype()
    );
    let n = x.len();
    let y = be.alloc(n, Dtype::F32)?;
    if n == 0 {
        return Ok(y);
    }
    be.launch(&be.k.silu)
        .buf(x)
        .buf(&y)
        .long(n)
        .run(grid_1d(n)?)?;
    be.done("silu_f32")?;
    Ok(y)
}

pub fn gelu_tanh(be: &Cuda, x: &mut GpuBuf) -> Result<()> {
    in_place(be, &be.k.gelu_tanh, x, "gelu_tanh")
}

/// `F.gelu(x)` (exact), in place.
pub fn gelu_erf(be: &Cuda, x: &mut GpuBuf) -> Result<()> {
    in_place(be, &be.k.gelu_erf, x, "gelu_erf")
}

/// CLIP's `quick_gelu`, in place.
pub fn quick_gelu(be: &Cuda, x: &mut GpuBuf) -> Result<()> {
    in_place(be, &be.k.quick_gelu, x, "quick_gelu")
}

/// `F.relu(x)`, in place.
pub fn relu(be: &Cuda, x: &mut GpuBuf) -> Result<()> {
    in_place(be, &be.k.relu, x, "relu")
}

/// An elementwise activation of f32 `x`, in place: kernel `k` over (x, n).
fn in_place(be: &Cuda, k: &Kernel, x: &mut GpuBuf, what: &str) -> Result<()> {
    ensure!(
        x.dtype() == Dtype::F32,
        "{what}: expects f32, got {:?}",
        x.dtype()
    );
    let n = x.len();
    if n == 0 {
        return Ok(());
    }
    be.launch(k).buf(x).long(n).run(grid_1d(n)?)?;
    be.done(k.sig.name)
}

/// `x` in `to`: a copy rounded to bf16 (nearest even), or `x` itself.
pub fn cast(be: &Cuda, x: &GpuBuf, to: Dtype) -> Result<GpuBuf> {
    match (x.dtype(), to) {
        (Dtype::F32, Dtype::Bf16) => {
            let n = x.len();
            let y = be.alloc(n, Dtype::Bf16)?;
            if n > 0 {
                be.launch(&be.k.cast_bf16)
                    .buf(x)
                    .buf(&y)
                    .long(n)
                    .run(grid_1d(n)?)?;
                be.done("cast_bf16")?;
            }
            Ok(y)
        }
        (from, to) => bail!("no cast from {from:?} to {to:?} on the GPU"),
    }
}

/// f32 `x` (R, k) as the left operand of a 3xTF32 product: (R, 3k) rows [hi | hi | lo].
pub fn split_tf32(be: &Cuda, x: &GpuBuf, k: usize) -> Result<GpuBuf> {
    ensure!(
        x.dtype() == Dtype::F32 && x.len().is_multiple_of(k),
        "split_tf32: expects f32 rows of {k}, got {} {:?} values",
        x.len(),
        x.dtype()
    );
    let n = x.len();
    let y = be.alloc(3 * n, Dtype::Tf32x3)?;
    if n > 0 {
        be.launch(&be.k.split_tf32)
            .buf(x)
            .buf(&y)
            .long(n)
            .int(k, "split_tf32: k")
            .run(grid_1d(n)?)?;
        be.done("split_tf32")?;
    }
    Ok(y)
}

impl Cuda {
    /// `x` in `to`, as [`cast`].
    pub(super) fn cast(&self, x: &GpuBuf, to: Dtype) -> Result<GpuBuf> {
        cast(self, x, to)
    }
}
