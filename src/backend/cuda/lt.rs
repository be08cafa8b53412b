//! cuBLASLt's side of the products: the handle, its workspace and the matmul plans (description,
//! layouts and the heuristic's algorithm, made once per shape and cached), and the compute type
//! of each precision. The products themselves are in gemm.rs.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

use anyhow::{Context, Result};
use cudarc::cublas::sys as blas_sys;
use cudarc::cublaslt::{result as lt, sys as lt_sys};

use super::buf::{Dtype, GpuBuf, Pool};
use crate::backend::Precision;

/// What the epilogue adds to the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Epilogue {
    None,
    Bias,
    /// tanh-GELU of product + bias (cuBLASLt's GELU is the tanh form, as SiT's MLP).
    GeluBias,
    Gelu,
    /// ReLU of product + C (the convolutions, whose C holds the bias).
    Relu,
}

impl Epilogue {
    pub(super) fn lt(self) -> lt_sys::cublasLtEpilogue_t {
        use lt_sys::cublasLtEpilogue_t::*;
        match self {
            Epilogue::None => CUBLASLT_EPILOGUE_DEFAULT,
            Epilogue::Bias => CUBLASLT_EPILOGUE_BIAS,
            Epilogue::GeluBias => CUBLASLT_EPILOGUE_GELU_BIAS,
            Epilogue::Gelu => CUBLASLT_EPILOGUE_GELU,
            Epilogue::Relu => CUBLASLT_EPILOGUE_RELU,
        }
    }
}

fn data_type(d: Dtype) -> lt_sys::cudaDataType {
    match d {
        Dtype::F32 | Dtype::Tf32x3 => lt_sys::cudaDataType::CUDA_R_32F,
        Dtype::Bf16 => lt_sys::cudaDataType::CUDA_R_16BF,
    }
}

/// The compute type of a product of `operands` under `precision`: strict fp32, TF32 tensor cores,
/// or bf16 tensor cores (bf16 operands) — always with fp32 accumulation. Under bf16 the f32
/// products (the conditioning's) run on TF32 tensor cores; split operands are TF32 parts
/// whatever the precision (their product is 3xTF32).
pub(super) fn compute(
    precision: Precision,
    operands: Dtype,
) -> (lt_sys::cublasComputeType_t, blas_sys::cublasComputeType_t) {
    match (precision, operands) {
        (Precision::Tf32 | Precision::Bf16, Dtype::F32) | (_, Dtype::Tf32x3) => (
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
pub(super) const WORKSPACE: usize = 32 << 20;

/// How a product's operands lie in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Form {
    /// `nn.Linear`: row-major Y (M, N) = X (M, K) · Wᵀ, W (N, K).
    Linear,
    /// A convolution over `batch` images: row-major Y_i (N, M) = W (N, K) · cols_i (K, M) with
    /// M = output pixels, N = output channels; one W for every image, C = D (the bias, filled in).
    Conv { batch: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct PlanKey {
    pub(super) form: Form,
    pub(super) m: usize,
    pub(super) k: usize,
    pub(super) n: usize,
    pub(super) w: Dtype,
    pub(super) out: Dtype,
    pub(super) epilogue: Epilogue,
    pub(super) tf32: bool,
}

/// A matmul description, its layouts and the algorithm the heuristic chose, made once per shape.
pub(super) struct Plan {
    pub(super) desc: lt_sys::cublasLtMatmulDesc_t,
    pub(super) a: lt_sys::cublasLtMatrixLayout_t,
    pub(super) b: lt_sys::cublasLtMatrixLayout_t,
    pub(super) d: lt_sys::cublasLtMatrixLayout_t,
    pub(super) algo: lt_sys::cublasLtMatmulAlgo_t,
}

/// The cuBLASLt handle, its workspace and the plans made so far.
pub struct Lt {
    pub(super) handle: lt_sys::cublasLtHandle_t,
    pub(super) workspace: GpuBuf,
    pub(super) plans: Mutex<HashMap<PlanKey, Plan>>,
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

pub(super) fn attr<T>(
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

pub(super) fn make_plan(lt_: &Lt, key: &PlanKey, precision: Precision) -> Result<Plan> {
    use lt_sys::cublasLtMatmulDescAttributes_t::*;
    let (compute_type, _) = compute(if key.tf32 { Precision::Tf32 } else { precision }, key.w);
    let desc = lt::create_matmul_desc(compute_type, lt_sys::cudaDataType::CUDA_R_32F)
        .context("cublasLtMatmulDescCreate")?;
    let (trans_a, layouts) = match key.form {
        Form::Linear => (
            blas_sys::cublasOperation_t::CUBLAS_OP_T,
            linear_layouts(key)?,
        ),
        Form::Conv { batch } => (
            blas_sys::cublasOperation_t::CUBLAS_OP_N,
            conv_layouts(key, batch)?,
        ),
    };
    let [a, b, d] = layouts;
    // cublasOperation_t as int32.
    attr(desc, CUBLASLT_MATMUL_DESC_TRANSA, &(trans_a as i32))?;
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

/// A (W, K × N, transposed), B (X, K × M) and D (Y, N × M): see gemm.rs.
fn linear_layouts(key: &PlanKey) -> Result<[lt_sys::cublasLtMatrixLayout_t; 3]> {
    let (m, k, n) = (key.m as u64, key.k as u64, key.n as u64);
    Ok([
        lt::create_matrix_layout(data_type(key.w), k, n, k as i64)
            .context("cublasLtMatrixLayoutCreate (W)")?,
        lt::create_matrix_layout(data_type(key.w), k, m, k as i64)
            .context("cublasLtMatrixLayoutCreate (X)")?,
        lt::create_matrix_layout(data_type(key.out), n, m, n as i64)
            .context("cublasLtMatrixLayoutCreate (Y)")?,
    ])
}

/// Column-major, per image: A = colsᵀ (M × K, ld M), B = Wᵀ (K × N, ld K, the same for every
/// image: stride 0), D = Y_iᵀ (M × N, ld M), i.e. row-major (N, M) = NCHW.
fn conv_layouts(key: &PlanKey, batch: usize) -> Result<[lt_sys::cublasLtMatrixLayout_t; 3]> {
    let (m, k, n) = (key.m as u64, key.k as u64, key.n as u64);
    let a = lt::create_matrix_layout(data_type(key.w), m, k, m as i64)
        .context("cublasLtMatrixLayoutCreate (cols)")?;
    let b = lt::create_matrix_layout(data_type(key.w), k, n, k as i64)
        .context("cublasLtMatrixLayoutCreate (W)")?;
    let d = lt::create_matrix_layout(data_type(key.out), m, n, m as i64)
        .context("cublasLtMatrixLayoutCreate (Y)")?;
    for (l, stride) in [(a, m * k), (b, 0), (d, m * n)] {
        layout_attr(
            l,
            lt_sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
            &(batch as i32),
        )?;
        layout_attr(
            l,
            lt_sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
            &(stride as i64),
        )?;
    }
    Ok([a, b, d])
}

fn layout_attr<T>(
    l: lt_sys::cublasLtMatrixLayout_t,
    a: lt_sys::cublasLtMatrixLayoutAttribute_t,
    v: &T,
) -> Result<()> {
    // SAFETY: `v` is the value type the attribute documents, passed with its size.
    unsafe {
        lt::set_matrix_layout_attribute(
            l,
            a,
            v as *const T as *const c_void,
            std::mem::size_of::<T>(),
        )
    }
    .with_context(|| format!("cublasLtMatrixLayoutSetAttribute({a:?})"))
}
