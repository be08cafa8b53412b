//! The stand-in's cuBLASLt, batched cuBLAS, stream capture and graphs, page-locked memory, NVTX
//! and the calling thread's current context (kernels/emu/), each against NVIDIA's documented
//! semantics, called through cudarc as the backend calls them. GEMMs are compared with an f64
//! reference on odd, asymmetric shapes: fp32 within 1e-6 relative, TF32 and bf16 within the
//! rounding they imply.
//!
//! The counters and any capture are process-wide: each test has the device to itself, also
//! against the other tests of this binary (`common::cuda::exclusive()`).
//! A fault leaves the context's error sticky, so the one test that faults on purpose does it in
//! a child process. On a real GPU these tests skip (they check the emulator).

use std::process::Command;
use std::sync::Arc;

use cudarc::cublas::{result as blas, sys as blas_sys};
use cudarc::cublaslt::{result as lt, sys as lt_sys};
use cudarc::driver::sys::{
    CUgraphInstantiate_flags, CUresult, CUstreamCaptureMode, CUstreamCaptureStatus,
};
use cudarc::driver::{
    result as drv, CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DriverError,
    LaunchConfig, PushKernelArg,
};
use half::bf16;
use serde_json::Value;
use sitdiv::backend::cuda::standin;

use crate::common::cuda;
use crate::common::ops::signed_unit;

use lt_sys::cublasComputeType_t::{
    CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_COMPUTE_32F_FAST_TF32,
};
use lt_sys::cublasLtEpilogue_t::{
    CUBLASLT_EPILOGUE_BIAS, CUBLASLT_EPILOGUE_DEFAULT, CUBLASLT_EPILOGUE_GELU,
    CUBLASLT_EPILOGUE_GELU_BIAS, CUBLASLT_EPILOGUE_RELU, CUBLASLT_EPILOGUE_RELU_BIAS,
};
use lt_sys::cudaDataType::{CUDA_R_16BF, CUDA_R_32F};

/// Holds the device alone (the counters are process-wide: no other test of this binary uses the
/// device meanwhile); None (after a loud SKIPPED) when the stand-in is not the driver.
fn on_standin(test: &str) -> Option<std::sync::RwLockWriteGuard<'static, ()>> {
    if !standin::active() {
        eprintln!(
            "SKIPPED: {test} checks the emulated device's APIs: run it under scripts/emulated-gpu.sh \
             (on a GPU node it has nothing to check)"
        );
        return None;
    }
    Some(cuda::exclusive())
}

/// The name libtest gives this module's test `test`: its path without the binary's name.
fn test_path(test: &str) -> String {
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    format!("{module}::{test}")
}

fn counts() -> Value {
    standin::counts().expect("stand-in counters")
}

fn num(c: &Value, key: &str) -> f64 {
    c[key]
        .as_f64()
        .unwrap_or_else(|| panic!("counter {key} missing: {c}"))
}

fn entry(c: &Value, table: &str, key: &str) -> f64 {
    c[table][key].as_f64().unwrap_or(0.0)
}

fn ptr<T>(s: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    s.device_ptr(stream).0
}

// ---- host matrices and the f64 reference ------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Ty {
    F32,
    Bf16,
}

/// `batch` column-major matrices, `ld` apart in a column and `stride` apart in a batch; the
/// padding between them holds NaN, so that reading it shows.
#[derive(Clone)]
struct HostMat {
    rows: usize,
    cols: usize,
    ld: usize,
    stride: usize,
    batch: usize,
    ty: Ty,
    data: Vec<f64>,
}

impl HostMat {
    fn new(
        rows: usize,
        cols: usize,
        ld: usize,
        stride: usize,
        batch: usize,
        ty: Ty,
        seed: u64,
    ) -> Self {
        let len = (batch - 1) * stride + (cols - 1) * ld + rows;
        let v = signed_unit(seed, len);
        let mut data = vec![f64::NAN; len];
        for b in 0..batch {
            for j in 0..cols {
                for i in 0..rows {
                    let at = b * stride + j * ld + i;
                    data[at] = match ty {
                        Ty::F32 => v[at] as f32 as f64,
                        Ty::Bf16 => bf16::from_f64(v[at]).to_f64(),
                    };
                }
            }
        }
        HostMat {
            rows,
            cols,
            ld,
            stride,
            batch,
            ty,
            data,
        }
    }
    fn at(&self, b: usize, i: usize, j: usize) -> f64 {
        self.data[b * self.stride + j * self.ld + i]
    }
    fn upload(&self, stream: &Arc<CudaStream>) -> Dev {
        match self.ty {
            Ty::F32 => Dev::F32(
                stream
                    .clone_htod(&self.data.iter().map(|&x| x as f32).collect::<Vec<_>>())
                    .unwrap(),
            ),
            Ty::Bf16 => Dev::Bf16(
                stream
                    .clone_htod(
                        &self
                            .data
                            .iter()
                            .map(|&x| bf16::from_f64(x))
                            .collect::<Vec<_>>(),
                    )
                    .unwrap(),
            ),
        }
    }
    fn lt_type(&self) -> lt_sys::cudaDataType {
        if self.ty == Ty::F32 {
            CUDA_R_32F
        } else {
            CUDA_R_16BF
        }
    }
}

enum Dev {
    F32(CudaSlice<f32>),
    Bf16(CudaSlice<bf16>),
}

