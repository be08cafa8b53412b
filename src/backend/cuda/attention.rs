//! Softmax attention. CPU twin: src/backend/cpu/attention.rs; test: tests/op_attention.rs.

use anyhow::{ensure, Context, Result};
use cudarc::driver::sys::CUfunction_attribute;

use super::launch::Dims;
use super::{Cuda, CudaSlice};

/// Shared memory a block may use without opting in.
const SMEM_DEFAULT: u32 = 48 * 1024;

pub fn attention(
    be: &Cuda,
    qkv: &CudaSlice<f32>,
    b: usize,
    t: usize,
    heads: usize,
    dh: usize,
) -> Result<CudaSlice<f32>> {
    ensure!(
        qkv.len() == b * t * 3 * heads * dh,
        "attention: qkv has {} elements for ({b}, {t}, 3·{heads}·{dh})",
        qkv.len()
    );
    let out = be.alloc(b * t * heads * dh)?;
    if out.is_empty() {
        return Ok(out);
    }
    // One block per (query row and image, head): B·T blocks in x, heads in y (≤ 65 535).
    ensure!(
        b * t <= i32::MAX as usize,
        "attention: {b}·{t} query rows exceed the grid (2^31 - 1 blocks)"
    );
    ensure!(
        heads <= 65_535,
        "attention: {heads} heads exceed the grid's y dimension (65 535)"
    );
    // Threads per block: its launch table row. Shared memory: scores[t], q[dh], scratch[threads].
    let threads = be.k.attention.sig.max_threads;
    let smem = (t + dh + threads as usize) * 4;
    ensure!(
        smem <= be.smem_optin as usize,
        "attention: {t} keys need {smem} bytes of shared memory, more than this GPU's {} per block",
        be.smem_optin
    );
    let smem = smem as u32;
    if smem > SMEM_DEFAULT {
        be.k.attention
            .f
            .set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem as i32,
            )
            .context("opting attention_f32 in to more than 48 KiB of shared memory")?;
    }
    let scale = 1.0 / (dh as f32).sqrt();
    be.launch(&be.k.attention)
        .buf(qkv)
        .buf(&out)
        .int(t, "T")
        .int(heads, "heads")
        .int(dh, "head_dim")
        .float(scale)
        .run(Dims {
            grid: ((b * t) as u32, heads as u32, 1),
            block: (threads, 1, 1),
            smem,
        })?;
    be.done("attention_f32")?;
    Ok(out)
}
