//! Products through cuBLASLt, with the compute type set explicitly and the epilogue doing the
//! bias and the GELU; attention's batched products through cuBLAS. CPU twin:
//! src/backend/cpu/gemm.rs; test: tests/ops/op_gemm.rs.
//!
//! Row-major Y (M, N) = X (M, K) · Wᵀ (W is (N, K)) is, column-major, Yᵀ (N × M) = op(W) · Xᵀ with
//! op = transpose: A = W (K × N, ld K, transposed), B = X (K × M, ld K), D = Y (N × M, ld N), and
//! cuBLASLt's bias runs along D's rows, one value per output feature, as `nn.Linear`'s.

use std::ffi::c_void;

use anyhow::{bail, ensure, Context, Result};
use cudarc::cublas::sys as blas_sys;
use cudarc::cublaslt::{result as lt, sys as lt_sys};

use super::buf::{Dtype, GpuBuf};
use super::lt::{attr, compute, make_plan, Form, Plan, PlanKey, WORKSPACE};
use super::{Cuda, Precision};

pub use super::lt::Epilogue;

fn blas_type(d: Dtype) -> blas_sys::cudaDataType {
    match d {
        Dtype::F32 | Dtype::Tf32x3 => blas_sys::cudaDataType::CUDA_R_32F,
        Dtype::Bf16 => blas_sys::cudaDataType::CUDA_R_16BF,
    }
}

/// y (M, N) = epilogue(x (M, K) · wᵀ + b), in `out`'s type. x and w must share a type.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    be: &Cuda,
    x: &GpuBuf,
    w: &GpuBuf,
    b: Option<&GpuBuf>,
    (m, k, n): (usize, usize, usize),
    epilogue: Epilogue,
    out: Dtype,
) -> Result<GpuBuf> {
    ensure!(
        x.dtype() == w.dtype(),
        "linear: x is {:?} and w {:?}",
        x.dtype(),
        w.dtype()
    );
    ensure!(
        b.is_none_or(|b| b.dtype() == Dtype::F32),
        "linear: the bias must be f32"
    );
    let epilogue = match (epilogue, b) {
        (Epilogue::Bias, None) => Epilogue::None,
        (Epilogue::GeluBias, None) => Epilogue::Gelu,
        (Epilogue::None | Epilogue::Gelu | Epilogue::Relu, Some(_)) => {
            bail!("linear: a bias needs a bias epilogue")
        }
        (e, _) => e,
    };
    let y = be.alloc(m * n, out)?;
    if m * n == 0 {
        return Ok(y);
    }
    for (v, what) in [(m, "M"), (k, "K"), (n, "N")] {
        ensure!(
            v <= i32::MAX as usize,
            "linear: {what} = {v} exceeds cuBLAS's 32-bit sizes"
        );
    }
    let key = PlanKey {
        form: Form::Linear,
        m,
        k,
        n,
        w: w.dtype(),
        out,
        epilogue,
        tf32: be.precision == Precision::Tf32,
    };
    with_plan(be, &key, |plan| {
        if let Some(b) = b {
            attr(
                plan.desc,
                lt_sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                &b.ptr(),
            )?;
        }
        // beta = 0: C (= D) is not read.
        run_plan(be, plan, (w.ptr(), x.ptr(), y.ptr()), 0.0)
    })
    .with_context(|| format!("cublasLtMatmul (M={m} K={k} N={n}, {epilogue:?})"))?;
    be.count_gemm(w.dtype(), (m * k * n) as u64);
    be.done("gemm")?;
    Ok(y)
}

/// The convolution's product over `batch` images, on device addresses: for each image i,
/// y_i (N, M) = epilogue(W (N, K) · cols_i (K, M) + y_i), where y already holds the bias;
/// M = output pixels, N = output channels. `cols` has `w`'s type, y is f32.
pub fn conv_matmul(
    be: &Cuda,
    cols: u64,
    w: &GpuBuf,
    y: u64,
    (m, k, n): (usize, usize, usize),
    batch: usize,
    relu: bool,
) -> Result<()> {
    for (v, what) in [(m, "pixels"), (k, "Ci·kh·kw"), (n, "Co"), (batch, "images")] {
        ensure!(
            v <= i32::MAX as usize,
            "conv2d: {what} = {v} exceeds cuBLAS's 32-bit sizes"
        );
    }
    let epilogue = if relu { Epilogue::Relu } else { Epilogue::None };
    let key = PlanKey {
        form: Form::Conv { batch },
        m,
        k,
        n,
        w: w.dtype(),
        out: Dtype::F32,
        epilogue,
        tf32: be.precision == Precision::Tf32,
    };
    // A = cols, B = W; beta = 1 adds the product to the bias already in y.
    with_plan(be, &key, |plan| run_plan(be, plan, (cols, w.ptr(), y), 1.0)).with_context(|| {
        format!("cublasLtMatmul (conv: {batch} × M={m} K={k} N={n}, {epilogue:?})")
    })?;
    be.count_gemm(w.dtype(), (m * k * n * batch) as u64);
    be.done("conv gemm")
}

