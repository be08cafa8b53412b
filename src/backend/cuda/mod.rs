//! The CUDA backend: products through cuBLASLt (bias and GELU in the epilogue) and cuBLAS
//! (attention's batched products), every other op a kernel of ours from `kernels/*.cu` (PTX
//! embedded at build time, or compiled by NVRTC at start-up for the `cuda12` flavour), launched
//! through the checked table of [`launch`]. One stream of its own; buffers come from a pool
//! ([`buf`]), so a forward allocates nothing after the first; a repeated forward is captured once
//! into a CUDA graph and replayed ([`Backend::run_graph`]).
//!
//! Precision (`--precision`): fp32 is strict; tf32 runs every product on TF32 tensor cores; bf16
//! stores GEMM weights in bf16 at load and writes every GEMM operand (LayerNorm + modulate
//! outputs, the qkv, attention's P and output, the MLP's hidden layer) in bf16, while the
//! residual stream, the normalisations and every accumulation stay in fp32.
//!
//! Opening a device is in [`device`], the [`Backend`](super::Backend) ops in [`ops`], graph
//! capture and replay in [`graph`].

mod act;
mod attention;
pub mod buf;
mod conv;
mod device;
mod elementwise;
mod embed;
mod gemm;
mod graph;
pub mod launch;
mod lt;
mod norm;
mod ops;
mod pool;
pub mod standin;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{result as drv, CudaGraph, CudaStream, PinnedHostSlice};

use super::{Cols, Precision};
use buf::{Dtype, GpuBuf, Pool};
use launch::{Kernel, Kernels, Launch};

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// How the CUDA backend runs.
#[derive(Debug, Clone, Copy)]
pub struct CudaOptions {
    pub precision: Precision,
    /// Synchronise after every launch, so an error names the op that caused it.
    pub sync_debug: bool,
    /// Capture repeated forwards into CUDA graphs.
    pub graphs: bool,
    /// NVTX ranges around forwards, blocks, attention and MLPs (for Nsight Systems).
    pub nvtx: bool,
}

impl CudaOptions {
    pub fn new(precision: Precision) -> Self {
        CudaOptions {
            precision,
            sync_debug: false,
            graphs: true,
            nvtx: false,
        }
    }
}

/// What the backend did, counted on the host (the same on a GPU as on the emulated device).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Kernel launches of ours, and graph launches.
    pub launches: u64,
    pub graph_launches: u64,
    /// Products by compute type (`"32F/16BF"`: compute type / operand type), and multiply-adds.
    pub gemms: BTreeMap<String, u64>,
    pub macs: u64,
    /// Device allocations (pool misses).
    pub allocations: u64,
    /// Waits of the host for the device (synchronisations and copies to the host).
    pub host_syncs: u64,
}

#[derive(Default)]
struct Counters {
    launches: AtomicU64,
    graph_launches: AtomicU64,
    host_syncs: AtomicU64,
    macs: AtomicU64,
    gemms: Mutex<BTreeMap<String, u64>>,
}

/// One captured forward: the page-locked host buffers its copies read and write, and the pool
/// its activations live in. The graph copies the inputs in, runs the forward and copies the
/// output out.
// SAFETY (Send, Sync): a graph is only launched, its host buffers touched, or dropped under the
// backend's graph mutex.
struct Graph {
    graph: CudaGraph,
    /// The inputs' page-locked buffers, then the output's: the graph's copies read and write
    /// them through `staged`, the host through the same addresses.
    _pinned: Vec<PinnedHostSlice<f32>>,
    staged: Staged,
    _pool: Arc<Pool>,
}

/// Addresses and lengths of a graph's page-locked input and output buffers. Taken once, since
/// cudarc's accessors wait on an event, which a capture forbids.
struct Staged {
    inputs: Vec<(*mut f32, usize)>,
    output: (*const f32, usize),
}

unsafe impl Send for Graph {}
unsafe impl Sync for Graph {}

/// Attention's six operand arrays of one chunk, in device memory: (K, Q, S) for the scores, (V, P, O)
/// for the output. Cached by everything they depend on, so a forward with the same buffers (every
/// forward after the first, and every replay of a graph) uploads nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArrayKey {
    qkv: u64,
    out: u64,
    s: u64,
    p: u64,
    images: usize,
    t: usize,
    heads: usize,
    dh: usize,
    es: usize,
}

