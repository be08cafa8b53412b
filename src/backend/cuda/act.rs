//! Activations. CPU twin: src/backend/cpu/act.rs; test: tests/op_act.rs.

use anyhow::Result;

use super::launch::grid_1d;
use super::{Cuda, CudaSlice};

pub fn silu(be: &Cuda, x: &CudaSlice<f32>) -> Result<CudaSlice<f32>> {
    let n = x.len();
    let y = be.alloc(n)?;
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

pub fn gelu_tanh(be: &Cuda, x: &mut CudaSlice<f32>) -> Result<()> {
    let n = x.len();
    if n == 0 {
        return Ok(());
    }
    be.launch(&be.k.gelu_tanh).buf(x).long(n).run(grid_1d(n)?)?;
    be.done("gelu_tanh_f32")
}
