//! The CUDA backend: cuBLAS GEMMs with an explicit compute type, every other op a kernel of ours
//! from `kernels/*.cu` (PTX embedded at build time, or compiled by NVRTC at start-up for the
//! `cuda12` flavour), launched through the checked table of [`launch`]. One stream; buffers are
//! `CudaSlice<f32>`. Each op family has its file, as its kernels and its CPU twin do.

mod act;
mod attention;
mod elementwise;
mod embed;
mod gemm;
pub mod launch;
mod norm;
pub mod standin;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream};

use super::{Backend, Cols, Op, Precision};
use launch::{Kernel, Kernels, Launch};

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

pub struct Cuda {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    k: Kernels,
    precision: Precision,
    sync_debug: bool,
    /// Dynamic shared memory a block may opt in to (`MAX_SHARED_MEMORY_PER_BLOCK_OPTIN`).
    smem_optin: u32,
    label: String,
}

/// Whether a CUDA driver library can be loaded (cudarc panics on any call without one).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen libcuda.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// The CUDA libraries besides the driver that this build calls, each as (present, what to say).
fn missing_libraries() -> Vec<&'static str> {
    let mut missing = Vec::new();
    // SAFETY: each only tries to dlopen the library.
    if !unsafe { cudarc::cublas::sys::is_culib_present() } {
        missing.push(if cfg!(feature = "cuda") {
            "cuBLAS (libcublas.so.13)"
        } else {
            "cuBLAS (libcublas.so.12)"
        });
    }
    #[cfg(not(feature = "cuda"))]
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        missing.push("NVRTC (libnvrtc.so.12), which compiles the kernels of the cuda12 build");
    }
    missing
}

impl Cuda {
    /// Opens device `ordinal`, loads and checks the kernels and a cuBLAS handle. Fails with a
    /// clear message (never a panic) when the driver, a library or the device is missing.
    pub fn new(ordinal: usize, precision: Precision, sync_debug: bool) -> Result<Self> {
        if !driver_present() {
            bail!("no CUDA driver found (libcuda.so could not be loaded); use --device cpu");
        }
        let missing = missing_libraries();
        if !missing.is_empty() {
            bail!(
                "a CUDA driver was found, but not {}: add the CUDA libraries to LD_LIBRARY_PATH \
                 (e.g. /usr/local/cuda/lib64), or use --device cpu",
                missing.join(" nor ")
            );
        }
        if precision == Precision::Bf16 {
            bail!("--precision bf16 is not implemented on the CUDA backend yet; use fp32 or tf32");
        }
        let ctx = CudaContext::new(ordinal)
            .with_context(|| format!("cannot open CUDA device {ordinal}"))?;
        let stream = ctx.default_stream();
        let (major, minor) = ctx
            .compute_capability()
            .context("reading the compute capability")?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let smem_optin = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
            .context("reading the shared memory limit")? as u32;
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
            let module = ctx.load_module(ptx).with_context(|| {
                // A CUDA 12 driver rejects the cuda build's PTX ISA 9.0 with a terse message.
                let hint = if cfg!(feature = "cuda") && driver < 13000 {
                    "; this build's PTX needs a CUDA 13 driver: for CUDA 12 drivers build with --features cuda12"
                } else {
                    ""
                };
                format!(
                    "loading the PTX of kernels/{stem}.cu ({isa}) on driver {}.{}{hint}",
                    driver / 1000,
                    (driver % 1000) / 10
                )
            })?;
            modules.insert(*stem, module);
        }
        let k = Kernels::load(|stem| {
            modules
                .get(stem)
                .cloned()
                .with_context(|| format!("kernels/{stem}.cu is not embedded"))
        })?;
        let blas = CudaBlas::new(stream.clone()).context("creating the cuBLAS handle")?;
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
            smem_optin,
            label,
        })
    }

    /// With `--sync-debug`, waits for the stream so that an error names the op that caused it.
    fn done(&self, what: &str) -> Result<()> {
        if self.sync_debug {
            self.stream
                .synchronize()
                .with_context(|| format!("CUDA error after {what}"))?;
        }
        Ok(())
    }

    fn launch<'a>(&'a self, k: &'a Kernel) -> Launch<'a> {
        Launch::new(&self.stream, k)
    }

    /// A buffer of `n` floats whose contents the caller writes in full. The driver refuses empty
    /// allocations, so an empty buffer owns one element and reports length 0.
    fn alloc(&self, n: usize) -> Result<CudaSlice<f32>> {
        if n == 0 {
            // SAFETY: a one-element allocation, re-wrapped with length 0; dropping it frees it.
            return unsafe {
                let one = self.stream.alloc::<f32>(1).context("CUDA allocation")?;
                Ok(self.stream.upgrade_device_ptr(one.leak(), 0))
            };
        }
        // SAFETY: every op writes all elements of the buffers it allocates.
        unsafe { self.stream.alloc::<f32>(n) }
            .with_context(|| format!("CUDA allocation of {n} floats"))
    }
}

