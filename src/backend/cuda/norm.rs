//! LayerNorm, the adaLN modulate and the gated residual fused with the next LayerNorm. CPU twin:
//! src/backend/cpu/norm.rs; test: tests/ops/op_norm.rs.

use anyhow::{ensure, Result};

use super::buf::{Dtype, GpuBuf};
use super::launch::{grid_1d, Dims, BLOCK};
use super::{Cols, Cuda};

/// One block per row.
fn rows_grid(rows: usize) -> Result<Dims> {
    ensure!(
        rows <= i32::MAX as usize,
        "{rows} rows exceed the grid (2^31 - 1 blocks)"
    );
    Ok(Dims {
        grid: (rows as u32, 1, 1),
        block: (BLOCK, 1, 1),
        smem: 0,
    })
}

fn f32_input(x: &GpuBuf, what: &str) -> Result<()> {
    ensure!(
        x.dtype() == Dtype::F32,
        "{what}: expects f32, got {:?}",
        x.dtype()
    );
    Ok(())
}

pub fn layer_norm(be: &Cuda, x: &GpuBuf, rows: usize, d: usize, eps: f32) -> Result<GpuBuf> {
    ensure!(
        x.len() == rows * d,
        "layer_norm: {} elements for ({rows}, {d})",
        x.len()
    );
    f32_input(x, "layer_norm")?;
    let y = be.alloc(rows * d, Dtype::F32)?;
    if rows * d == 0 {
        return Ok(y);
    }
    be.launch(&be.k.layer_norm)
        .buf(x)
        .buf(&y)
        .int(rows, "rows")
        .int(d, "D")
        .float(eps)
        .run(rows_grid(rows)?)?;
    be.done("layer_norm_f32")?;
    Ok(y)
}

/// LN(x)·(1 + scale) + shift, in the GEMM operand type (its result feeds a product).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_modulate(
    be: &Cuda,
    x: &GpuBuf,
    shift: Cols<Cuda>,
    scale: Cols<Cuda>,
    b: usize,
    t: usize,
    d: usize,
    eps: f32,
) -> Result<GpuBuf> {
    ensure!(
        x.len() == b * t * d,
        "layer_norm_modulate: {} elements for ({b}, {t}, {d})",
        x.len()
    );
    f32_input(x, "layer_norm_modulate")?;
    shift.check(shift.buf.len(), b, d, "layer_norm_modulate shift")?;
    scale.check(scale.buf.len(), b, d, "layer_norm_modulate scale")?;
    let out = be.operand_dtype();
    let y = be.alloc(b * t * d, out)?;
    if b * t * d == 0 {
        return Ok(y);
    }
    let k = if out == Dtype::F32 {
        &be.k.layer_norm_modulate
    } else {
        &be.k.layer_norm_modulate_bf16
    };
    be.launch(k)
        .buf(x)
        .buf(&y)
        .buf(shift.buf)
        .int(shift.stride, "shift stride")
        .int(shift.offset, "shift offset")
        .buf(scale.buf)
        .int(scale.stride, "scale stride")
        .int(scale.offset, "scale offset")
        .int(t, "T")
        .int(d, "D")
        .float(eps)
        .run(rows_grid(b * t)?)?;
    be.done("layer_norm_modulate")?;
    Ok(y)
}

/// x += gate ⊙ y, then LN(x)·(1 + scale) + shift in the GEMM operand type, in one pass per row.
#[allow(clippy::too_many_arguments)]
pub fn gated_add_layer_norm_modulate(
    be: &Cuda,
    x: &mut GpuBuf,
    y: &GpuBuf,
    gate: Cols<Cuda>,
    shift: Cols<Cuda>,
    scale: Cols<Cuda>,
    (b, t, d): (usize, usize, usize),
    eps: f32,
) -> Result<GpuBuf> {
    ensure!(
        x.len() == b * t * d && y.len() == x.len(),
        "gated_add_layer_norm_modulate: shapes differ from ({b}, {t}, {d})"
    );
    f32_input(x, "gated_add_layer_norm_modulate")?;
    f32_input(y, "gated_add_layer_norm_modulate")?;
    gate.check(gate.buf.len(), b, d, "gated_add_layer_norm_modulate gate")?;
    shift.check(shift.buf.len(), b, d, "gated_add_layer_norm_modulate shift")?;
    scale.check(scale.buf.len(), b, d, "gated_add_layer_norm_modulate scale")?;
    let out_t = be.operand_dtype();
    let out = be.alloc(b * t * d, out_t)?;
    if b * t * d == 0 {
        return Ok(out);
    }
    let k = if out_t == Dtype::F32 {
        &be.k.gated_add_ln_modulate
    } else {
        &be.k.gated_add_ln_modulate_bf16
    };
    be.launch(k)
        .buf(x)
        .buf(y)
        .buf(gate.buf)
        .int(gate.stride, "gate stride")
        .int(gate.offset, "gate offset")
        .buf(shift.buf)
        .int(shift.stride, "shift stride")
        .int(shift.offset, "shift offset")
        .buf(scale.buf)
        .int(scale.stride, "scale stride")
        .int(scale.offset, "scale offset")
        .buf(&out)
        .int(t, "T")
        .int(d, "D")
        .float(eps)
        .run(rows_grid(b * t)?)?;
    be.done("gated_add_layer_norm_modulate")?;
    Ok(out)
}

