//! Products through cuBLASLt, with the compute type set explicitly and the epilogue doing the
//! bias and the GELU; attention's batched products through cuBLAS. CPU twin:
//! src/backend/cpu/gemm.rs; test: tests/op_gemm.rs.
//!
//! Row-major Y (M, N) = X (M, K) · Wᵀ (W is (N, K)) is, column-major, Yᵀ (N × M) = op(W) · Xᵀ with
//! op = transpose: A = W (K × N, ld K, transposed), B = X (K × M, ld K), D = Y (N × M, ld N), and
//! cuBLASLt's bias runs along D's rows, one value per output feature, as `nn.Linear`'s.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

use anyhow::{bail, ensure, Context, Result};
use cudarc::cublas::sys as blas_sys;
use cudarc::cublaslt::{result as lt, sys as lt_sys};

use super::buf::{Dtype, GpuBuf, Pool};
use super::{Cuda, Precision};

/// What the epilogue adds to the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Epilogue {
    None,
    Bias,
    /// tanh-GELU of product + bias (cuBLASLt's GELU is the tanh form, as SiT's MLP).
    GeluBias,
    Gelu,
}

impl Epilogue {
    fn lt(self) -> lt_sys::cublasLtEpilogue_t {
        use lt_sys::cublasLtEpilogue_t::*;
        match self {
            Epilogue::None => CUBLASLT_EPILOGUE_DEFAULT,
            Epilogue::Bias => CUBLASLT_EPILOGUE_BIAS,
            Epilogue::GeluBias => CUBLASLT_EPILOGUE_GELU_BIAS,
            Epilogue::Gelu => CUBLASLT_EPILOGUE_GELU,
        }
    }
}

fn data_type(d: Dtype) -> lt_sys::cudaDataType {
    match d {
        Dtype::F32 => lt_sys::cudaDataType::CUDA_R_32F,
        Dtype::Bf16 => lt_sys::cudaDataType::CUDA_R_16BF,
    }
}

fn blas_type(d: Dtype) -> blas_sys::cudaDataType {
    match d {
        Dtype::F32 => blas_sys::cudaDataType::CUDA_R_32F,
        Dtype::Bf16 => blas_sys::cudaDataType::CUDA_R_16BF,
    }
}

/// The compute type of a product of `operands` under `precision`: strict fp32, TF32 tensor cores,
/// or bf16 tensor cores (bf16 operands) — always with fp32 accumulation.
pub fn compute(
    precision: Precision,
    operands: Dtype,
) -> (lt_sys::cublasComputeType_t, blas_sys::cublasComputeType_t) {
    match (precision, operands) {
        (Precision::Tf32, Dtype::F32) => (
            lt_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
        ),
        _ => (
            lt_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        ),
    }
}

/// The cuBLASLt workspace: what its heuristics may use.
const WORKSPACE: usize = 32 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PlanKey {
    m: usize,
    k: usize,
    n: usize,
    w: Dtype,
    out: Dtype,
    epilogue: Epilogue,
    tf32: bool,
}

/// A matmul description, its layouts and the algorithm the heuristic chose, made once per shape.
struct Plan {
    desc: lt_sys::cublasLtMatmulDesc_t,
    a: lt_sys::cublasLtMatrixLayout_t,
    b: lt_sys::cublasLtMatrixLayout_t,
    d: lt_sys::cublasLtMatrixLayout_t,
    algo: lt_sys::cublasLtMatmulAlgo_t,
}

/// The cuBLASLt handle, its workspace and the plans made so far.
pub struct Lt {
    handle: lt_sys::cublasLtHandle_t,
    workspace: GpuBuf,
    plans: Mutex<HashMap<PlanKey, Plan>>,
}

// SAFETY: the handle and descriptors are used under the plans' mutex or by one stream's calls,
// which cuBLASLt allows from any thread.
unsafe impl Send for Lt {}
unsafe impl Sync for Lt {}

impl Lt {
    pub fn new(persistent: &std::sync::Arc<Pool>) -> Result<Self> {
        let handle = lt::create_handle().context("creating the cuBLASLt handle")?;
        // Raw bytes: a f32 buffer of a quarter of the length.
        let workspace = persistent.alloc(WORKSPACE / 4, Dtype::F32)?;
        Ok(Lt {
            handle,
            workspace,
            plans: Mutex::default(),
        })
    }
}

impl Drop for Lt {
    fn drop(&mut self) {
        if let Ok(plans) = self.plans.lock() {
            for p in plans.values() {
                // SAFETY: made by this handle, used by no call in flight (the stream is idle at drop).
                unsafe {
                    let _ = lt::destroy_matrix_layout(p.a);
                    let _ = lt::destroy_matrix_layout(p.b);
                    let _ = lt::destroy_matrix_layout(p.d);
                    let _ = lt::destroy_matmul_desc(p.desc);
                }
            }
        }
        // SAFETY: as above.
        let _ = unsafe { lt::destroy_handle(self.handle) };
    }
}