#[cfg(feature = "cuda")]
fn ptx_for(code: &str, _major: i32, _minor: i32) -> Result<cudarc::nvrtc::Ptx> {
    Ok(cudarc::nvrtc::Ptx::from_src(code))
}

/// The runtime path of the `cuda12` flavour: NVRTC compiles each kernel file for the device.
/// Public so that the static gate compiles exactly what a GPU node compiles.
#[cfg(not(feature = "cuda"))]
pub fn ptx_for(code: &str, major: i32, minor: i32) -> Result<cudarc::nvrtc::Ptx> {
    use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
    let arch: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
    let opts = CompileOptions {
        arch: Some(arch),
        use_fast_math: Some(false),
        ..Default::default()
    };
    compile_ptx_with_opts(code, opts).map_err(|e| anyhow::anyhow!("NVRTC: {e:?}"))
}

impl Backend for Cuda {
    type Buf = CudaSlice<f32>;

    fn name(&self) -> String {
        format!("{} [{:?}]", self.label, self.precision)
    }

    /// The ops of the metric backbones and the convolutional networks have no kernels yet.
    fn supports(&self, op: Op) -> bool {
        !matches!(
            op,
            Op::LayerNormAffine
                | Op::GeluErf
                | Op::Relu
                | Op::QuickGelu
                | Op::Conv2d
                | Op::Pool2d
                | Op::ConcatChannels
                | Op::GroupNorm
                | Op::UpsampleNearest2x
                | Op::Transpose
        )
    }

    fn upload(&self, data: &[f32]) -> Result<Self::Buf> {
        if data.is_empty() {
            return self.alloc(0);
        }
        self.stream.clone_htod(data).context("copy to the GPU")
    }

    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>> {
        if buf.is_empty() {
            return Ok(Vec::new());
        }
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
        gemm::linear(self, x, w, b, m, k, n)
    }

    fn layer_norm(&self, x: &Self::Buf, rows: usize, d: usize, eps: f32) -> Result<Self::Buf> {
        norm::layer_norm(self, x, rows, d, eps)
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
        norm::modulate(self, x, shift, scale, b, t, d)
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
        norm::layer_norm_modulate(self, x, shift, scale, b, t, d, eps)
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
        elementwise::gated_add(self, x, y, gate, b, t, d)
    }

    fn add_row(&self, x: &mut Self::Buf, row: &Self::Buf, b: usize, r: usize) -> Result<()> {
        elementwise::add_row(self, x, row, b, r)
    }

    fn add(&self, x: &mut Self::Buf, y: &Self::Buf) -> Result<()> {
        elementwise::add(self, x, y)
    }

    fn silu(&self, x: &Self::Buf) -> Result<Self::Buf> {
        act::silu(self, x)
    }

    fn gelu_tanh(&self, x: &mut Self::Buf) -> Result<()> {
        act::gelu_tanh(self, x)
    }

    fn attention(
        &self,
        qkv: &Self::Buf,
        b: usize,
        t: usize,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self::Buf> {
        attention::attention(self, qkv, b, t, heads, head_dim)
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
        embed::patchify(self, x, b, c, h, w, p)
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
        embed::unpatchify(self, o, b, c_out, c_keep, h, w, p)
    }

    fn gather_rows(&self, table: &Self::Buf, ids: &[usize], d: usize) -> Result<Self::Buf> {
        embed::gather_rows(self, table, ids, d)
    }
}