impl Dev {
    fn ptr(&self, stream: &CudaStream) -> u64 {
        match self {
            Dev::F32(s) => ptr(s, stream),
            Dev::Bf16(s) => ptr(s, stream),
        }
    }
    fn read(&self, stream: &Arc<CudaStream>) -> Vec<f64> {
        match self {
            Dev::F32(s) => stream
                .clone_dtoh(s)
                .unwrap()
                .into_iter()
                .map(|x| x as f64)
                .collect(),
            Dev::Bf16(s) => stream
                .clone_dtoh(s)
                .unwrap()
                .into_iter()
                .map(|x| x.to_f64())
                .collect(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Act {
    None,
    Relu,
    Gelu,
}

fn activate(v: f64, act: Act) -> f64 {
    match act {
        Act::None => v,
        Act::Relu => {
            if v > 0.0 {
                v
            } else {
                0.0
            }
        }
        Act::Gelu => {
            0.5 * v
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh())
        }
    }
}

/// TF32 as cvt.rna.tf32.f32 makes it: 10 mantissa bits, nearest, ties away from zero.
fn tf32(x: f64) -> f64 {
    f32::from_bits(((x as f32).to_bits() + 0x1000) & 0xffff_e000) as f64
}

/// bf16, nearest, ties to even.
fn to_bf16(x: f64) -> f64 {
    bf16::from_f32(x as f32).to_f64()
}

/// One product of the reference: op(A) m×k, op(B) k×n.
struct Gemm<'a> {
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f64,
    beta: f64,
    a: &'a HostMat,
    b: &'a HostMat,
    c: Option<&'a HostMat>,
    bias: Option<(&'a [f64], usize)>,
    act: Act,
    round: fn(f64) -> f64,
}

impl Gemm<'_> {
    /// Batch `bi` of D, m×n column-major, and the scale of each element's terms (Σ|terms|).
    fn reference(&self, bi: usize) -> (Vec<f64>, Vec<f64>) {
        let (mut d, mut scale) = (vec![0.0; self.m * self.n], vec![0.0; self.m * self.n]);
        for j in 0..self.n {
            for i in 0..self.m {
                let (mut s, mut t) = (0.0, 0.0);
                for l in 0..self.k {
                    let a = if self.ta {
                        self.a.at(bi, l, i)
                    } else {
                        self.a.at(bi, i, l)
                    };
                    let b = if self.tb {
                        self.b.at(bi, j, l)
                    } else {
                        self.b.at(bi, l, j)
                    };
                    let p = (self.round)(a) * (self.round)(b);
                    s += p;
                    t += p.abs();
                }
                let mut v = self.alpha * s;
                t *= self.alpha.abs();
                if let Some(c) = self.c {
                    if self.beta != 0.0 {
                        v += self.beta * c.at(bi, i, j);
                        t += (self.beta * c.at(bi, i, j)).abs();
                    }
                }
                if let Some((bias, stride)) = self.bias {
                    v += bias[bi * stride + i];
                    t += bias[bi * stride + i].abs();
                }
                d[i + j * self.m] = activate(v, self.act);
                scale[i + j * self.m] = t;
            }
        }
        (d, scale)
    }

    /// The largest error of `got` (D as read back, `ld` and `stride` apart) over `tol`, which gives
    /// each element's allowed error from its reference and scale; and the largest relative error.
    fn compare(
        &self,
        got: &[f64],
        ld: usize,
        stride: usize,
        batch: usize,
        tol: impl Fn(f64, f64) -> f64,
    ) -> (f64, f64) {
        let (mut worst, mut rel) = (0.0f64, 0.0f64);
        for bi in 0..batch {
            let (want, scale) = self.reference(bi);
            for j in 0..self.n {
                for i in 0..self.m {
                    let (g, w) = (got[bi * stride + j * ld + i], want[i + j * self.m]);
                    assert!(g.is_finite(), "D[{bi}][{i},{j}] = {g} (reference {w})");
                    worst = worst.max((g - w).abs() / tol(w, scale[i + j * self.m]));
                    rel = rel.max((g - w).abs() / w.abs().max(1e-30));
                }
            }
        }
        (worst, rel)
    }
}

/// fp32: the only error is D's rounding (2^-24 relative) and f64 accumulation.
fn fp32_tol(w: f64, scale: f64) -> f64 {
    1e-6 * w.abs() + 1e-12 * scale
}

/// bf16 output: half a bf16 unit in the last place of the reference.
fn bf16_tol(w: f64, scale: f64) -> f64 {
    let e = if w == 0.0 {
        -126
    } else {
        w.abs().log2().floor() as i32
    };
    0.5 * 2f64.powi(e - 7) * (1.0 + 1e-6) + 1e-12 * scale
}

// ---- cuBLASLt through cudarc ------------------------------------------------------------------

struct Layout {
    ty: lt_sys::cudaDataType,
    rows: u64,
    cols: u64,
    ld: i64,
    batch: i32,
    stride: i64,
}

impl Layout {
    fn of(m: &HostMat) -> Self {
        Layout {
            ty: m.lt_type(),
            rows: m.rows as u64,
            cols: m.cols as u64,
            ld: m.ld as i64,
            batch: m.batch as i32,
            stride: m.stride as i64,
        }
    }
    fn create(&self) -> lt_sys::cublasLtMatrixLayout_t {
        use lt_sys::cublasLtMatrixLayoutAttribute_t::*;
        let l = lt::create_matrix_layout(self.ty, self.rows, self.cols, self.ld).unwrap();
        if self.batch != 1 {
            unsafe {
                lt::set_matrix_layout_attribute(
                    l,
                    CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                    &self.batch as *const i32 as _,
                    4,
                )
                .unwrap();
                lt::set_matrix_layout_attribute(
                    l,
                    CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                    &self.stride as *const i64 as _,
                    8,
                )
                .unwrap();
            }
        }
        l
    }
}

/// One cublasLtMatmul as the backend would make it: descriptors, heuristic, matmul.
struct LtCall {
    compute: lt_sys::cublasComputeType_t,
    ta: bool,
    tb: bool,
    epilogue: lt_sys::cublasLtEpilogue_t,
    bias: Option<(u64, Option<lt_sys::cudaDataType>, i64)>,
    alpha: f32,
    beta: f32,
}

fn desc_attr<T>(
    desc: lt_sys::cublasLtMatmulDesc_t,
    a: lt_sys::cublasLtMatmulDescAttributes_t,
    v: &T,
) {
    unsafe { lt::set_matmul_desc_attribute(desc, a, v as *const T as _, std::mem::size_of::<T>()) }
        .unwrap_or_else(|e| panic!("setting {a:?}: {e:?}"));
}

impl LtCall {
    fn desc(&self) -> lt_sys::cublasLtMatmulDesc_t {
        use lt_sys::cublasLtMatmulDescAttributes_t::*;
        let d = lt::create_matmul_desc(self.compute, CUDA_R_32F).unwrap();
        desc_attr(d, CUBLASLT_MATMUL_DESC_TRANSA, &(self.ta as i32));
        desc_attr(d, CUBLASLT_MATMUL_DESC_TRANSB, &(self.tb as i32));
        desc_attr(d, CUBLASLT_MATMUL_DESC_EPILOGUE, &self.epilogue);
        if let Some((p, ty, stride)) = self.bias {
            desc_attr(d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p);
            if let Some(ty) = ty {
                desc_attr(d, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &ty);
            }
            desc_attr(d, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, &stride);
        }
        d
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        handle: lt_sys::cublasLtHandle_t,
        stream: &CudaStream,
        (a, la): (u64, &Layout),
        (b, lb): (u64, &Layout),
        (c, lc): (u64, &Layout),
        (d, ld): (u64, &Layout),
    ) -> Result<(), lt::CublasError> {
        let desc = self.desc();
        let (al, bl, dl) = (la.create(), lb.create(), ld.create());
        // In place (C is D) the backend passes D's layout for C, as cudarc's safe matmul does.
        let cl = if c == d { dl } else { lc.create() };
        let pref = lt::create_matmul_pref().unwrap();
        let ws: usize = 32 << 20;
        unsafe {
            lt::set_matmul_pref_attribute(
                pref,
                lt_sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &ws as *const usize as _,
                8,
            )
            .unwrap();
        }
        let r = unsafe {
            lt::get_matmul_algo_heuristic(handle, desc, al, bl, cl, dl, pref).and_then(|h| {
                lt::matmul(
                    handle,
                    desc,
                    &self.alpha as *const f32 as _,
                    &self.beta as *const f32 as _,
                    a as _,
                    al,
                    b as _,
                    bl,
                    c as _,
                    cl,
                    d as _,
                    dl,
                    &h.algo,
                    std::ptr::null_mut(),
                    0,
                    stream.cu_stream() as _,
                )
            })
        };
        unsafe {
            lt::destroy_matmul_pref(pref).unwrap();
            if c != d {
                lt::destroy_matrix_layout(cl).unwrap();
            }
            for l in [al, bl, dl] {
                lt::destroy_matrix_layout(l).unwrap();
            }
            lt::destroy_matmul_desc(desc).unwrap();
        }
        r
    }
}

fn act_of(e: lt_sys::cublasLtEpilogue_t) -> (Act, bool) {
    match e {
        CUBLASLT_EPILOGUE_DEFAULT => (Act::None, false),
        CUBLASLT_EPILOGUE_RELU => (Act::Relu, false),
        CUBLASLT_EPILOGUE_BIAS => (Act::None, true),
        CUBLASLT_EPILOGUE_RELU_BIAS => (Act::Relu, true),
        CUBLASLT_EPILOGUE_GELU => (Act::Gelu, false),
        CUBLASLT_EPILOGUE_GELU_BIAS => (Act::Gelu, true),
        _ => unreachable!(),
    }
}

const EPILOGUES: [lt_sys::cublasLtEpilogue_t; 6] = [
    CUBLASLT_EPILOGUE_DEFAULT,
    CUBLASLT_EPILOGUE_RELU,
    CUBLASLT_EPILOGUE_BIAS,
    CUBLASLT_EPILOGUE_RELU_BIAS,
    CUBLASLT_EPILOGUE_GELU,
    CUBLASLT_EPILOGUE_GELU_BIAS,
];

fn exact(x: f64) -> f64 {
    x
}

/// A/B stored for op(A) m×k and op(B) k×n under the given transposes, padded.
#[allow(clippy::too_many_arguments)]
fn operands(
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    batch: usize,
    ty: Ty,
    seed: u64,
) -> (HostMat, HostMat) {
    let (ar, ac) = if ta { (k, m) } else { (m, k) };
    let (br, bc) = if tb { (n, k) } else { (k, n) };
    let a = HostMat::new(ar, ac, ar + 3, (ar + 3) * ac + 5, batch, ty, seed);
    let b = HostMat::new(br, bc, br + 2, (br + 2) * bc + 9, batch, ty, seed + 1);
    (a, b)
}

#[test]
fn lt_fp32_every_epilogue_and_transpose_matches_f64() {
    let Some(_g) = on_standin("lt_fp32_every_epilogue_and_transpose_matches_f64") else {
        return;
    };
    let ctx = CudaContext::new(0).unwrap();
    let stream = ctx.default_stream();
    let handle = lt::create_handle().unwrap();
    let (m, n, k) = (37, 23, 19);
    let before = counts();
    let c = HostMat::new(m, n, m + 3, 0, 1, Ty::F32, 7);
    let bias = signed_unit(8, m);
    let dc = c.upload(&stream);
    let dbias = stream
        .clone_htod(&bias.iter().map(|&x| x as f32).collect::<Vec<_>>())
        .unwrap();
    let mut worst = 0.0f64;
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let (a, b) = operands(ta, tb, m, n, k, 1, Ty::F32, 1);
        let (da, db) = (a.upload(&stream), b.upload(&stream));
        for e in EPILOGUES {
            let (act, has_bias) = act_of(e);
            // D apart from C, with another leading dimension: out of place.
            let d = HostMat::new(m, n, m + 5, 0, 1, Ty::F32, 9);
            let dd = d.upload(&stream);
            let call = LtCall {
                compute: CUBLAS_COMPUTE_32F,
                ta,
                tb,
                epilogue: e,
                bias: has_bias.then(|| (ptr(&dbias, &stream), None, 0)),
                alpha: 0.75,
                beta: -0.5,
            };
            call.run(
                handle,
                &stream,
                (da.ptr(&stream), &Layout::of(&a)),
                (db.ptr(&stream), &Layout::of(&b)),
                (dc.ptr(&stream), &Layout::of(&c)),
                (dd.ptr(&stream), &Layout::of(&d)),
            )
            .unwrap_or_else(|err| {
                panic!("{e:?} ta={ta} tb={tb}: {err:?} {:?}", standin::last_error())
            });
            let g = Gemm {
                ta,
                tb,
                m,
                n,
                k,
                alpha: 0.75,
                beta: -0.5,
                a: &a,
                b: &b,
                c: Some(&c),
                bias: has_bias.then_some((&bias[..], 0)),
                act,
                round: exact,
            };
            let (w, _) = g.compare(&dd.read(&stream), m + 5, 0, 1, fp32_tol);
            assert!(
                w <= 1.0,
                "{e:?} ta={ta} tb={tb}: error {w} times the fp32 tolerance"
            );
            worst = worst.max(w);
        }
    }
    let after = counts();
    assert_eq!(num(&after, "lt_matmuls") - num(&before, "lt_matmuls"), 24.0);
    for name in ["DEFAULT", "RELU", "BIAS", "RELU_BIAS", "GELU", "GELU_BIAS"] {
        assert_eq!(
            entry(&after, "epilogues", name) - entry(&before, "epilogues", name),
            4.0,
            "epilogue {name}"
        );
    }
    let key = "COMPUTE_32F/32F";
    assert_eq!(
        entry(&after, "gemms_by_compute", key) - entry(&before, "gemms_by_compute", key),
        24.0
    );
    println!(
        "24 matmuls ({m}x{k} · {k}x{n}, 4 transposes × 6 epilogues, C apart from D): worst error {worst:.3} of the \
         fp32 tolerance; counters lt_matmuls +24, each epilogue +4, {key} +24"
    );
    unsafe { lt::destroy_handle(handle).unwrap() };
}

#[test]
fn lt_in_place_strided_batches_with_batched_bias() {
    let Some(_g) = on_standin("lt_in_place_strided_batches_with_batched_bias") else {
        return;
    };
    let ctx = CudaContext::new(0).unwrap();
    let stream = ctx.default_stream();
    let handle = lt::create_handle().unwrap();
    let (m, n, k, batch) = (13, 29, 11, 3);
    let (a, b) = operands(true, false, m, n, k, batch, Ty::F32, 21);
    // C is D: in place, beta != 0 reads it first.
    let d = HostMat::new(m, n, m + 1, (m + 1) * n + 4, batch, Ty::F32, 23);
    let bias: Vec<f64> = signed_unit(24, (m + 2) * batch)
        .iter()
        .map(|&x| to_bf16(x))
        .collect();
    let (da, db, dd) = (a.upload(&stream), b.upload(&stream), d.upload(&stream));
    let dbias = stream
        .clone_htod(&bias.iter().map(|&x| bf16::from_f64(x)).collect::<Vec<_>>())
        .unwrap();
    let call = LtCall {
        compute: CUBLAS_COMPUTE_32F,
        ta: true,
        tb: false,
        epilogue: CUBLASLT_EPILOGUE_GELU_BIAS,
        bias: Some((ptr(&dbias, &stream), Some(CUDA_R_16BF), (m + 2) as i64)),
        alpha: 1.5,
        beta: 1.25,
    };
    let p = dd.ptr(&stream);
    call.run(
        handle,
        &stream,
        (da.ptr(&stream), &Layout::of(&a)),
        (db.ptr(&stream), &Layout::of(&b)),
        (p, &Layout::of(&d)),
        (p, &Layout::of(&d)),
    )
    .unwrap();
    let g = Gemm {
        ta: true,
        tb: false,
        m,
        n,
        k,
        alpha: 1.5,
        beta: 1.25,
        a: &a,
        b: &b,
        c: Some(&d),
        bias: Some((&bias[..], m + 2)),
        act: Act::Gelu,
        round: exact,
    };
    let got = dd.read(&stream);
    let (w, _) = g.compare(&got, m + 1, (m + 1) * n + 4, batch, fp32_tol);
    assert!(w <= 1.0, "error {w} times the fp32 tolerance");
    // The padding between D's columns and batches is untouched (NaN as uploaded).
    let pad = (0..got.len())
        .filter(|&i| d.data[i].is_nan())
        .all(|i| got[i].is_nan());
    assert!(pad, "the matmul wrote D's padding");
    println!(
        "in place (C = D), {batch} strided batches of {m}x{k}ᵀ·{k}x{n}, bf16 bias with batch stride {}, GELU_BIAS: \
         worst error {w:.3} of the fp32 tolerance, padding untouched",
        m + 2
    );
    unsafe { lt::destroy_handle(handle).unwrap() };
}

#[test]
fn lt_beta_zero_never_reads_c_and_a_broadcast_c() {
    let Some(_g) = on_standin("lt_beta_zero_never_reads_c_and_a_broadcast_c") else {
        return;
    };
    let ctx = CudaContext::new(0).unwrap();
    let stream = ctx.default_stream();
    let handle = lt::create_handle().unwrap();
    let (m, n, k) = (10, 7, 5);
    let (a, b) = operands(false, true, m, n, k, 1, Ty::F32, 31);
    let (da, db) = (a.upload(&stream), b.upload(&stream));
    // In place over NaN with beta = 0: C (= D) must not be read.
    let mut d = HostMat::new(m, n, m, 0, 1, Ty::F32, 32);
    d.data.iter_mut().for_each(|x| *x = f64::NAN);
    let dd = d.upload(&stream);
    let call = LtCall {
        compute: CUBLAS_COMPUTE_32F,
        ta: false,
        tb: true,
        epilogue: CUBLASLT_EPILOGUE_RELU,
        bias: None,
        alpha: 2.0,
        beta: 0.0,
    };
    let p = dd.ptr(&stream);
    call.run(
        handle,
        &stream,
        (da.ptr(&stream), &Layout::of(&a)),
        (db.ptr(&stream), &Layout::of(&b)),
        (p, &Layout::of(&d)),
        (p, &Layout::of(&d)),
    )
    .unwrap();
    let g = Gemm {
        ta: false,
        tb: true,
        m,
        n,
        k,
        alpha: 2.0,
        beta: 0.0,
        a: &a,
        b: &b,
        c: None,
        bias: None,
        act: Act::Relu,
        round: exact,
    };
    let (w0, _) = g.compare(&dd.read(&stream), m, 0, 1, fp32_tol);
    assert!(w0 <= 1.0);
    // Out of place, C one column with leading dimension 0: broadcast along D's columns.
    let col = HostMat::new(m, 1, m, 0, 1, Ty::F32, 33);
    let bc = HostMat {
        cols: n,
        ld: 0,
        ..col.clone()
    };
    let dcol = col.upload(&stream);
    let d2 = HostMat::new(m, n, m, 0, 1, Ty::F32, 34);
    let dd2 = d2.upload(&stream);
    let call = LtCall {
        beta: 0.5,
        epilogue: CUBLASLT_EPILOGUE_DEFAULT,
        ..call
    };
    let lc = Layout {
        ld: 0,
        cols: n as u64,
        ..Layout::of(&col)
    };
    call.run(
        handle,
        &stream,
        (da.ptr(&stream), &Layout::of(&a)),
        (db.ptr(&stream), &Layout::of(&b)),
        (dcol.ptr(&stream), &lc),
        (dd2.ptr(&stream), &Layout::of(&d2)),
    )
    .unwrap();
    let g = Gemm {
        beta: 0.5,
        c: Some(&bc),
        act: Act::None,
        ..g
    };
    let (w1, _) = g.compare(&dd2.read(&stream), m, 0, 1, fp32_tol);
    assert!(w1 <= 1.0);
    println!("beta = 0 over a NaN D (in place): finite, error {w0:.3} of the tolerance; a broadcast C (ldc = 0): {w1:.3}");
    unsafe { lt::destroy_handle(handle).unwrap() };
}

#[test]
fn lt_bf16_operands_and_outputs_round_to_nearest_even() {
    let Some(_g) = on_standin("lt_bf16_operands_and_outputs_round_to_nearest_even") else {
        return;
    };
    let ctx = CudaContext::new(0).unwrap();
    let stream = ctx.default_stream();
    let handle = lt::create_handle().unwrap();
    let (m, n, k) = (17, 9, 33);
    let before = counts();
    let mut report = Vec::new();
    for (out, ta, tb) in [
        (Ty::Bf16, false, false),
        (Ty::Bf16, true, true),
        (Ty::F32, true, false),
    ] {
        let (a, b) = operands(ta, tb, m, n, k, 1, Ty::Bf16, 41);
        let d = HostMat::new(m, n, m + 2, 0, 1, out, 43);
        let bias: Vec<f64> = signed_unit(44, m).iter().map(|&x| to_bf16(x)).collect();
        let (da, db, dd) = (a.upload(&stream), b.upload(&stream), d.upload(&stream));
        // The bias type is left to its default, D's.
        let dbias = HostMat {
            rows: m,
            cols: 1,
            ld: m,
            stride: 0,
            batch: 1,
            ty: out,
            data: bias.clone(),
        }
        .upload(&stream);
        let call = LtCall {
            compute: CUBLAS_COMPUTE_32F,
            ta,
            tb,
            epilogue: CUBLASLT_EPILOGUE_BIAS,
            bias: Some((dbias.ptr(&stream), None, 0)),
            alpha: 1.0,
            beta: 0.5,
        };
        let p = dd.ptr(&stream);
        call.run(
            handle,
            &stream,
            (da.ptr(&stream), &Layout::of(&a)),
            (db.ptr(&stream), &Layout::of(&b)),
            (p, &Layout::of(&d)),
            (p, &Layout::of(&d)),
        )
        .unwrap_or_else(|e| panic!("{e:?}: {:?}", standin::last_error()));
        let g = Gemm {
            ta,
            tb,
            m,
            n,
            k,
            alpha: 1.0,
            beta: 0.5,
            a: &a,
            b: &b,
            c: Some(&d),
            bias: Some((&bias[..], 0)),
            act: Act::None,
            round: exact,
        };
        let got = dd.read(&stream);
        let (w, _) = g.compare(
            &got,
            m + 2,
            0,
            1,
            if out == Ty::Bf16 { bf16_tol } else { fp32_tol },
        );
        assert!(
            w <= 1.0,
            "bf16 in, {} out: error {w} times the tolerance",
            if out == Ty::Bf16 { "bf16" } else { "fp32" }
        );
        if out == Ty::Bf16 {
            // Every output is a bf16 value, and the nearest one to the reference.
            let (want, _) = g.reference(0);
            let nearest = (0..n)
                .flat_map(|j| (0..m).map(move |i| (i, j)))
                .filter(|&(i, j)| got[j * (m + 2) + i] == to_bf16(want[i + j * m]))
                .count();
            report.push(format!("bf16 out (ta={ta} tb={tb}): {nearest}/{} nearest bf16, worst {w:.3} of half an ulp", m * n));
            assert!(
                nearest * 100 >= m * n * 99,
                "only {nearest} of {} outputs are the nearest bf16",
                m * n
            );
        } else {
            report.push(format!(
                "fp32 out (ta={ta} tb={tb}): worst {w:.3} of the fp32 tolerance"
            ));
        }
    }
    let after = counts();
    let key = "COMPUTE_32F/16BF";
    assert_eq!(
        entry(&after, "gemms_by_compute", key) - entry(&before, "gemms_by_compute", key),
        3.0
    );
    println!(
        "bf16 A/B, {m}x{k}·{k}x{n}, BIAS in place with beta 0.5: {}",
        report.join("; ")
    );
    unsafe { lt::destroy_handle(handle).unwrap() };
}

#[test]
fn lt_tf32_and_bf16_compute_round_the_inputs() {
    let Some(_g) = on_standin("lt_tf32_and_bf16_compute_round_the_inputs") else {
        return;
    };
    let ctx = CudaContext::new(0).unwrap();
    let stream = ctx.default_stream();
    let handle = lt::create_handle().unwrap();
    let before = counts();
    // Exact ties: TF32 rounds away from zero, bf16 to even.
    let one = |x: f64, compute| -> f64 {
        let a = stream.clone_htod(&[x as f32]).unwrap();
        let b = stream.clone_htod(&[1.0f32]).unwrap();
        let d = stream.clone_htod(&[0.0f32]).unwrap();
        let l = Layout {
            ty: CUDA_R_32F,
            rows: 1,
            cols: 1,
            ld: 1,
            batch: 1,
            stride: 0,
        };
        let call = LtCall {
            compute,
            ta: false,
            tb: false,
            epilogue: CUBLASLT_EPILOGUE_DEFAULT,
            bias: None,
            alpha: 1.0,
            beta: 0.0,
        };
        call.run(
            handle,
            &stream,
            (ptr(&a, &stream), &l),
            (ptr(&b, &stream), &l),
            (ptr(&d, &stream), &l),
            (ptr(&d, &stream), &l),
        )
        .unwrap();
        stream.clone_dtoh(&d).unwrap()[0] as f64
    };
    let ties = [
        (
            1.0 + 2f64.powi(-11),
            CUBLAS_COMPUTE_32F_FAST_TF32,
            1.0 + 2f64.powi(-10),
        ),
        (
            -(1.0 + 2f64.powi(-11)),
            CUBLAS_COMPUTE_32F_FAST_TF32,
            -(1.0 + 2f64.powi(-10)),
        ),
        (1.0 + 2f64.powi(-8), CUBLAS_COMPUTE_32F_FAST_16BF, 1.0),
        (
            1.0 + 3.0 * 2f64.powi(-8),
            CUBLAS_COMPUTE_32F_FAST_16BF,
            1.0 + 2f64.powi(-6),
        ),
        (
            1.0 + 2f64.powi(-11),
            CUBLAS_COMPUTE_32F,
            1.0 + 2f64.powi(-11),
        ),
    ];
    for (x, compute, want) in ties {
        assert_eq!(one(x, compute), want, "{x} · 1 with {compute:?}");
    }
    // Random inputs with all 23 mantissa bits: TF32 and bf16 differ from fp32, each as its rounding implies.
    let (m, n, k) = (21, 14, 45);
    let (a, b) = operands(true, false, m, n, k, 1, Ty::F32, 51);
    let (da, db) = (a.upload(&stream), b.upload(&stream));
    let mut report = Vec::new();
    for (compute, round) in [
        (CUBLAS_COMPUTE_32F_FAST_TF32, tf32 as fn(f64) -> f64),
        (CUBLAS_COMPUTE_32F_FAST_16BF, to_bf16),
    ] {
        let d = HostMat::new(m, n, m, 0, 1, Ty::F32, 52);
        let dd = d.upload(&stream);
        let call = LtCall {
            compute,
            ta: true,
            tb: false,
            epilogue: CUBLASLT_EPILOGUE_DEFAULT,
            bias: None,
            alpha: 1.0,
            beta: 0.0,
        };
        call.run(
            handle,
            &stream,
            (da.ptr(&stream), &Layout::of(&a)),
            (db.ptr(&stream), &Layout::of(&b)),
            (dd.ptr(&stream), &Layout::of(&d)),
            (dd.ptr(&stream), &Layout::of(&d)),
        )
        .unwrap();
        let got = dd.read(&stream);
        let rounded = Gemm {
            ta: true,
            tb: false,
            m,
            n,
            k,
            alpha: 1.0,
            beta: 0.0,
            a: &a,
            b: &b,
            c: None,
            bias: None,
            act: Act::None,
            round,
        };
        let (w, _) = rounded.compare(&got, m, 0, 1, fp32_tol);
        assert!(
            w <= 1.0,
            "{compute:?}: error {w} times the fp32 tolerance against the rounded-input reference"
        );
        let full = Gemm {
            round: exact,
            ..rounded
        };
        let (_, off) = full.compare(&got, m, 0, 1, |_, _| 1.0);
        assert!(
            off > 1e-4,
            "{compute:?} matches the fp32 product (relative {off:e}): inputs are not rounded"
        );
        report.push(format!("{compute:?}: {w:.3} of the tolerance against rounded inputs, up to {off:.1e} from fp32"));
    }
    let after = counts();
    let key = "COMPUTE_32F_FAST_TF32/32F";
    assert_eq!(
        entry(&after, "gemms_by_compute", key) - entry(&before, "gemms_by_compute", key),
        3.0
    );
    println!(
        "ties: TF32 away from zero, bf16 to even; {}",
        report.join("; ")
    );
    unsafe { lt::destroy_handle(handle).unwrap() };
}

#[test]
fn lt_descriptors_refuse_what_cublaslt_refuses() {
    use lt_sys::cublasLtMatmulDescAttributes_t::*;
    use lt_sys::cublasStatus_t::*;
    let Some(_g) = on_standin("lt_descriptors_refuse_what_cublaslt_refuses") else {
        return;
    };
    let ctx = CudaContext::new(0).unwrap();
    let stream = ctx.default_stream();
    let handle = lt::create_handle().unwrap();
    let version = unsafe { lt_sys::cublasLtGetVersion() };
    assert!(version >= 120000, "cublasLtGetVersion {version}");
    // Attributes read back, and their sizes asked with a 0-byte buffer.
    let desc = lt::create_matmul_desc(CUBLAS_COMPUTE_32F, CUDA_R_32F).unwrap();
    desc_attr(desc, CUBLASLT_MATMUL_DESC_TRANSA, &1i32);
    desc_attr(
        desc,
        CUBLASLT_MATMUL_DESC_EPILOGUE,
        &CUBLASLT_EPILOGUE_GELU_BIAS,
    );
    let (mut v, mut size) = (0i32, 0usize);
    let get = |a, buf: *mut i32, bytes, size: *mut usize| unsafe {
        lt_sys::cublasLtMatmulDescGetAttribute(desc, a, buf as _, bytes, size)
    };
    assert_eq!(
        get(CUBLASLT_MATMUL_DESC_TRANSA, &mut v, 4, &mut size),
        CUBLAS_STATUS_SUCCESS
    );
    assert_eq!((v, size), (1, 4));
    assert_eq!(
        get(
            CUBLASLT_MATMUL_DESC_EPILOGUE,
            std::ptr::null_mut(),
            0,
            &mut size
        ),
        CUBLAS_STATUS_SUCCESS
    );
    assert_eq!(size, 4);
    assert_eq!(
        get(CUBLASLT_MATMUL_DESC_EPILOGUE, &mut v, 4, &mut size),
        CUBLAS_STATUS_SUCCESS
    );
    assert_eq!(v, CUBLASLT_EPILOGUE_GELU_BIAS as i32);
    assert_eq!(
        get(CUBLASLT_MATMUL_DESC_TRANSA, &mut v, 8, &mut size),
        CUBLAS_STATUS_INVALID_VALUE
    );
    let wrong = unsafe {
        lt::set_matmul_desc_attribute(
            desc,
            CUBLASLT_MATMUL_DESC_BIAS_POINTER,
            &0u32 as *const u32 as _,
            4,
        )
    };
    assert_eq!(
        wrong,
        Err(lt::CublasError(CUBLAS_STATUS_INVALID_VALUE)),
        "a 4-byte bias pointer"
    );
    unsafe { lt::destroy_matmul_desc(desc).unwrap() };
    // Row order is refused.
    let l = lt::create_matrix_layout(CUDA_R_32F, 4, 4, 4).unwrap();
    let row = lt_sys::cublasLtOrder_t::CUBLASLT_ORDER_ROW as i32;
    let r = unsafe {
        lt::set_matrix_layout_attribute(
            l,
            lt_sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_ORDER,
            &row as *const i32 as _,
            4,
        )
    };
    assert_eq!(r, Err(lt::CublasError(CUBLAS_STATUS_NOT_SUPPORTED)));
    let row_msg = standin::last_error().unwrap_or_default();
    unsafe { lt::destroy_matrix_layout(l).unwrap() };
    // A leading dimension below the rows, a BIAS epilogue without a pointer, mismatched shapes.
    let buf = stream.alloc_zeros::<f32>(64).unwrap();
    let p = ptr(&buf, &stream);
    let sq = |ld| Layout {
        ty: CUDA_R_32F,
        rows: 4,
        cols: 4,
        ld,
        batch: 1,
        stride: 0,
    };
    let plain = LtCall {
        compute: CUBLAS_COMPUTE_32F,
        ta: false,
        tb: false,
        epilogue: CUBLASLT_EPILOGUE_DEFAULT,
        bias: None,
        alpha: 1.0,
        beta: 0.0,
    };
    let r = plain.run(
        handle,
        &stream,
        (p, &sq(3)),
        (p, &sq(4)),
        (p, &sq(4)),
        (p, &sq(4)),
    );
    assert_eq!(
        r,
        Err(lt::CublasError(CUBLAS_STATUS_INVALID_VALUE)),
        "lda 3 < 4 rows"
    );
    let ld_msg = standin::last_error().unwrap_or_default();
    let nobias = LtCall {
        epilogue: CUBLASLT_EPILOGUE_BIAS,
        ..plain
    };
    let out = stream.alloc_zeros::<f32>(16).unwrap();
    let r = nobias.run(
        handle,
        &stream,
        (p, &sq(4)),
        (p, &sq(4)),
        (ptr(&out, &stream), &sq(4)),
        (ptr(&out, &stream), &sq(4)),
    );
    assert_eq!(
        r,
        Err(lt::CublasError(CUBLAS_STATUS_INVALID_VALUE)),
        "BIAS without a bias pointer"
    );
    let wide = Layout {
        cols: 5,
        ld: 4,
        ..sq(4)
    };
    let r = plain.run(
        handle,
        &stream,
        (p, &wide),
        (p, &sq(4)),
        (ptr(&out, &stream), &sq(4)),
        (ptr(&out, &stream), &sq(4)),
    );
    assert_eq!(
        r,
        Err(lt::CublasError(CUBLAS_STATUS_INVALID_VALUE)),
        "A 4x5 times B 4x4"
    );
    let shape_msg = standin::last_error().unwrap_or_default();
    println!("cublasLtGetVersion {version}; refused: {row_msg} | {ld_msg} | {shape_msg}");
    unsafe { lt::destroy_handle(handle).unwrap() };
}

// ---- batched cuBLAS -----------------------------------------------------------------------------

/// cublasGemmBatchedEx over matrices in separate allocations, through pointer arrays in device memory.
#[allow(clippy::too_many_arguments)]
fn gemm_batched(
    handle: blas_sys::cublasHandle_t,
    ta: bool,
    tb: bool,
    (m, n, k): (usize, usize, usize),
    a: u64,
    lda: usize,
    b: u64,
    ldb: usize,
    c: u64,
    ldc: usize,
    batch: usize,
) -> blas_sys::cublasStatus_t {
    let op = |t| {
        if t {
            blas_sys::cublasOperation_t::CUBLAS_OP_T
        } else {
            blas_sys::cublasOperation_t::CUBLAS_OP_N
        }
    };
    let (alpha, beta) = (1.0f32, 0.0f32);
    unsafe {
        blas_sys::cublasGemmBatchedEx(
            handle,
            op(ta),
            op(tb),
            m as i32,
            n as i32,
            k as i32,
            &alpha as *const f32 as _,
            a as _,
            blas_sys::cudaDataType::CUDA_R_32F,
            lda as i32,
            b as _,
            blas_sys::cudaDataType::CUDA_R_32F,
            ldb as i32,
            &beta as *const f32 as _,
            c as _,
            blas_sys::cudaDataType::CUDA_R_32F,
            ldc as i32,
            batch as i32,
            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
}

#[test]
fn gemm_batched_ex_follows_each_batchs_pointers() {
    let Some(_g) = on_standin("gemm_batched_ex_follows_each_batchs_pointers") else {
        return;
    };
    let ctx = CudaContext::new(0).unwrap();
    let stream = ctx.default_stream();
    let handle = blas::create_handle().unwrap();
    unsafe { blas::set_stream(handle, stream.cu_stream() as _).unwrap() };
    let (m, n, k, batch) = (6, 5, 4, 3);
    let before = counts();
    let mut worst = 0.0f64;
    for (ta, tb) in [(false, false), (true, true), (true, false)] {
        let (a, b) = operands(ta, tb, m, n, k, 1, Ty::F32, 61);
        // Each batch its own allocations, in reverse order in the arrays.
        let mats: Vec<(HostMat, HostMat)> = (0..batch)
            .map(|i| operands(ta, tb, m, n, k, 1, Ty::F32, 70 + 2 * i as u64))
            .collect();
        let devs: Vec<(Dev, Dev, CudaSlice<f32>)> = mats
            .iter()
            .map(|(a, b)| {
                (
                    a.upload(&stream),
                    b.upload(&stream),
                    stream.alloc_zeros::<f32>((m + 1) * n).unwrap(),
                )
            })
            .collect();
        #[allow(clippy::type_complexity)]
        let arr = |f: &dyn Fn(&(Dev, Dev, CudaSlice<f32>)) -> u64| {
            stream
                .clone_htod(&devs.iter().rev().map(f).collect::<Vec<u64>>())
                .unwrap()
        };
        let (pa, pb, pc) = (
            arr(&|d| d.0.ptr(&stream)),
            arr(&|d| d.1.ptr(&stream)),
            arr(&|d| ptr(&d.2, &stream)),
        );
        let s = gemm_batched(
            handle,
            ta,
            tb,
            (m, n, k),
            ptr(&pa, &stream),
            a.ld,
            ptr(&pb, &stream),
            b.ld,
            ptr(&pc, &stream),
            m + 1,
            batch,
        );
        assert_eq!(
            s,
            blas_sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS,
            "{:?}",
            standin::last_error()
        );
        for (i, (ha, hb)) in mats.iter().enumerate() {
            let g = Gemm {
                ta,
                tb,
                m,
                n,
                k,
                alpha: 1.0,
                beta: 0.0,
                a: ha,
                b: hb,
                c: None,
                bias: None,
                act: Act::None,
                round: exact,
            };
            let got: Vec<f64> = stream
                .clone_dtoh(&devs[i].2)
                .unwrap()
                .into_iter()
                .map(|x| x as f64)
                .collect();
            let (w, _) = g.compare(&got, m + 1, 0, 1, fp32_tol);
            assert!(
                w <= 1.0,
                "ta={ta} tb={tb} batch {i}: error {w} of the tolerance"
            );
            worst = worst.max(w);
        }
    }
    let after = counts();
    assert_eq!(
        entry(&after, "gemms_by_compute", "COMPUTE_32F/32F")
            - entry(&before, "gemms_by_compute", "COMPUTE_32F/32F"),
        3.0
    );
    println!("cublasGemmBatchedEx, {batch} batches in separate allocations, 3 transposes: worst error {worst:.3} of the fp32 tolerance");
    unsafe { blas::destroy_handle(handle).unwrap() };
}

/// In a child process (the fault is sticky): a batch whose C is too small for its matrix.
#[test]
fn gemm_batched_ex_checks_every_batchs_operands() {
    const CHILD: &str = "SITDIV_STANDIN_APIS_CHILD";
    let test = "gemm_batched_ex_checks_every_batchs_operands";
    if std::env::var(CHILD).as_deref() == Ok(test) {
        let ctx = CudaContext::new(0).unwrap();
        let stream = ctx.default_stream();
        let handle = blas::create_handle().unwrap();
        unsafe { blas::set_stream(handle, stream.cu_stream() as _).unwrap() };
        let a = stream.alloc_zeros::<f32>(16).unwrap();
        let (c0, c1) = (
            stream.alloc_zeros::<f32>(16).unwrap(),
            stream.alloc_zeros::<f32>(15).unwrap(),
        );
        let pa = stream.clone_htod(&[ptr(&a, &stream); 2]).unwrap();
        let pc = stream
            .clone_htod(&[ptr(&c0, &stream), ptr(&c1, &stream)])
            .unwrap();
        let s = gemm_batched(
            handle,
            false,
            false,
            (4, 4, 4),
            ptr(&pa, &stream),
            4,
            ptr(&pa, &stream),
            4,
            ptr(&pc, &stream),
            4,
            2,
        );
        println!(
            "CAUGHT: {s:?}: {}",
            standin::last_error().unwrap_or_default()
        );
        return;
    }
    let Some(_g) = on_standin(test) else { return };
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            &test_path(test),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, test)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let msg = stdout
        .lines()
        .find_map(|l| l.split_once("CAUGHT: ").map(|(_, m)| m.to_string()));
    let msg = msg.unwrap_or_else(|| {
        panic!(
            "the child reported nothing:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    println!("{msg}");
    for needle in [
        "CUBLAS_STATUS_EXECUTION_FAILED",
        "cublasGemmBatchedEx operand C",
        "64 bytes",
        "60 bytes",
    ] {
        assert!(msg.contains(needle), "the message lacks {needle:?}: {msg}");
    }
}

// ---- stream capture and graphs ----------------------------------------------------------------

/// A stream of its own (the legacy NULL stream cannot be captured) with cudarc's event
/// tracking off, as a backend that captures needs it.
fn capture_stream() -> (Arc<CudaContext>, Arc<CudaStream>) {
    let ctx = CudaContext::new(0).unwrap();
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx.new_stream().unwrap();
    (ctx, stream)
}

fn elementwise(ctx: &Arc<CudaContext>) -> (CudaFunction, CudaFunction) {
    let code = sitdiv::backend::cuda::KERNELS
        .iter()
        .find(|(s, _)| *s == "elementwise")
        .expect("kernels/elementwise.cu")
        .1;
    #[cfg(feature = "cuda")]
    let ptx = cudarc::nvrtc::Ptx::from_src(code);
    #[cfg(not(feature = "cuda"))]
    let ptx = sitdiv::backend::cuda::ptx_for(code, 9, 0).unwrap();
    let module = ctx.load_module(ptx).unwrap();
    (
        module.load_function("add_f32").unwrap(),
        module.load_function("add_row_f32").unwrap(),
    )
}

fn grid(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(128) as u32, 1, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn status(stream: &CudaStream) -> CUstreamCaptureStatus {
    stream.capture_status().unwrap()
}

#[test]
fn graph_replays_kernels_gemms_and_copies_like_a_direct_run() {
    let Some(_g) = on_standin("graph_replays_kernels_gemms_and_copies_like_a_direct_run") else {
        return;
    };
    let (ctx, stream) = capture_stream();
    let (add, add_row) = elementwise(&ctx);
    let lth = lt::create_handle().unwrap();
    let blh = blas::create_handle().unwrap();
    unsafe { blas::set_stream(blh, stream.cu_stream() as _).unwrap() };
    // x (m×k, column-major) += y; x += row (r = m: one value per row); D = x·w + bias (cuBLASLt);
    // E = xᵀ·x (cuBLAS); z = D (copy); D2 zeroed.
    let (m, k, n) = (24, 16, 12);
    let x0: Vec<f32> = signed_unit(81, m * k).iter().map(|&v| v as f32).collect();
    let y: Vec<f32> = signed_unit(82, m * k).iter().map(|&v| v as f32).collect();
    let row: Vec<f32> = signed_unit(83, m).iter().map(|&v| v as f32).collect();
    let w: Vec<f32> = signed_unit(84, k * n).iter().map(|&v| v as f32).collect();
    let bias: Vec<f32> = signed_unit(85, m).iter().map(|&v| v as f32).collect();
    let mut x = stream.clone_htod(&x0).unwrap();
    let (dy, drow, dw, dbias) = (
        stream.clone_htod(&y).unwrap(),
        stream.clone_htod(&row).unwrap(),
        stream.clone_htod(&w).unwrap(),
        stream.clone_htod(&bias).unwrap(),
    );
    let mut d = stream.alloc_zeros::<f32>(m * n).unwrap();
    let mut e = stream.alloc_zeros::<f32>(k * k).unwrap();
    let mut z = stream.alloc_zeros::<f32>(m * n).unwrap();
    let lx = Layout {
        ty: CUDA_R_32F,
        rows: m as u64,
        cols: k as u64,
        ld: m as i64,
        batch: 1,
        stride: 0,
    };
    let lw = Layout {
        ty: CUDA_R_32F,
        rows: k as u64,
        cols: n as u64,
        ld: k as i64,
        batch: 1,
        stride: 0,
    };
    let ld = Layout {
        ty: CUDA_R_32F,
        rows: m as u64,
        cols: n as u64,
        ld: m as i64,
        batch: 1,
        stride: 0,
    };
    let call = LtCall {
        compute: CUBLAS_COMPUTE_32F,
        ta: false,
        tb: false,
        epilogue: CUBLASLT_EPILOGUE_BIAS,
        bias: Some((ptr(&dbias, &stream), None, 0)),
        alpha: 1.0,
        beta: 0.0,
    };
    let nn = (m * k) as i64;
    let run = |x: &mut CudaSlice<f32>,
               d: &mut CudaSlice<f32>,
               e: &mut CudaSlice<f32>,
               z: &mut CudaSlice<f32>|
     -> Result<(), String> {
        unsafe {
            stream
                .launch_builder(&add)
                .arg(&mut *x)
                .arg(&dy)
                .arg(&nn)
                .launch(grid(m * k))
        }
        .map_err(|e| format!("{e:?}"))?;
        unsafe {
            stream
                .launch_builder(&add_row)
                .arg(&mut *x)
                .arg(&drow)
                .arg(&(m as i32))
                .arg(&nn)
                .launch(grid(m * k))
        }
        .map_err(|e| format!("{e:?}"))?;
        let (px, pd) = (ptr(x, &stream), ptr(d, &stream));
        call.run(
            lth,
            &stream,
            (px, &lx),
            (ptr(&dw, &stream), &lw),
            (pd, &ld),
            (pd, &ld),
        )
        .map_err(|e| format!("{e:?}"))?;
        let (one, zero) = (1.0f32, 0.0f32);
        unsafe {
            blas::gemm_ex(
                blh,
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                k as i32,
                k as i32,
                m as i32,
                &one as *const f32 as _,
                px as _,
                blas_sys::cudaDataType::CUDA_R_32F,
                m as i32,
                px as _,
                blas_sys::cudaDataType::CUDA_R_32F,
                m as i32,
                &zero as *const f32 as _,
                ptr(e, &stream) as _,
                blas_sys::cudaDataType::CUDA_R_32F,
                k as i32,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| format!("{e:?}"))?;
        stream.memcpy_dtod(&*d, z).map_err(|e| format!("{e:?}"))
    };
    let read = |s: &CudaSlice<f32>| stream.clone_dtoh(s).unwrap();
    run(&mut x, &mut d, &mut e, &mut z).unwrap();
    let direct = (read(&x), read(&d), read(&e), read(&z));
    assert!(direct.1.iter().any(|&v| v != 0.0) && direct.1 == direct.3);

    // Capture from the same starting state: nothing runs until the graph is launched.
    stream.memcpy_htod(&x0, &mut x).unwrap();
    for s in [&mut d, &mut e, &mut z] {
        stream.memset_zeros(s).unwrap();
    }
    let c0 = counts();
    stream
        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    assert_eq!(
        status(&stream),
        CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_ACTIVE
    );
    run(&mut x, &mut d, &mut e, &mut z).unwrap();
    let graph = stream
        .end_capture(CUgraphInstantiate_flags(0))
        .unwrap()
        .expect("a graph");
    assert_eq!(
        status(&stream),
        CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE
    );
    let c1 = counts();
    assert_eq!(read(&x), x0, "a captured kernel ran during the capture");
    assert!(
        read(&d).iter().all(|&v| v == 0.0),
        "a captured GEMM ran during the capture"
    );
    assert_eq!(num(&c1, "launches") - num(&c0, "launches"), 0.0);
    assert_eq!(num(&c1, "captured_nodes") - num(&c0, "captured_nodes"), 5.0);
    assert_eq!(num(&c1, "captures") - num(&c0, "captures"), 1.0);

    graph.upload().unwrap();
    for launch in 0..2 {
        stream.memcpy_htod(&x0, &mut x).unwrap();
        for s in [&mut d, &mut e, &mut z] {
            stream.memset_zeros(s).unwrap();
        }
        graph.launch().unwrap();
        let replayed = (read(&x), read(&d), read(&e), read(&z));
        assert!(
            replayed == direct,
            "launch {launch} of the graph differs from the direct run"
        );
    }
    let c2 = counts();
    let delta = |key: &str| num(&c2, key) - num(&c1, key);
    let kernel = |name: &str| {
        entry(&c2, "launches_by_kernel", name) - entry(&c1, "launches_by_kernel", name)
    };
    assert_eq!(delta("graph_launches"), 2.0);
    assert_eq!(delta("graph_nodes_replayed"), 10.0);
    assert_eq!(delta("launches"), 4.0);
    assert_eq!((kernel("add_f32"), kernel("add_row_f32")), (2.0, 2.0));
    assert_eq!(delta("lt_matmuls"), 2.0);
    assert_eq!(delta("gemms"), 4.0);
    assert_eq!(delta("copies_dtod"), 2.0);
    println!(
        "captured 5 nodes (2 kernels, a cuBLASLt and a cuBLAS GEMM, a copy) with no work run; 2 graph launches \
         matched the direct run bit for bit; counters: graph_launches +2, graph_nodes_replayed +10, launches +4 \
         (add_f32 +2, add_row_f32 +2), gemms +4"
    );
    drop(graph);
    unsafe {
        lt::destroy_handle(lth).unwrap();
        blas::destroy_handle(blh).unwrap();
    }
}

#[test]
fn graph_reads_batched_pointer_arrays_when_it_runs() {
    let Some(_g) = on_standin("graph_reads_batched_pointer_arrays_when_it_runs") else {
        return;
    };
    let (_ctx, stream) = capture_stream();
    let handle = blas::create_handle().unwrap();
    unsafe { blas::set_stream(handle, stream.cu_stream() as _).unwrap() };
    let (m, n, k) = (3, 2, 4);
    let (a, b1) = operands(false, false, m, n, k, 1, Ty::F32, 91);
    let (_, b2) = operands(false, false, m, n, k, 1, Ty::F32, 93);
    let (da, db1, db2) = (a.upload(&stream), b1.upload(&stream), b2.upload(&stream));
    let c = stream.alloc_zeros::<f32>(m * n).unwrap();
    let pa = stream.clone_htod(&[da.ptr(&stream)]).unwrap();
    let mut pb = stream.clone_htod(&[db1.ptr(&stream)]).unwrap();
    let pc = stream.clone_htod(&[ptr(&c, &stream)]).unwrap();
    stream
        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    let s = gemm_batched(
        handle,
        false,
        false,
        (m, n, k),
        ptr(&pa, &stream),
        a.ld,
        ptr(&pb, &stream),
        b1.ld,
        ptr(&pc, &stream),
        m,
        1,
    );
    assert_eq!(s, blas_sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS);
    let graph = stream
        .end_capture(CUgraphInstantiate_flags(0))
        .unwrap()
        .unwrap();
    // The array now points at another B: the replay must follow it.
    stream.memcpy_htod(&[db2.ptr(&stream)], &mut pb).unwrap();
    graph.launch().unwrap();
    let got: Vec<f64> = stream
        .clone_dtoh(&c)
        .unwrap()
        .into_iter()
        .map(|x| x as f64)
        .collect();
    let g = Gemm {
        ta: false,
        tb: false,
        m,
        n,
        k,
        alpha: 1.0,
        beta: 0.0,
        a: &a,
        b: &b2,
        c: None,
        bias: None,
        act: Act::None,
        round: exact,
    };
    let (w, _) = g.compare(&got, m, 0, 1, fp32_tol);
    assert!(
        w <= 1.0,
        "the replay used the B of capture time (error {w} against the new one)"
    );
    println!("a captured cublasGemmBatchedEx read its pointer array at launch: matches the B written after the capture ({w:.3} of the tolerance)");
    drop(graph);
    unsafe { blas::destroy_handle(handle).unwrap() };
}

fn err_text(e: &DriverError) -> String {
    format!("{e:?}")
}

#[test]
fn capture_refuses_synchronisation_allocation_and_pageable_copies() {
    let Some(_g) = on_standin("capture_refuses_synchronisation_allocation_and_pageable_copies")
    else {
        return;
    };
    let (ctx, stream) = capture_stream();
    let (add, _) = elementwise(&ctx);
    let n = 300usize;
    let mut x = stream.alloc_zeros::<f32>(n).unwrap();
    let y = stream.clone_htod(&vec![1.0f32; n]).unwrap();
    let nn = n as i64;
    let begin = || {
        stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .unwrap()
    };
    let end = || stream.end_capture(CUgraphInstantiate_flags(0));
    let mut lines = Vec::new();
    let code = |e: &DriverError| e.0;

    // Synchronising the capturing stream: refused, and the capture is invalidated.
    begin();
    let e = stream.synchronize().unwrap_err();
    assert_eq!(code(&e), CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    assert!(
        err_text(&e).contains("cuStreamSynchronize") && err_text(&e).contains("captures"),
        "{e:?}"
    );
    lines.push(err_text(&e));
    assert_eq!(
        status(&stream),
        CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_INVALIDATED
    );
    let later = unsafe {
        stream
            .launch_builder(&add)
            .arg(&mut x)
            .arg(&y)
            .arg(&nn)
            .launch(grid(n))
    }
    .unwrap_err();
    assert_eq!(
        code(&later),
        CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
    );
    assert!(
        err_text(&later).contains("invalidated by an earlier error"),
        "{later:?}"
    );
    let ended = end().err().expect("an invalidated capture gives no graph");
    assert_eq!(
        code(&ended),
        CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
    );
    assert_eq!(
        status(&stream),
        CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE
    );
    // The stream works again, and nothing of the capture ran.
    unsafe {
        stream
            .launch_builder(&add)
            .arg(&mut x)
            .arg(&y)
            .arg(&nn)
            .launch(grid(n))
    }
    .unwrap();
    assert!(stream.clone_dtoh(&x).unwrap().iter().all(|&v| v == 1.0));

    // The context, an allocation (stream-ordered or not), a copy from pageable memory.
    begin();
    let e = ctx.synchronize().unwrap_err();
    assert_eq!(code(&e), CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    lines.push(err_text(&e));
    assert!(end().is_err());
    begin();
    let e = unsafe { stream.alloc::<f32>(16) }.unwrap_err();
    assert!(
        err_text(&e).contains("cuMemAllocAsync") && err_text(&e).contains("outside captures"),
        "{e:?}"
    );
    lines.push(err_text(&e));
    assert!(end().is_err());
    begin();
    let e = unsafe { drv::malloc_sync(64) }.unwrap_err();
    assert!(err_text(&e).contains("potentially unsafe"), "{e:?}");
    lines.push(err_text(&e));
    assert!(end().is_err());
    begin();
    let e = stream.memcpy_htod(&vec![2.0f32; n], &mut x).unwrap_err();
    assert!(err_text(&e).contains("pageable"), "{e:?}");
    lines.push(err_text(&e));
    assert!(end().is_err());
    begin();
    let mut host = vec![0.0f32; n];
    let e = stream.memcpy_dtoh(&x, &mut host).unwrap_err();
    assert!(err_text(&e).contains("pageable"), "{e:?}");
    assert!(end().is_err());

    // The legacy NULL stream cannot capture.
    let e = ctx
        .default_stream()
        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap_err();
    assert_eq!(code(&e), CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    lines.push(err_text(&e));
    ctx.check_err().unwrap();
    for l in &lines {
        println!("refused: {l}");
    }
}

#[test]
fn capture_with_cudarc_event_tracking_is_invalidated() {
    let Some(_g) = on_standin("capture_with_cudarc_event_tracking_is_invalidated") else {
        return;
    };
    // Event tracking on (cudarc's default) and a second stream: every buffer carries events, and
    // a captured use waits on the ones recorded before the capture.
    let ctx = CudaContext::new(0).unwrap();
    let stream = ctx.new_stream().unwrap();
    let mut x = stream.clone_htod(&[1.0f32; 8]).unwrap();
    stream
        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    let memset = stream.memset_zeros(&mut x).unwrap_err();
    // cudarc's calls begin by returning (and clearing) an error it recorded earlier, here that of
    // the event wait: this end_capture fails before it reaches the driver, the capture stays.
    let first = stream
        .end_capture(CUgraphInstantiate_flags(0))
        .err()
        .expect("the recorded error");
    assert_eq!(first.0, CUresult::CUDA_ERROR_STREAM_CAPTURE_ISOLATION);
    assert_eq!(
        status(&stream),
        CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_INVALIDATED
    );
    let ended = stream
        .end_capture(CUgraphInstantiate_flags(0))
        .err()
        .expect("an invalidated capture");
    assert_eq!(ended.0, CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    assert_eq!(
        status(&stream),
        CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE
    );
    let msg = err_text(&ended);
    assert!(
        msg.contains("recorded outside the capture") && msg.contains("disable_event_tracking"),
        "{msg}"
    );
    println!(
        "with event tracking: the memset {:?}, then end_capture {:?} (the recorded wait), and again: {msg}",
        memset.0, first.0
    );
}

// ---- page-locked host memory --------------------------------------------------------------------

#[test]
fn pinned_copies_are_not_host_syncs_and_can_be_captured() {
    let Some(_g) = on_standin("pinned_copies_are_not_host_syncs_and_can_be_captured") else {
        return;
    };
    let (ctx, stream) = capture_stream();
    let n = 1000usize;
    let c0 = counts();
    let mut pinned = unsafe { ctx.alloc_pinned::<f32>(n) }.unwrap();
    pinned
        .as_mut_slice()
        .unwrap()
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = i as f32);
    assert_eq!(
        num(&counts(), "pinned_allocations") - num(&c0, "pinned_allocations"),
        1.0
    );
    let d = stream.clone_htod(&pinned).unwrap();
    let mut back = unsafe { ctx.alloc_pinned::<f32>(n) }.unwrap();
    let mut pageable = vec![0.0f32; n];
    let c1 = counts();
    stream.memcpy_dtoh(&d, &mut back).unwrap();
    let c2 = counts();
    stream.memcpy_dtoh(&d, &mut pageable).unwrap();
    let c3 = counts();
    assert_eq!(num(&c2, "copies_dtoh") - num(&c1, "copies_dtoh"), 1.0);
    assert_eq!(
        num(&c2, "host_syncs") - num(&c1, "host_syncs"),
        0.0,
        "a copy to page-locked memory waited"
    );
    assert_eq!(
        num(&c3, "host_syncs") - num(&c2, "host_syncs"),
        1.0,
        "a copy to pageable memory did not wait"
    );
    // cudarc's PinnedHostSlice waits on its event only with event tracking on: synchronise first.
    stream.synchronize().unwrap();
    assert_eq!(back.as_slice().unwrap(), &pageable[..]);

    // Copies between device and page-locked memory are captured, and run at each launch.
    let mut dd = stream.alloc_zeros::<f32>(n).unwrap();
    stream
        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    stream.memcpy_htod(&pinned, &mut dd).unwrap();
    stream.memcpy_dtoh(&dd, &mut back).unwrap();
    let graph = stream
        .end_capture(CUgraphInstantiate_flags(0))
        .unwrap()
        .unwrap();
    pinned
        .as_mut_slice()
        .unwrap()
        .iter_mut()
        .for_each(|v| *v = -*v);
    graph.launch().unwrap();
    stream.synchronize().unwrap();
    assert_eq!(
        back.as_slice().unwrap(),
        pinned.as_slice().unwrap(),
        "the replay copied the host data of capture time"
    );

    // Registered memory counts as page-locked until unregistered.
    let mut reg = vec![0.0f32; n];
    let p = reg.as_mut_ptr() as *mut std::ffi::c_void;
    unsafe {
        use cudarc::driver::sys;
        assert_eq!(
            sys::cuMemHostRegister_v2(p, n * 4, 0),
            CUresult::CUDA_SUCCESS
        );
        assert_eq!(
            sys::cuMemHostRegister_v2(p.add(64), 16, 0),
            CUresult::CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED
        );
        let before = counts();
        drv::memcpy_dtoh_async(&mut reg[..], ptr(&d, &stream), stream.cu_stream()).unwrap();
        assert_eq!(
            num(&counts(), "host_syncs") - num(&before, "host_syncs"),
            0.0
        );
        assert_eq!(sys::cuMemHostUnregister(p), CUresult::CUDA_SUCCESS);
        assert_eq!(
            sys::cuMemHostUnregister(p),
            CUresult::CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED
        );
    }
    assert_eq!(reg, pageable);
    let c4 = counts();
    assert_eq!(
        num(&c4, "pinned_registrations") - num(&c0, "pinned_registrations"),
        1.0
    );
    println!(
        "copy to page-locked memory: host_syncs +0 (to pageable: +1); a captured pinned HtoD + DtoH replayed with the \
         host data of launch time; pinned_allocations +{}, pinned_registrations +1",
        num(&c4, "pinned_allocations") - num(&c0, "pinned_allocations")
    );
    drop(graph);
}

// ---- NVTX -----------------------------------------------------------------------------------------

#[test]
fn nvtx_ranges_are_counted_with_their_depth() {
    use cudarc::nvtx::result as nvtx;
    let Some(_g) = on_standin("nvtx_ranges_are_counted_with_their_depth") else {
        return;
    };
    let c0 = counts();
    assert_eq!(nvtx::range_push("forward"), 0);
    assert_eq!(nvtx::range_push("block"), 1);
    {
        let _attention = cudarc::nvtx::scoped_range("attention");
        cudarc::nvtx::mark("softmax");
    }
    assert_eq!(nvtx::range_pop(), 1);
    assert_eq!(nvtx::range_pop(), 0);
    assert!(nvtx::range_pop() < 0, "a pop with no open range");
    nvtx::mark("done");
    let c1 = counts();
    let by_name = |name: &str| {
        entry(&c1, "nvtx_ranges_by_name", name) - entry(&c0, "nvtx_ranges_by_name", name)
    };
    assert_eq!(num(&c1, "nvtx_ranges") - num(&c0, "nvtx_ranges"), 3.0);
    assert_eq!(
        (by_name("forward"), by_name("block"), by_name("attention")),
        (1.0, 1.0, 1.0)
    );
    assert_eq!(num(&c1, "nvtx_marks") - num(&c0, "nvtx_marks"), 2.0);
    assert!(num(&c1, "nvtx_max_depth") >= 3.0);
    println!(
        "push/push/scoped range/pop/pop: levels 0, 1 back; nvtx_ranges +3 {}, nvtx_marks +2, nvtx_max_depth {}",
        c1["nvtx_ranges_by_name"],
        num(&c1, "nvtx_max_depth")
    );
}

/// The driver acts on the calling thread's current context: on a thread that never made one
/// current, an allocation fails with CUDA_ERROR_INVALID_CONTEXT, as on a GPU; once the context
/// is bound there, it succeeds.
#[test]
fn a_thread_without_a_current_context_cannot_allocate() {
    let Some(_device) = on_standin("a_thread_without_a_current_context_cannot_allocate") else {
        return;
    };
    let ctx = CudaContext::new(0).unwrap();
    let stream = ctx.new_stream().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: a stream-ordered allocation on a live stream, freed below.
            let e = unsafe { drv::malloc_async(stream.cu_stream(), 256) }.unwrap_err();
            assert_eq!(e.0, CUresult::CUDA_ERROR_INVALID_CONTEXT, "{e:?}");
            ctx.bind_to_thread().unwrap();
            // SAFETY: as above.
            let p = unsafe { drv::malloc_async(stream.cu_stream(), 256) }.unwrap();
            // SAFETY: allocated just above, used by nothing.
            unsafe { drv::free_async(p, stream.cu_stream()) }.unwrap();
        })
        .join()
        .unwrap();
    });
}