pub struct Cuda {
    /// How it was opened: a companion opens the same way.
    ordinal: usize,
    options: CudaOptions,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    lt: lt::Lt,
    k: Kernels,
    precision: Precision,
    sync_debug: bool,
    graphs_on: bool,
    nvtx: bool,
    /// Dynamic shared memory a block may opt in to (`MAX_SHARED_MEMORY_PER_BLOCK_OPTIN`).
    pub smem_optin: u32,
    label: String,
    /// Where buffers come from now: the backend's pool, or a graph's while it is captured.
    pool: Mutex<Arc<Pool>>,
    main_pool: Arc<Pool>,
    /// Buffers kept for good: the cuBLASLt workspace, attention's operand arrays.
    persistent: Arc<Pool>,
    attn_arrays: Mutex<HashMap<ArrayKey, GpuBuf>>,
    graphs: Mutex<HashMap<String, Graph>>,
    capturing: AtomicBool,
    counters: Counters,
}

/// Whether a CUDA driver library can be loaded (cudarc panics on any call without one).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen libcuda.
    unsafe { cudarc::driver::sys::is_culib_present() }
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

impl Cuda {
    /// What the backend did so far (see [`Counts`]).
    pub fn counts(&self) -> Counts {
        let c = &self.counters;
        Counts {
            launches: c.launches.load(Ordering::Relaxed),
            graph_launches: c.graph_launches.load(Ordering::Relaxed),
            gemms: c.gemms.lock().map(|g| g.clone()).unwrap_or_default(),
            macs: c.macs.load(Ordering::Relaxed),
            allocations: self.main_pool.allocations()
                + self.persistent.allocations()
                + self
                    .graphs
                    .lock()
                    .map(|g| g.values().map(|g| g._pool.allocations()).sum())
                    .unwrap_or(0),
            host_syncs: c.host_syncs.load(Ordering::Relaxed),
        }
    }

    fn count_gemm(&self, operands: Dtype, macs: u64) {
        let tf32 = lt::compute(self.precision, operands).0
            == cudarc::cublaslt::sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32;
        let compute = if tf32 { "32F_FAST_TF32" } else { "32F" };
        let key = format!(
            "{compute}/{}",
            if operands != Dtype::Bf16 {
                "32F"
            } else {
                "16BF"
            }
        );
        if let Ok(mut g) = self.counters.gemms.lock() {
            *g.entry(key).or_default() += 1;
        }
        self.counters.macs.fetch_add(macs, Ordering::Relaxed);
    }

    fn capturing(&self) -> bool {
        self.capturing.load(Ordering::Relaxed)
    }

    /// With `--sync-debug`, waits for the stream so that an error names the op that caused it
    /// (not while a graph is captured: that would end the capture).
    fn done(&self, what: &str) -> Result<()> {
        if self.sync_debug && !self.capturing() {
            self.sync()
                .with_context(|| format!("CUDA error after {what}"))?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.counters.host_syncs.fetch_add(1, Ordering::Relaxed);
        self.stream.synchronize().context("waiting for the GPU")
    }

    fn launch<'a>(&'a self, k: &'a Kernel) -> Launch<'a> {
        Launch::new(&self.stream, k).counted(&self.counters.launches)
    }

    /// Makes the backend's context current on the calling thread: the driver's allocations,
    /// copies and launches act on it, and a sweep's stages call from threads of their own.
    fn bind(&self) -> Result<()> {
        self.stream
            .context()
            .bind_to_thread()
            .context("binding the CUDA context to this thread")
    }

    /// A buffer of `len` elements from the current pool; its contents are garbage.
    fn alloc(&self, len: usize, dtype: Dtype) -> Result<GpuBuf> {
        self.bind()?;
        let pool = self
            .pool
            .lock()
            .map_err(|_| anyhow::anyhow!("buffer pool poisoned"))?
            .clone();
        pool.alloc(len, dtype)
    }

    /// The type of GEMM operands: bf16 under `--precision bf16`, else f32.
    fn operand_dtype(&self) -> Dtype {
        if self.precision == Precision::Bf16 {
            Dtype::Bf16
        } else {
            Dtype::F32
        }
    }

    /// Copies host bytes into the start of `buf`.
    fn copy_to_device(&self, buf: &GpuBuf, bytes: &[u8]) -> Result<()> {
        ensure!(
            bytes.len() <= buf.bytes(),
            "copy of {} bytes into a buffer of {}",
            bytes.len(),
            buf.bytes()
        );
        ensure!(
            !self.capturing(),
            "a copy from host memory inside a captured forward"
        );
        if bytes.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `buf` holds at least `bytes.len()` bytes; the copy is ordered on our stream.
        unsafe { drv::memcpy_htod_async(buf.ptr(), bytes, self.stream.cu_stream()) }
            .context("copy to the GPU")
    }
}
