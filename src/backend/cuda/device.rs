//! Opening a device: the CUDA libraries this build calls, the context and its stream, the
//! kernels (embedded PTX, or NVRTC's for the `cuda12` flavour) checked against the launch table,
//! and the cuBLAS / cuBLASLt handles.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{sys, CudaContext};

use super::buf::Pool;
use super::launch::Kernels;
use super::{driver_present, lt, ptx_for, Counters, Cuda, CudaOptions, KERNELS};
use crate::backend::Precision;

/// The CUDA libraries besides the driver that this build calls, when missing.
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
    // SAFETY: as above.
    if !unsafe { cudarc::cublaslt::sys::is_culib_present() } {
        missing.push(if cfg!(feature = "cuda") {
            "cuBLASLt (libcublasLt.so.13)"
        } else {
            "cuBLASLt (libcublasLt.so.12)"
        });
    }
    #[cfg(not(feature = "cuda"))]
    // SAFETY: as above.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        missing.push("NVRTC (libnvrtc.so.12), which compiles the kernels of the cuda12 build");
    }
    missing
}

/// Fails with a clear message when the driver, a library or (for `--nvtx`) NVTX is missing:
/// cudarc panics on any call into a library it cannot load.
fn check_libraries(nvtx: bool) -> Result<()> {
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
    // SAFETY: only tries to dlopen the library.
    if nvtx && !unsafe { cudarc::nvtx::sys::is_culib_present() } {
        bail!("--nvtx needs libnvToolsExt.so.1 (CUDA toolkit, or the nvidia-nvtx wheel) on LD_LIBRARY_PATH");
    }
    Ok(())
}

/// What the driver says about the device.
struct DeviceInfo {
    name: String,
    major: i32,
    minor: i32,
    /// The driver's CUDA version, 1000·major + 10·minor.
    driver: i32,
    smem_optin: u32,
}

impl DeviceInfo {
    fn read(ctx: &CudaContext) -> Result<Self> {
        let (major, minor) = ctx
            .compute_capability()
            .context("reading the compute capability")?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let smem_optin = ctx
            .attribute(
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )
            .context("reading the shared memory limit")? as u32;
        let mut driver = 0i32;
        // SAFETY: writes one int.
        unsafe { sys::cuDriverGetVersion(&mut driver as *mut i32) };
        Ok(DeviceInfo {
            name,
            major,
            minor,
            driver,
            smem_optin,
        })
    }

    /// `major.minor` of the driver's CUDA version.
    fn driver_version(&self) -> String {
        format!("{}.{}", self.driver / 1000, (self.driver % 1000) / 10)
    }
}

/// Loads every kernel file on `ctx` and looks up (and checks) every kernel of the launch table;
/// also returns the PTX ISA version of the kernels, for the log.
fn load_kernels(ctx: &Arc<CudaContext>, dev: &DeviceInfo) -> Result<(Kernels, String)> {
    let mut modules = HashMap::new();
    let mut isa = String::new();
    for (stem, code) in KERNELS {
        let ptx =
            ptx_for(code, dev.major, dev.minor).with_context(|| format!("kernels/{stem}.cu"))?;
        if isa.is_empty() {
            isa = code
                .lines()
                .find(|l| l.starts_with(".version"))
                .unwrap_or(".version (nvrtc)")
                .to_string();
        }
        let module = ctx.load_module(ptx).with_context(|| {
            // A CUDA 12 driver rejects the cuda build's PTX ISA 9.0 with a terse message.
            let hint = if cfg!(feature = "cuda") && dev.driver < 13000 {
                "; this build's PTX needs a CUDA 13 driver: for CUDA 12 drivers build with --features cuda12"
            } else {
                ""
            };
            format!(
                "loading the PTX of kernels/{stem}.cu ({isa}) on driver {}{hint}",
                dev.driver_version()
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
    Ok((k, isa))
}

impl Cuda {
    /// Opens device `ordinal` with graphs on and NVTX off.
    pub fn new(ordinal: usize, precision: Precision, sync_debug: bool) -> Result<Self> {
        Self::with_options(
            ordinal,
            CudaOptions {
                sync_debug,
                ..CudaOptions::new(precision)
            },
        )
    }

    /// Opens device `ordinal`, loads and checks the kernels, and makes the cuBLAS and cuBLASLt
    /// handles. Fails with a clear message (never a panic) when the driver, a library or the
    /// device is missing.
    pub fn with_options(ordinal: usize, o: CudaOptions) -> Result<Self> {
        check_libraries(o.nvtx)?;
        let ctx = CudaContext::new(ordinal)
            .with_context(|| format!("cannot open CUDA device {ordinal}"))?;
        // One stream of our own: the legacy default stream cannot be captured into a graph.
        let stream = ctx.new_stream().context("creating a CUDA stream")?;
        // SAFETY: every buffer lives on this one stream, which orders all work on it; cudarc's
        // per-buffer events add nothing but calls.
        unsafe { ctx.disable_event_tracking() };
        let dev = DeviceInfo::read(&ctx)?;
        let (k, isa) = load_kernels(&ctx, &dev)?;
        let blas = CudaBlas::new(stream.clone()).context("creating the cuBLAS handle")?;
        let persistent = Pool::new(stream.clone());
        let lt = lt::Lt::new(&persistent)?;
        let main_pool = Pool::new(stream.clone());
        let label = format!(
            "cuda:{ordinal} {} (sm_{}{}, driver {})",
            dev.name,
            dev.major,
            dev.minor,
            dev.driver_version()
        );
        log::info!(
            "{label}, kernels {isa}, precision {:?}, graphs {}",
            o.precision,
            if o.graphs { "on" } else { "off" }
        );
        Ok(Cuda {
            ordinal,
            options: o,
            stream,
            blas,
            lt,
            k,
            precision: o.precision,
            sync_debug: o.sync_debug,
            graphs_on: o.graphs,
            nvtx: o.nvtx,
            smem_optin: dev.smem_optin,
            label,
            pool: Mutex::new(main_pool.clone()),
            main_pool,
            persistent,
            attn_arrays: Mutex::default(),
            graphs: Mutex::default(),
            capturing: AtomicBool::new(false),
            counters: Counters::default(),
        })
    }
}
