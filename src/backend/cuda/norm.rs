//! LayerNorm and the adaLN modulate. CPU twin: src/backend/cpu/norm.rs; test: tests/op_norm.rs.

use anyhow::{ensure, Result};

use super::launch::{grid_1d, Dims, BLOCK};
use super::{Cols, Cuda, CudaSlice};

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

pub fn layer_norm(
    be: &Cuda,
    x: &CudaSlice<f32>,
    rows: usize,
    d: usize,
    eps: f32,
) -> Result<CudaSlice<f32>> {
    ensure!(
        x.len() == rows * d,
        "layer_norm: {} elements for ({rows}, {d})",
        x.len()
    );
    let y = be.alloc(rows * d)?;
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

#[allow(clippy::too_many_arguments)]
pub fn layer_norm_modulate(
    be: &Cuda,
    x: &CudaSlice<f32>,
    shift: Cols<Cuda>,
    scale: Cols<Cuda>,
    b: usize,
    t: usize,
    d: usize,
    eps: f32,
) -> Result<CudaSlice<f32>> {
    ensure!(
        x.len() == b * t * d,
        "layer_norm_modulate: {} elements for ({b}, {t}, {d})",
        x.len()
    );
    shift.check(shift.buf.len(), b, d, "layer_norm_modulate shift")?;
    scale.check(scale.buf.len(), b, d, "layer_norm_modulate scale")?;
    let y = be.alloc(b * t * d)?;
    if b * t * d == 0 {
        return Ok(y);
    }
    be.launch(&be.k.layer_norm_modulate)
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
    be.done("layer_norm_modulate_f32")?;
    Ok(y)
}

pub fn modulate(
    be: &Cuda,
    x: &mut CudaSlice<f32>,
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
