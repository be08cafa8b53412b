//! Patch (un)embedding and embedding lookup. CPU twin: src/backend/cpu/embed.rs; test: tests/ops/op_embed.rs.

use anyhow::{ensure, Context, Result};

use super::buf::{Dtype, GpuBuf};
use super::launch::grid_1d;
use super::Cuda;

pub fn patchify(
    be: &Cuda,
    x: &GpuBuf,
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    p: usize,
) -> Result<GpuBuf> {
    ensure!(
        x.len() == b * c * h * w,
        "patchify: {} elements for ({b}, {c}, {h}, {w})",
        x.len()
    );
    ensure!(
        p > 0 && h.is_multiple_of(p) && w.is_multiple_of(p),
        "patchify: {h}×{w} is not divisible by patch size {p}"
    );
    let n = x.len();
    let y = be.alloc(n, Dtype::F32)?;
    if n == 0 {
        return Ok(y);
    }
    be.launch(&be.k.patchify)
        .buf(x)
        .buf(&y)
        .int(c, "C")
        .int(h, "H")
        .int(w, "W")
        .int(p, "patch")
        .long(n)
        .run(grid_1d(n)?)?;
    be.done("patchify_f32")?;
    Ok(y)
}

#[allow(clippy::too_many_arguments)]
pub fn unpatchify(
    be: &Cuda,
    o: &GpuBuf,
    b: usize,
    c_out: usize,
    c_keep: usize,
    h: usize,
    w: usize,
    p: usize,
) -> Result<GpuBuf> {
    ensure!(
        o.len() == b * h * w * c_out && c_keep <= c_out,
        "unpatchify: {} elements for ({b}, {c_out}, {h}, {w})",
        o.len()
    );
    ensure!(
        p > 0 && h.is_multiple_of(p) && w.is_multiple_of(p),
        "unpatchify: {h}×{w} is not divisible by patch size {p}"
    );
    let n = b * c_keep * h * w;
    let y = be.alloc(n, Dtype::F32)?;
    if n == 0 {
        return Ok(y);
    }
    be.launch(&be.k.unpatchify)
        .buf(o)
        .buf(&y)
        .int(c_out, "C_out")
        .int(c_keep, "C_keep")
        .int(h, "H")
        .int(w, "W")
        .int(p, "patch")
        .long(n)
        .run(grid_1d(n)?)?;
    be.done("unpatchify_f32")?;
    Ok(y)
}

pub fn gather_rows(be: &Cuda, table: &GpuBuf, ids: &[usize], d: usize) -> Result<GpuBuf> {
    // i < V, overflow-free for any id; with D = 0 every row is empty, so any id reads nothing.
    ensure!(
        d == 0 || ids.iter().all(|&i| i < table.len() / d),
        "gather_rows: id out of range"
    );
    let n = ids.len() * d;
    let y = be.alloc(n, Dtype::F32)?;
    if n == 0 {
        return Ok(y);
    }
    let ids32 = ids
        .iter()
        .map(|&i| i32::try_from(i))
        .collect::<Result<Vec<i32>, _>>()
        .context("gather_rows: an id exceeds 32 bits")?;
    // The ids' i32 bits in a buffer of as many 4-byte elements.
    let dev_ids = be.alloc(ids32.len(), Dtype::F32)?;
    be.copy_to_device(&dev_ids, bytemuck::cast_slice(&ids32))?;
    be.launch(&be.k.gather_rows)
        .buf(table)
        .buf(&dev_ids)
        .buf(&y)
        .int(d, "D")
        .long(n)
        .run(grid_1d(n)?)?;
    be.done("gather_rows_f32")?;
    Ok(y)
}

/// Rows of a (V, D) table at ids given as exact integers in f32. Every id must be below V: the
/// caller checked them on the host (a check here would wait for the device).
pub fn gather_rows_idf(be: &Cuda, table: &GpuBuf, ids: &GpuBuf, d: usize) -> Result<GpuBuf> {
    ensure!(
        ids.dtype() == Dtype::F32 && table.dtype() == Dtype::F32,
        "gather_rows_idf: expects f32 buffers"
    );
    let n = ids.len() * d;
    let y = be.alloc(n, Dtype::F32)?;
    if n == 0 {
        return Ok(y);
    }
    be.launch(&be.k.gather_rows_idf)
        .buf(table)
        .buf(ids)
        .buf(&y)
        .int(d, "D")
        .long(n)
        .run(grid_1d(n)?)?;
    be.done("gather_rows_idf_f32")?;
    Ok(y)
}

/// `x.transpose(1, 2)`: (B, R, C) → (B, C, R).
pub fn transpose(be: &Cuda, x: &GpuBuf, b: usize, r: usize, c: usize) -> Result<GpuBuf> {
    ensure!(
        x.len() == b * r * c && x.dtype() == Dtype::F32,
        "transpose: {} {:?} elements for f32 ({b}, {r}, {c})",
        x.len(),
        x.dtype()
    );
    let n = x.len();
    let y = be.alloc(n, Dtype::F32)?;
    if n == 0 {
        return Ok(y);
    }
    be.launch(&be.k.transpose)
        .buf(x)
        .buf(&y)
        .int(r, "R")
        .int(c, "C")
        .long(n)
        .run(grid_1d(n)?)?;
    be.done("transpose_f32")?;
    Ok(y)
}
