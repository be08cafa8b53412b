//! `linear` through cuBLAS. CPU twin: src/backend/cpu/gemm.rs; test: tests/op_gemm.rs.

use anyhow::{ensure, Context, Result};
use cudarc::cublas::{result as blas, sys as blas_sys};
use cudarc::driver::{DevicePtr, DevicePtrMut};

use super::launch::grid_1d;
use super::{Cuda, Precision};

/// y (M, N) = x (M, K) · wᵀ + b, w (N, K).
pub fn linear(
    be: &Cuda,
    x: &super::CudaSlice<f32>,
    w: &super::CudaSlice<f32>,
    b: Option<&super::CudaSlice<f32>>,
    m: usize,
    k: usize,
    n: usize,
) -> Result<super::CudaSlice<f32>> {
    ensure!(
        x.len() == m * k && w.len() == n * k,
        "linear: x {} / w {} elements for M={m} K={k} N={n}",
        x.len(),
        w.len()
    );
    ensure!(
        b.is_none_or(|b| b.len() == n),
        "linear: bias length differs from N={n}"
    );
    let mut y = be.alloc(m * n)?;
    if m * n == 0 {
        return Ok(y);
    }
    // The bias is the C operand (beta = 1); without one, beta = 0 and C is never read.
    let beta: f32 = match b {
        Some(b) => {
            be.launch(&be.k.fill_rows)
                .buf(&y)
                .buf(b)
                .int(n, "N")
                .long(m * n)
                .run(grid_1d(m * n)?)?;
            be.done("fill_rows_f32")?;
            1.0
        }
        None => 0.0,
    };
    if k == 0 {
        // An empty sum: y is the bias, or zero. (cuBLAS would refuse lda = 0.)
        if b.is_none() {
            be.stream
                .memset_zeros(&mut y)
                .context("zeroing an empty product")?;
        }
        return Ok(y);
    }
    let int = |v: usize, what: &str| -> Result<i32> {
        i32::try_from(v)
            .with_context(|| format!("linear: {what} = {v} exceeds cuBLAS's 32-bit sizes"))
    };
    let (mi, ki, ni) = (int(m, "M")?, int(k, "K")?, int(n, "N")?);
    let alpha = 1.0f32;
    let compute = match be.precision {
        Precision::Tf32 => blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
        _ => blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
    };
    // Row-major Y (M, N) = X (M, K) · Wᵀ is column-major Yᵀ (N, M) = op(W)·Xᵀ with op = transpose.
    {
        let (wp, _gw) = w.device_ptr(&be.stream);
        let (xp, _gx) = x.device_ptr(&be.stream);
        let (yp, _gy) = y.device_ptr_mut(&be.stream);
        // SAFETY: pointers and leading dimensions describe the checked buffer sizes.
        unsafe {
            blas::gemm_ex(
                *be.blas.handle(),
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                ni,
                mi,
                ki,
                &alpha as *const f32 as *const _,
                wp as *const _,
                blas_sys::cudaDataType::CUDA_R_32F,
                ki,
                xp as *const _,
                blas_sys::cudaDataType::CUDA_R_32F,
                ki,
                &beta as *const f32 as *const _,
                yp as *mut _,
                blas_sys::cudaDataType::CUDA_R_32F,
                ni,
                compute,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .with_context(|| format!("cublasGemmEx (M={m} K={k} N={n})"))?;
    }
    be.done("gemm")?;
    Ok(y)
}
