//! Residual adds. CPU twin: src/backend/cpu/elementwise.rs; test: tests/op_elementwise.rs.

use anyhow::{ensure, Result};

use super::launch::grid_1d;
use super::{Cols, Cuda, CudaSlice};

pub fn gated_add(
    be: &Cuda,
    x: &mut CudaSlice<f32>,
    y: &CudaSlice<f32>,
    gate: Cols<Cuda>,
    b: usize,
    t: usize,
    d: usize,
) -> Result<()> {
    ensure!(
        x.len() == b * t * d && y.len() == x.len(),
        "gated_add: shapes differ from ({b}, {t}, {d})"
    );
    gate.check(gate.buf.len(), b, d, "gated_add gate")?;
    let n = b * t * d;
    if n == 0 {
        return Ok(());
    }
    be.launch(&be.k.gated_add)
        .buf(x)
        .buf(y)
        .buf(gate.buf)
        .int(gate.stride, "gate stride")
        .int(gate.offset, "gate offset")
        .int(t, "T")
        .int(d, "D")
        .long(n)
        .run(grid_1d(n)?)?;
    be.done("gated_add_f32")
}

pub fn add_row(
    be: &Cuda,
    x: &mut CudaSlice<f32>,
    row: &CudaSlice<f32>,
    b: usize,
    r: usize,
) -> Result<()> {
    ensure!(
        x.len() == b * r && row.len() == r,
        "add_row: shapes differ from ({b}, {r})"
    );
    if b * r == 0 {
        return Ok(());
    }
    be.launch(&be.k.add_row)
        .buf(x)
        .buf(row)
        .int(r, "R")
        .long(b * r)
        .run(grid_1d(b * r)?)?;
    be.done("add_row_f32")
}

pub fn add(be: &Cuda, x: &mut CudaSlice<f32>, y: &CudaSlice<f32>) -> Result<()> {
    ensure!(
        x.len() == y.len(),
        "add: {} vs {} elements",
        x.len(),
        y.len()
    );
    let n = x.len();
    if n == 0 {
        return Ok(());
    }
    be.launch(&be.k.add)
        .buf(x)
        .buf(y)
        .long(n)
        .run(grid_1d(n)?)?;
    be.done("add_f32")
}
