//! Patch (un)embedding and embedding lookup. CPU twin: src/backend/cpu/embed.rs; test: tests/op_embed.rs.

use anyhow::{ensure, Context, Result};

use super::launch::grid_1d;
use super::{Cuda, CudaSlice};

pub fn patchify(
    be: &Cuda,
    x: &CudaSlice<f32>,
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    p: usize,
) -> Result<CudaSlice<f32>> {
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
    let y = be.alloc(n)?;
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
    o: &CudaSlice<f32>,
    b: usize,
    c_out: usize,
    c_keep: usize,
    h: usize,
    w: usize,
    p: usize,
) -> Result<CudaSlice<f32>> {
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
    let y = be.alloc(n)?;
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

pub fn gather_rows(
    be: &Cuda,
    table: &CudaSlice<f32>,
    ids: &[usize],
    d: usize,
) -> Result<CudaSlice<f32>> {
    // i < V, overflow-free for any id; with D = 0 every row is empty, so any id reads nothing.
    ensure!(
        d == 0 || ids.iter().all(|&i| i < table.len() / d),
        "gather_rows: id out of range"
    );
    let n = ids.len() * d;
    let y = be.alloc(n)?;
    if n == 0 {
        return Ok(y);
    }
    let ids32 = ids
        .iter()
        .map(|&i| i32::try_from(i))
        .collect::<Result<Vec<i32>, _>>()
        .context("gather_rows: an id exceeds 32 bits")?;
    let dev_ids = be.stream.clone_htod(&ids32).context("copy to the GPU")?;
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
