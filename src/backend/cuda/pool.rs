//! Max and average pooling, and channel concatenation as copies into one buffer. CPU twin:
//! src/backend/cpu/pool.rs; test: tests/ops/op_pool.rs.

use anyhow::{ensure, Result};

use super::buf::{Dtype, GpuBuf};
use super::launch::grid_1d;
use super::Cuda;
use crate::backend::{pool2d_output, Nchw, Pool, Window};

/// `F.max_pool2d` / `F.avg_pool2d(count_include_pad=False)`: (N, C, H, W) → (N, C, H', W'),
/// the CPU's bits.
pub fn pool2d(be: &Cuda, x: &GpuBuf, d: Nchw, win: Window, pool: Pool) -> Result<GpuBuf> {
    let (ho, wo) = pool2d_output(d, x.len(), win)?;
    ensure!(
        x.dtype() == Dtype::F32,
        "pool2d: expects f32, got {:?}",
        x.dtype()
    );
    let n = d.n * d.c * ho * wo;
    let y = be.alloc(n, Dtype::F32)?;
    if n == 0 {
        return Ok(y);
    }
    be.launch(&be.k.pool2d)
        .buf(x)
        .buf(&y)
        .int(d.h, "H")
        .int(d.w, "W")
        .int(ho, "H'")
        .int(wo, "W'")
        .int(win.kh, "kh")
        .int(win.kw, "kw")
        .int(win.stride, "stride")
        .int(win.ph, "pad h")
        .int(win.pw, "pad w")
        .int(usize::from(pool == Pool::Max), "max")
        .long(n)
        .run(grid_1d(n)?)?;
    be.done("pool2d_f32")?;
    Ok(y)
}

/// `torch.cat(parts, dim=1)` for parts (N, C_i, HW): each part copied into its channels.
pub fn concat_channels(
    be: &Cuda,
    parts: &[(&GpuBuf, usize)],
    n: usize,
    hw: usize,
) -> Result<GpuBuf> {
    for (i, (p, c)) in parts.iter().enumerate() {
        ensure!(
            p.len() == n * c * hw && p.dtype() == Dtype::F32,
            "concat_channels: part {i} has {} {:?} elements for f32 ({n}, {c}, {hw})",
            p.len(),
            p.dtype()
        );
    }
    let c: usize = parts.iter().map(|p| p.1).sum();
    let y = be.alloc(n * c * hw, Dtype::F32)?;
    let mut at = 0;
    for (p, ci) in parts {
        let len = p.len();
        if len > 0 {
            be.launch(&be.k.copy_channels)
                .buf(*p)
                .buf(&y)
                .long(ci * hw)
                .long(c * hw)
                .long(at * hw)
                .long(len)
                .run(grid_1d(len)?)?;
            be.done("copy_channels_f32")?;
        }
        at += ci;
    }
    Ok(y)
}
