//! Residual adds. CPU twin: src/backend/cpu/elementwise.rs; test: tests/ops/op_elementwise.rs.

use anyhow::{ensure, Result};

use super::buf::{Dtype, GpuBuf};
use super::launch::grid_1d;
use super::{Cols, Cuda};

fn f32s(bufs: &[&GpuBuf], what: &str) -> Result<()> {
    ensure!(
        bufs.iter().all(|b| b.dtype() == Dtype::F32),
        "{what}: expects f32 buffers"
    );
    Ok(())
}

pub fn gated_add(
    be: &Cuda,
    x: &mut GpuBuf,
    y: &GpuBuf,
    gate: Cols<Cuda>,
    b: usize,
    t: usize,
    d: usize,
) -> Result<()> {
    ensure!(
        x.len() == b * t * d && y.len() == x.len(),
        "gated_add: shapes differ from ({b}, {t}, {d})"
    );
    f32s(&[x, y, gate.buf], "gated_add")?;
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

pub fn add_row(be: &Cuda, x: &mut GpuBuf, row: &GpuBuf, b: usize, r: usize) -> Result<()> {
    ensure!(
        x.len() == b * r && row.len() == r,
        "add_row: shapes differ from ({b}, {r})"
    );
    f32s(&[x, row], "add_row")?;
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

pub fn add(be: &Cuda, x: &mut GpuBuf, y: &GpuBuf) -> Result<()> {
    ensure!(
        x.len() == y.len(),
        "add: {} vs {} elements",
        x.len(),
        y.len()
    );
    f32s(&[x, y], "add")?;
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