pub fn modulate(
    be: &Cuda,
    x: &mut GpuBuf,
    shift: Cols<Cuda>,
    scale: Cols<Cuda>,
    b: usize,
    t: usize,
    d: usize,
) -> Result<()> {
    ensure!(
        x.len() == b * t * d,
        "modulate: {} elements for ({b}, {t}, {d})",
        x.len()
    );
    f32_input(x, "modulate")?;
    shift.check(shift.buf.len(), b, d, "modulate shift")?;
    scale.check(scale.buf.len(), b, d, "modulate scale")?;
    let n = b * t * d;
    if n == 0 {
        return Ok(());
    }
    be.launch(&be.k.modulate)
        .buf(x)
        .buf(shift.buf)
        .int(shift.stride, "shift stride")
        .int(shift.offset, "shift offset")
        .buf(scale.buf)
        .int(scale.stride, "scale stride")
        .int(scale.offset, "scale offset")
        .int(t, "T")
        .int(d, "D")
        .long(n)
        .run(grid_1d(n)?)?;
    be.done("modulate_f32")
}

/// `F.layer_norm(x, (D,), gamma, beta, eps)`: x (R, D) → (R, D).
pub fn layer_norm_affine(
    be: &Cuda,
    x: &GpuBuf,
    (gamma, beta): (&GpuBuf, &GpuBuf),
    rows: usize,
    d: usize,
    eps: f32,
) -> Result<GpuBuf> {
    ensure!(
        x.len() == rows * d && gamma.len() == d && beta.len() == d,
        "layer_norm_affine: {} elements, {} weights, {} biases for ({rows}, {d})",
        x.len(),
        gamma.len(),
        beta.len()
    );
    for t in [x, gamma, beta] {
        f32_input(t, "layer_norm_affine")?;
    }
    let y = be.alloc(rows * d, Dtype::F32)?;
    if rows * d == 0 {
        return Ok(y);
    }
    be.launch(&be.k.layer_norm_affine)
        .buf(x)
        .buf(&y)
        .buf(gamma)
        .buf(beta)
        .int(rows, "rows")
        .int(d, "D")
        .float(eps)
        .run(rows_grid(rows)?)?;
    be.done("layer_norm_affine_f32")?;
    Ok(y)
}

/// `F.group_norm(x, groups, gamma, beta, eps)` on x (N, C, HW), then SiLU when `silu`; one
/// block per (image, group).
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    be: &Cuda,
    x: &GpuBuf,
    (gamma, beta): (&GpuBuf, &GpuBuf),
    (n, c, hw): (usize, usize, usize),
    groups: usize,
    eps: f32,
    silu: bool,
) -> Result<GpuBuf> {
    crate::backend::check_group_norm((x.len(), gamma.len(), beta.len()), (n, c, hw), groups)?;
    for t in [x, gamma, beta] {
        f32_input(t, "group_norm")?;
    }
    let y = be.alloc(n * c * hw, Dtype::F32)?;
    if y.is_empty() {
        return Ok(y);
    }
    be.launch(&be.k.group_norm)
        .buf(x)
        .buf(&y)
        .buf(gamma)
        .buf(beta)
        .int(c, "C")
        .int(hw, "HW")
        .int(groups, "groups")
        .float(eps)
        .int(usize::from(silu), "silu")
        .run(rows_grid(n * groups)?)?;
    be.done("group_norm_f32")?;
    Ok(y)
}
