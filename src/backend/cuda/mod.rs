//! The CUDA backend: cuBLAS GEMMs with an explicit compute type, every other op a kernel of ours
//! from `kernels/*.cu` (PTX embedded at build time, or compiled by NVRTC at start-up for the
//! `cuda12` flavour). One stream; buffers are `CudaSlice<f32>`.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig,
    PushKernelArg,
};

use super::{Backend, Cols, Precision};

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

const BLOCK: u32 = 256;

/// Every kernel function, looked up once.
struct Kernels {
    layer_norm: CudaFunction,
    layer_norm_modulate: CudaFunction,
    modulate: CudaFunction,
    add: CudaFunction,
    add_row: CudaFunction,
    gated_add: CudaFunction,
    fill_rows: CudaFunction,
    silu: CudaFunction,
    gelu_tanh: CudaFunction,
    patchify: CudaFunction,
    unpatchify: CudaFunction,
    gather_rows: CudaFunction,
    attention: CudaFunction,
}

pub struct Cuda {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    k: Kernels,
    precision: Precision,
    sync_debug: bool,
    label: String,
}

/// Whether a CUDA driver library can be loaded (cudarc panics on any call without one).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen libcuda.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

fn grid(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((n as u32).div_ceil(BLOCK).max(1), 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl Cuda {
    /// Opens device `ordinal`, loads the kernels and a cuBLAS handle. Fails with a clear message
    /// (never a panic) when there is no driver or no such device.
    pub fn new(ordinal: usize, precision: Precision, sync_debug: bool) -> Result<Self> {
        if !driver_present() {
            bail!("no CUDA driver found (libcuda.so could not be loaded); use --device cpu");
        }
        let ctx = CudaContext::new(ordinal)
            .with_context(|| format!("cannot open CUDA device {ordinal}"))?;
        let stream = ctx.default_stream();
        let (major, minor) = ctx
            .compute_capability()
            .context("reading the compute capability")?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let mut driver = 0i32;
        // SAFETY: writes one int.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver as *mut i32) };
        let mut modules = HashMap::new();
        let mut isa = String::new();
        for (stem, code) in KERNELS {
            let ptx = ptx_for(code, major, minor).with_context(|| format!("kernels/{stem}.cu"))?;
            if isa.is_empty() {
                isa = code
                    .lines()
                    .find(|l| l.starts_with(".version"))
                    .unwrap_or(".version (nvrtc)")
                    .to_string();
            }
            modules.insert(
                *stem,
                ctx.load_module(ptx)
                    .with_context(|| format!("loading the PTX of kernels/{stem}.cu"))?,
            );
        }
        let f = |stem: &str, name: &str| -> Result<CudaFunction> {
            let m = modules
                .get(stem)
                .with_context(|| format!("kernels/{stem}.cu is not embedded"))?;
            m.load_function(name)
                .with_context(|| format!("kernel {name} in kernels/{stem}.cu"))
        };
        let k = Kernels {
            layer_norm: f("norm", "layer_norm_f32")?,
            layer_norm_modulate: f("norm", "layer_norm_modulate_f32")?,
            modulate: f("norm", "modulate_f32")?,
            add: f("elementwise", "add_f32")?,
            add_row: f("elementwise", "add_row_f32")?,
            gated_add: f("elementwise", "gated_add_f32")?,
            fill_rows: f("elementwise", "fill_rows_f32")?,
            silu: f("act", "silu_f32")?,
            gelu_tanh: f("act", "gelu_tanh_f32")?,
            patchify: f("embed", "patchify_f32")?,
            unpatchify: f("embed", "unpatchify_f32")?,
            gather_rows: f("embed", "gather_rows_f32")?,
            attention: f("attention", "attention_f32")?,
        };
        let blas = CudaBlas::new(stream.clone()).context("creating the cuBLAS handle")?;
        if precision == Precision::Bf16 {
            bail!("--precision bf16 is not implemented on the CUDA backend yet; use fp32 or tf32");
        }
        let label = format!(
            "cuda:{ordinal} {name} (sm_{major}{minor}, driver {}.{})",
            driver / 1000,
            (driver % 1000) / 10
        );
        log::info!("{label}, kernels {isa}, precision {precision:?}");
        Ok(Cuda {
            stream,
            blas,
            k,
            precision,
            sync_debug,
            label,
        })
    }

    fn done(&self, what: &str) -> Result<()> {
        if self.sync_debug {
            self.stream
                .synchronize()
                .with_context(|| format!("CUDA error after {what}"))?;
        }
        Ok(())
    }

    fn alloc(&self, n: usize) -> Result<CudaSlice<f32>> {
        // SAFETY: every op writes all elements of the buffers it allocates.
        unsafe { self.stream.alloc::<f32>(n.max(1)) }.context("CUDA allocation")
    }
}

#[cfg(feature = "cuda")]
fn ptx_for(code: &str, _major: i32, _minor: i32) -> Result<cudarc::nvrtc::Ptx> {
    Ok(cudarc::nvrtc::Ptx::from_src(code))
}

#[cfg(not(feature = "cuda"))]
fn ptx_for(code: &str, major: i32, minor: i32) -> Result<cudarc::nvrtc::Ptx> {
    use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
    let arch: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
    let opts = CompileOptions {
        arch: Some(arch),
        use_fast_math: Some(false),
        ..Default::default()
    };
    compile_ptx_with_opts(code, opts).map_err(|e| anyhow::anyhow!("NVRTC: {e:?}"))
}

macro_rules! launch {
    ($self:ident, $f:expr, $cfg:expr, $what:literal, $($arg:expr),+ $(,)?) => {{
        // One statement, so temporaries among the arguments live until the launch.
        // SAFETY: argument types and counts match the kernel signature in kernels/*.cu; sizes are
        // checked by the caller.
        unsafe { $self.stream.launch_builder(&$f)$(.arg($arg))+.launch($cfg) }.context(concat!("launching ", $what))?;
        $self.done($what)
    }};
}

impl Backend for Cuda {
    type Buf = CudaSlice<f32>;

    fn name(&self) -> String {
        format!("{} [{:?}]", self.label, self.precision)
    }

    fn upload(&self, data: &[f32]) -> Result<Self::Buf> {
        self.stream.clone_htod(data).context("copy to the GPU")
    }

    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>> {
        self.stream.clone_dtoh(buf).context("copy from the GPU")
    }

    fn linear(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        b: Option<&Self::Buf>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Self::Buf> {
        ensure!(
            x.len() == m * k && w.len() == n * k,
            "linear: x {} / w {} elements for M={m} K={k} N={n}",
            x.len(),
            w.len()
        );
        let mut y = self.alloc(m * n)?;
        let beta: f32 = match b {
            Some(b) => {
                ensure!(b.len() == n, "linear: bias length differs from N={n}");
                let total = (m * n) as i64;
                launch!(
                    self,
                    self.k.fill_rows,
                    grid(m * n),
                    "fill_rows_f32",
                    &mut y,
                    b,
                    &(n as i32),
                    &total
                )?;
                1.0
            }
            None => 0.0,
        };
        let alpha = 1.0f32;
        let compute = match self.precision {
            Precision::Tf32 => blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
            _ => blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        };
        // Row-major Y (M, N) = X (M, K) · Wᵀ is column-major Yᵀ (N, M) = op(W)·Xᵀ with op = transpose.
        {
            let (wp, _gw) = w.device_ptr(&self.stream);
            let (xp, _gx) = x.device_ptr(&self.stream);
            let (yp, _gy) = y.device_ptr_mut(&self.stream);
            // SAFETY: pointers and leading dimensions describe the checked buffer sizes.
            unsafe {
                blas::gemm_ex(
                    *self.blas.handle(),
                    blas_sys::cublasOperation_t::CUBLAS_OP_T,
                    blas_sys::cublasOperation_t::CUBLAS_OP_N,
                    n as i32,
                    m as i32,
                    k as i32,
                    &alpha as *const f32 as *const _,
                    wp as *const _,
                    blas_sys::cudaDataType::CUDA_R_32F,
                    k as i32,
                    xp as *const _,
                    blas_sys::cudaDataType::CUDA_R_32F,
                    k as i32,
                    &beta as *const f32 as *const _,
                    yp as *mut _,
                    blas_sys::cudaDataType::CUDA_R_32F,
                    n as i32,
                    compute,
                    blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
            .context("cublasGemmEx")?;
        }
        self.done("gemm")?;
        Ok(y)
    }

    fn layer_norm(&self, x: &Self::Buf, rows: usize, d: usize, eps: f32) -> Result<Self::Buf> {
        ensure!(
            x.len() == rows * d,
            "layer_norm: {} elements for ({rows}, {d})",
            x.len()
        );
        let mut y = self.alloc(rows * d)?;
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(
            self,
            self.k.layer_norm,
            cfg,
            "layer_norm_f32",
            x,
            &mut y,
            &(rows as i32),
            &(d as i32),
            &eps
        )?;
        Ok(y)
    }

    fn layer_norm_modulate(
        &self,
        x: &Self::Buf,
        shift: Cols<Self>,
        scale: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
        eps: f32,
    ) -> Result<Self::Buf> {
        ensure!(
            x.len() == b * t * d,
            "layer_norm_modulate: {} elements for ({b}, {t}, {d})",
            x.len()
        );
        ensure!(
            shift.stride == scale.stride,
            "layer_norm_modulate: shift and scale rows must have one stride"
        );
        let mut y = self.alloc(b * t * d)?;
        let cfg = LaunchConfig {
            grid_dim: ((b * t) as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let (stride, so, co) = (
            shift.stride as i32,
            shift.offset as i32,
            scale.offset as i32,
        );
        launch!(
            self,
            self.k.layer_norm_modulate,
            cfg,
            "layer_norm_modulate_f32",
            x,
            &mut y,
            shift.buf,
            scale.buf,
            &stride,
            &so,
            &co,
            &(t as i32),
            &(d as i32),
            &eps
        )?;
        Ok(y)
    }

    fn modulate(
        &self,
        x: &mut Self::Buf,
        shift: Cols<Self>,
        scale: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
    ) -> Result<()> {
        ensure!(
            x.len() == b * t * d && shift.stride == scale.stride,
            "modulate: shapes differ from ({b}, {t}, {d})"
        );
        let n = (b * t * d) as i64;
        let (stride, so, co) = (
            shift.stride as i32,
            shift.offset as i32,
            scale.offset as i32,
        );
        launch!(
            self,
            self.k.modulate,
            grid(b * t * d),
            "modulate_f32",
            x,
            shift.buf,
            scale.buf,
            &stride,
            &so,
            &co,
            &(t as i32),
            &(d as i32),
            &n
        )
    }

    fn gated_add(
        &self,
        x: &mut Self::Buf,
        y: &Self::Buf,
        gate: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
    ) -> Result<()> {
        ensure!(
            x.len() == b * t * d && y.len() == x.len(),
            "gated_add: shapes differ from ({b}, {t}, {d})"
        );
        let n = (b * t * d) as i64;
        let (stride, off) = (gate.stride as i32, gate.offset as i32);
        launch!(
            self,
            self.k.gated_add,
            grid(b * t * d),
            "gated_add_f32",
            x,
            y,
            gate.buf,
            &stride,
            &off,
            &(t as i32),
            &(d as i32),
            &n
        )
    }

    fn add_row(&self, x: &mut Self::Buf, row: &Self::Buf, b: usize, r: usize) -> Result<()> {
        ensure!(
            x.len() == b * r && row.len() == r,
            "add_row: shapes differ from ({b}, {r})"
        );
        let n = (b * r) as i64;
        launch!(
            self,
            self.k.add_row,
            grid(b * r),
            "add_row_f32",
            x,
            row,
            &(r as i32),
            &n
        )
    }

    fn add(&self, x: &mut Self::Buf, y: &Self::Buf) -> Result<()> {
        ensure!(
            x.len() == y.len(),
            "add: {} vs {} elements",
            x.len(),
            y.len()
        );
        let len = x.len();
        launch!(self, self.k.add, grid(len), "add_f32", x, y, &(len as i64))
    }

    fn silu(&self, x: &Self::Buf) -> Result<Self::Buf> {
        let mut y = self.alloc(x.len())?;
        let n = x.len() as i64;
        launch!(self, self.k.silu, grid(x.len()), "silu_f32", x, &mut y, &n)?;
        Ok(y)
    }

    fn gelu_tanh(&self, x: &mut Self::Buf) -> Result<()> {
        let len = x.len();
        launch!(
            self,
            self.k.gelu_tanh,
            grid(len),
            "gelu_tanh_f32",
            x,
            &(len as i64)
        )
    }

    fn attention(
        &self,
        qkv: &Self::Buf,
        b: usize,
        t: usize,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self::Buf> {
        ensure!(
            qkv.len() == b * t * 3 * heads * head_dim,
            "attention: qkv has {} elements for ({b}, {t}, 3·{heads}·{head_dim})",
            qkv.len()
        );
        let mut out = self.alloc(b * t * heads * head_dim)?;
        let threads = 128u32;
        let shared = ((t + head_dim) as u32 + threads) * 4;
        let cfg = LaunchConfig {
            grid_dim: (t as u32, heads as u32, b as u32),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: shared,
        };
        let scale = 1.0 / (head_dim as f32).sqrt();
        launch!(
            self,
            self.k.attention,
            cfg,
            "attention_f32",
            qkv,
            &mut out,
            &(t as i32),
            &(heads as i32),
            &(head_dim as i32),
            &scale
        )?;
        Ok(out)
    }

    fn patchify(
        &self,
        x: &Self::Buf,
        b: usize,
        c: usize,
        h: usize,
        w: usize,
        p: usize,
    ) -> Result<Self::Buf> {
        ensure!(
            x.len() == b * c * h * w,
            "patchify: {} elements for ({b}, {c}, {h}, {w})",
            x.len()
        );
        ensure!(
            p > 0 && h.is_multiple_of(p) && w.is_multiple_of(p),
            "patchify: {h}×{w} is not divisible by patch size {p}"
        );
        let mut y = self.alloc(x.len())?;
        let n = x.len() as i64;
        launch!(
            self,
            self.k.patchify,
            grid(x.len()),
            "patchify_f32",
            x,
            &mut y,
            &(c as i32),
            &(h as i32),
            &(w as i32),
            &(p as i32),
            &n
        )?;
        Ok(y)
    }

    fn unpatchify(
        &self,
        o: &Self::Buf,
        b: usize,
        c_out: usize,
        c_keep: usize,
        h: usize,
        w: usize,
        p: usize,
    ) -> Result<Self::Buf> {
        ensure!(
            o.len() == b * h * w * c_out && c_keep <= c_out,
            "unpatchify: {} elements for ({b}, {c_out}, {h}, {w})",
            o.len()
        );
        let total = b * c_keep * h * w;
        let mut y = self.alloc(total)?;
        let n = total as i64;
        launch!(
            self,
            self.k.unpatchify,
            grid(total),
            "unpatchify_f32",
            o,
            &mut y,
            &(c_out as i32),
            &(c_keep as i32),
            &(h as i32),
            &(w as i32),
            &(p as i32),
            &n
        )?;
        Ok(y)
    }

    fn gather_rows(&self, table: &Self::Buf, ids: &[usize], d: usize) -> Result<Self::Buf> {
        ensure!(
            ids.iter().all(|&i| (i + 1) * d <= table.len()),
            "gather_rows: id out of range"
        );
        let ids32: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
        let dev_ids = self.stream.clone_htod(&ids32).context("copy to the GPU")?;
        let total = ids.len() * d;
        let mut y = self.alloc(total)?;
        let n = total as i64;
        launch!(
            self,
            self.k.gather_rows,
            grid(total),
            "gather_rows_f32",
            table,
            &dev_ids,
            &mut y,
            &(d as i32),
            &n
        )?;
        Ok(y)
    }
}