/// Runs `f` with the plan of `key`, made on first use and cached.
fn with_plan(be: &Cuda, key: &PlanKey, f: impl FnOnce(&Plan) -> Result<()>) -> Result<()> {
    let mut plans = be
        .lt
        .plans
        .lock()
        .map_err(|_| anyhow::anyhow!("cuBLASLt plans poisoned"))?;
    if let std::collections::hash_map::Entry::Vacant(slot) = plans.entry(*key) {
        slot.insert(make_plan(&be.lt, key, be.precision)?);
    }
    f(plans.get(key).context("a plan just made")?)
}

/// cublasLtMatmul of `plan` on operand addresses (A, B, D), alpha 1, C = D.
fn run_plan(be: &Cuda, plan: &Plan, (a, b, d): (u64, u64, u64), beta: f32) -> Result<()> {
    let alpha = 1.0f32;
    // SAFETY: the plan's layouts describe buffers the caller checked; C is D, same layout.
    unsafe {
        lt::matmul(
            be.lt.handle,
            plan.desc,
            &alpha as *const f32 as *const c_void,
            &beta as *const f32 as *const c_void,
            a as *const c_void,
            plan.a,
            b as *const c_void,
            plan.b,
            d as *const c_void,
            plan.d,
            d as *mut c_void,
            plan.d,
            &plan.algo,
            be.lt.workspace.ptr() as *mut c_void,
            WORKSPACE,
            be.stream.cu_stream() as _,
        )
    }?;
    Ok(())
}

/// One batched product of attention: `batch` GEMMs C_i = alpha · op(A_i) · op(B_i), the
/// operand addresses in device pointer arrays (cuBLAS `GemmBatchedEx`).
pub struct Batched {
    pub trans: (bool, bool),
    pub mnk: (usize, usize, usize),
    pub alpha: f32,
    /// (device address of the pointer array, leading dimension) of A, B and C.
    pub a: (u64, usize),
    pub b: (u64, usize),
    pub c: (u64, usize),
    /// Type of A and B, type of C.
    pub types: (Dtype, Dtype),
    pub batch: usize,
}

/// Runs `g`; the arrays of `a`, `b`, `c` each hold `batch` device pointers.
pub fn batched(be: &Cuda, g: &Batched) -> Result<()> {
    let op = |t: bool| {
        if t {
            blas_sys::cublasOperation_t::CUBLAS_OP_T
        } else {
            blas_sys::cublasOperation_t::CUBLAS_OP_N
        }
    };
    let (m, n, k) = g.mnk;
    let (_, compute) = compute(be.precision, g.types.0);
    let beta = 0.0f32;
    let int =
        |v: usize| i32::try_from(v).context("attention: a size exceeds cuBLAS's 32-bit sizes");
    // SAFETY: the pointer arrays hold `batch` addresses of operands whose extents the caller
    // checked against the leading dimensions.
    unsafe {
        blas_sys::cublasGemmBatchedEx(
            *be.blas.handle(),
            op(g.trans.0),
            op(g.trans.1),
            int(m)?,
            int(n)?,
            int(k)?,
            &g.alpha as *const f32 as *const c_void,
            g.a.0 as *const *const c_void,
            blas_type(g.types.0),
            int(g.a.1)?,
            g.b.0 as *const *const c_void,
            blas_type(g.types.0),
            int(g.b.1)?,
            &beta as *const f32 as *const c_void,
            g.c.0 as *const *mut c_void,
            blas_type(g.types.1),
            int(g.c.1)?,
            int(g.batch)?,
            compute,
            blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
        .result()
    }
    .with_context(|| format!("cublasGemmBatchedEx (m={m} n={n} k={k}, batch {})", g.batch))?;
    be.count_gemm(g.types.0, (m * n * k * g.batch) as u64);
    be.done("batched gemm")
}