fn attr<T>(
    desc: lt_sys::cublasLtMatmulDesc_t,
    a: lt_sys::cublasLtMatmulDescAttributes_t,
    v: &T,
) -> Result<()> {
    // SAFETY: `v` is the value type the attribute documents, passed with its size.
    unsafe {
        lt::set_matmul_desc_attribute(
            desc,
            a,
            v as *const T as *const c_void,
            std::mem::size_of::<T>(),
        )
    }
    .with_context(|| format!("cublasLtMatmulDescSetAttribute({a:?})"))
}

fn make_plan(lt_: &Lt, key: &PlanKey, precision: Precision) -> Result<Plan> {
    use lt_sys::cublasLtMatmulDescAttributes_t::*;
    let (compute_type, _) = compute(if key.tf32 { Precision::Tf32 } else { precision }, key.w);
    let desc = lt::create_matmul_desc(compute_type, lt_sys::cudaDataType::CUDA_R_32F)
        .context("cublasLtMatmulDescCreate")?;
    // cublasOperation_t as int32: W transposed, X as it is.
    attr(
        desc,
        CUBLASLT_MATMUL_DESC_TRANSA,
        &(blas_sys::cublasOperation_t::CUBLAS_OP_T as i32),
    )?;
    attr(
        desc,
        CUBLASLT_MATMUL_DESC_TRANSB,
        &(blas_sys::cublasOperation_t::CUBLAS_OP_N as i32),
    )?;
    attr(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &key.epilogue.lt())?;
    if matches!(key.epilogue, Epilogue::Bias | Epilogue::GeluBias) {
        attr(
            desc,
            CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
            &lt_sys::cudaDataType::CUDA_R_32F,
        )?;
    }
    let (m, k, n) = (key.m as u64, key.k as u64, key.n as u64);
    let a = lt::create_matrix_layout(data_type(key.w), k, n, k as i64)
        .context("cublasLtMatrixLayoutCreate (W)")?;
    let b = lt::create_matrix_layout(data_type(key.w), k, m, k as i64)
        .context("cublasLtMatrixLayoutCreate (X)")?;
    let d = lt::create_matrix_layout(data_type(key.out), n, m, n as i64)
        .context("cublasLtMatrixLayoutCreate (Y)")?;
    let pref = lt::create_matmul_pref().context("cublasLtMatmulPreferenceCreate")?;
    let size = WORKSPACE;
    // SAFETY: a size_t attribute with its size.
    unsafe {
        lt::set_matmul_pref_attribute(
            pref,
            lt_sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
            &size as *const usize as *const c_void,
            std::mem::size_of::<usize>(),
        )
    }
    .context("cublasLtMatmulPreferenceSetAttribute")?;
    // SAFETY: every descriptor was made above; the heuristic only reads them.
    let heuristic = unsafe { lt::get_matmul_algo_heuristic(lt_.handle, desc, a, b, d, d, pref) };
    // SAFETY: made above, used no more.
    unsafe { lt::destroy_matmul_pref(pref) }.ok();
    let heuristic = heuristic.with_context(|| format!("cuBLASLt has no algorithm for {key:?}"))?;
    Ok(Plan {
        desc,
        a,
        b,
        d,
        algo: heuristic.algo,
    })
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
        (Epilogue::None | Epilogue::Gelu, Some(_)) => {
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
        m,
        k,
        n,
        w: w.dtype(),
        out,
        epilogue,
        tf32: be.precision == Precision::Tf32,
    };
    let mut plans = be
        .lt
        .plans
        .lock()
        .map_err(|_| anyhow::anyhow!("cuBLASLt plans poisoned"))?;
    if let std::collections::hash_map::Entry::Vacant(slot) = plans.entry(key) {
        slot.insert(make_plan(&be.lt, &key, be.precision)?);
    }
    let plan = plans.get(&key).context("a plan just made")?;
    if let Some(b) = b {
        attr(
            plan.desc,
            lt_sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
            &b.ptr(),
        )?;
    }
    let (alpha, beta) = (1.0f32, 0.0f32);
    // SAFETY: the layouts describe the checked buffer sizes; beta = 0, so C (= D) is not read.
    unsafe {
        lt::matmul(
            be.lt.handle,
            plan.desc,
            &alpha as *const f32 as *const c_void,
            &beta as *const f32 as *const c_void,
            w.ptr() as *const c_void,
            plan.a,
            x.ptr() as *const c_void,
            plan.b,
            y.ptr() as *const c_void,
            plan.d,
            y.ptr() as *mut c_void,
            plan.d,
            &plan.algo,
            be.lt.workspace.ptr() as *mut c_void,
            WORKSPACE,
            be.stream.cu_stream() as _,
        )
    }
    .with_context(|| format!("cublasLtMatmul (M={m} K={k} N={n}, {epilogue:?})"))?;
    drop(plans);
    be.count_gemm(w.dtype(), (m * k * n) as u64);
    be.done("gemm")?;
    Ok(y)
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
