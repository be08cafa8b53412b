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

mod act;
mod attention;
pub mod buf;
mod elementwise;
mod embed;
mod gemm;
pub mod launch;
mod norm;
pub mod standin;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, ensure, Context, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{result as drv, sys, CudaContext, CudaGraph, CudaStream};

use super::{Backend, Cols, Forward, Op, Precision};
use buf::{Dtype, GpuBuf, Pool};
use gemm::Epilogue;
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

/// One captured forward: its inputs, its output and the pool its activations live in.
// SAFETY (Send, Sync): a graph is only launched or dropped under the backend's graph mutex.
struct Graph {
    graph: CudaGraph,
    inputs: Vec<GpuBuf>,
    output: GpuBuf,
    _pool: Arc<Pool>,
}

unsafe impl Send for Graph {}
unsafe impl Sync for Graph {}

pub struct Cuda {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    lt: gemm::Lt,
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
    attn_arrays: Mutex<HashMap<attention::ArrayKey, GpuBuf>>,
    graphs: Mutex<HashMap<String, Graph>>,
    capturing: AtomicBool,
    counters: Counters,
}

/// Whether a CUDA driver library can be loaded (cudarc panics on any call without one).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen libcuda.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

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
        if o.nvtx && !unsafe { cudarc::nvtx::sys::is_culib_present() } {
            bail!("--nvtx needs libnvToolsExt.so.1 (CUDA toolkit, or the nvidia-nvtx wheel) on LD_LIBRARY_PATH");
        }
        let ctx = CudaContext::new(ordinal)
            .with_context(|| format!("cannot open CUDA device {ordinal}"))?;
        // One stream of our own: the legacy default stream cannot be captured into a graph.
        let stream = ctx.new_stream().context("creating a CUDA stream")?;
        // SAFETY: every buffer lives on this one stream, which orders all work on it; cudarc's
        // per-buffer events add nothing but calls.
        unsafe { ctx.disable_event_tracking() };
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
                format!("loading the PTX of kernels/{stem}.cu ({isa}) on driver {}.{}{hint}", driver / 1000, (driver % 1000) / 10)
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
        let persistent = Pool::new(stream.clone());
        let lt = gemm::Lt::new(&persistent)?;
        let main_pool = Pool::new(stream.clone());
        let label = format!(
            "cuda:{ordinal} {name} (sm_{major}{minor}, driver {}.{})",
            driver / 1000,
            (driver % 1000) / 10
        );
        log::info!(
            "{label}, kernels {isa}, precision {:?}, graphs {}",
            o.precision,
            if o.graphs { "on" } else { "off" }
        );
        Ok(Cuda {
            stream,
            blas,
            lt,
            k,
            precision: o.precision,
            sync_debug: o.sync_debug,
            graphs_on: o.graphs,
            nvtx: o.nvtx,
            smem_optin,
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
        let compute = match (self.precision, operands) {
            (Precision::Tf32, Dtype::F32) => "32F_FAST_TF32",
            _ => "32F",
        };
        let key = format!(
            "{compute}/{}",
            if operands == Dtype::F32 {
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

    /// A buffer of `len` elements from the current pool; its contents are garbage.
    fn alloc(&self, len: usize, dtype: Dtype) -> Result<GpuBuf> {
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

    fn cast(&self, x: &GpuBuf, to: Dtype) -> Result<GpuBuf> {
        act::cast(self, x, to)
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
        // SAFETY: `buf` holds at least `bytes.len()` bytes; the copy is ordered on our stream.
        unsafe { drv::memcpy_htod_async(buf.ptr(), bytes, self.stream.cu_stream()) }
            .context("copy to the GPU")
    }

    /// `x` as a product's right operand: a bf16 copy under `--precision bf16` when `x` is f32.
    fn as_operand_of(&self, x: &GpuBuf, w: &GpuBuf) -> Result<Option<GpuBuf>> {
        match (x.dtype(), w.dtype()) {
            (a, b) if a == b => Ok(None),
            (Dtype::F32, Dtype::Bf16) => Ok(Some(self.cast(x, Dtype::Bf16)?)),
            (a, b) => bail!("linear: x is {a:?}, the weight {b:?}"),
        }
    }

    fn product(
        &self,
        x: &GpuBuf,
        w: &GpuBuf,
        b: Option<&GpuBuf>,
        mkn: (usize, usize, usize),
        epi: Epilogue,
        out: Dtype,
    ) -> Result<GpuBuf> {
        let (m, k, n) = mkn;
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
        if k == 0 {
            // An empty sum: the bias (or zero), through the epilogue's own arithmetic on the host.
            let mut y = vec![0f32; m * n];
            if let Some(b) = b {
                let b = self.download(b)?;
                for row in y.chunks_mut(n.max(1)) {
                    row.copy_from_slice(&b);
                }
            }
            if matches!(epi, Epilogue::GeluBias | Epilogue::Gelu) {
                crate::backend::cpu::act::gelu_tanh(&mut y);
            }
            let up = self.upload(&y)?;
            return if out == Dtype::F32 {
                Ok(up)
            } else {
                self.cast(&up, out)
            };
        }
        let cast = self.as_operand_of(x, w)?;
        gemm::matmul(self, cast.as_ref().unwrap_or(x), w, b, mkn, epi, out)
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

/// Restores the backend's pool and ends a capture, whatever happens inside it.
struct CaptureScope<'a> {
    be: &'a Cuda,
    previous: Option<Arc<Pool>>,
}

impl Drop for CaptureScope<'_> {
    fn drop(&mut self) {
        self.be.capturing.store(false, Ordering::Relaxed);
        if let (Some(p), Ok(mut cur)) = (self.previous.take(), self.be.pool.lock()) {
            cur.freeze(false);
            *cur = p;
        }
    }
}

impl Backend for Cuda {
    type Buf = GpuBuf;

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
        let buf = self.alloc(data.len(), Dtype::F32)?;
        self.copy_to_device(&buf, bytemuck::cast_slice(data))?;
        Ok(buf)
    }

    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>> {
        ensure!(
            !self.capturing(),
            "a copy to the host inside a captured forward"
        );
        if buf.is_empty() {
            return Ok(Vec::new());
        }
        self.counters.host_syncs.fetch_add(1, Ordering::Relaxed);
        // A copy to pageable memory returns only once it is done (CUDA driver API, memcpy
        // semantics): that is the host's wait for the stream, and the only one a forward needs.
        match buf.dtype() {
            Dtype::F32 => {
                let mut out = vec![0f32; buf.len()];
                // SAFETY: `out` holds exactly the buffer's bytes.
                unsafe { drv::memcpy_dtoh_async(&mut out, buf.ptr(), self.stream.cu_stream()) }
                    .context("copy from the GPU")?;
                Ok(out)
            }
            Dtype::Bf16 => {
                let mut bits = vec![0u16; buf.len()];
                // SAFETY: as above.
                unsafe { drv::memcpy_dtoh_async(&mut bits, buf.ptr(), self.stream.cu_stream()) }
                    .context("copy from the GPU")?;
                Ok(bits
                    .into_iter()
                    .map(|b| half::bf16::from_bits(b).to_f32())
                    .collect())
            }
        }
    }

    fn upload_weight(&self, w: &[f32]) -> Result<Self::Buf> {
        if self.precision != Precision::Bf16 {
            return self.upload(w);
        }
        let bits: Vec<u16> = w
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_bits())
            .collect();
        let buf = self.alloc(w.len(), Dtype::Bf16)?;
        self.copy_to_device(&buf, bytemuck::cast_slice(&bits))?;
        Ok(buf)
    }

    fn operand(&self, x: Self::Buf) -> Result<Self::Buf> {
        let to = self.operand_dtype();
        if x.dtype() == to {
            Ok(x)
        } else {
            self.cast(&x, to)
        }
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
        self.product(x, w, b, (m, k, n), Epilogue::Bias, Dtype::F32)
    }

    fn linear_gelu(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        b: Option<&Self::Buf>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Self::Buf> {
        self.product(x, w, b, (m, k, n), Epilogue::GeluBias, self.operand_dtype())
    }

    fn linear_operand(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        b: Option<&Self::Buf>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Self::Buf> {
        self.product(x, w, b, (m, k, n), Epilogue::Bias, self.operand_dtype())
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

    fn gated_add_layer_norm_modulate(
        &self,
        x: &mut Self::Buf,
        y: &Self::Buf,
        gate: Cols<Self>,
        shift: Cols<Self>,
        scale: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
        eps: f32,
    ) -> Result<Self::Buf> {
        norm::gated_add_layer_norm_modulate(self, x, y, gate, shift, scale, (b, t, d), eps)
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

    fn gather_rows_idf(&self, table: &Self::Buf, ids: &Self::Buf, d: usize) -> Result<Self::Buf> {
        embed::gather_rows_idf(self, table, ids, d)
    }

    /// The first call for a `key` runs `f` once to fill a private pool (and the plan and array
    /// caches), then captures it; every call copies the inputs in, launches the graph and copies
    /// the output back.
    fn run_graph(
        &self,
        key: &str,
        inputs: &[&[f32]],
        f: &dyn Fn(&[Self::Buf]) -> Result<Self::Buf>,
    ) -> Result<Vec<f32>> {
        if !self.graphs_on {
            let bufs = inputs
                .iter()
                .map(|x| self.upload(x))
                .collect::<Result<Vec<_>>>()?;
            return self.download(&f(&bufs)?);
        }
        let mut graphs = self
            .graphs
            .lock()
            .map_err(|_| anyhow::anyhow!("graph cache poisoned"))?;
        if !graphs.contains_key(key) {
            let graph = self
                .capture(inputs, f)
                .with_context(|| format!("capturing the forward {key} into a CUDA graph"))?;
            graphs.insert(key.to_string(), graph);
        }
        let g = graphs.get(key).context("a graph just captured")?;
        ensure!(
            g.inputs.len() == inputs.len(),
            "graph {key}: {} inputs for {}",
            inputs.len(),
            g.inputs.len()
        );
        for (buf, x) in g.inputs.iter().zip(inputs) {
            ensure!(
                buf.len() == x.len(),
                "graph {key}: an input of {} values where it was captured with {}",
                x.len(),
                buf.len()
            );
            self.copy_to_device(buf, bytemuck::cast_slice(x))?;
        }
        g.graph
            .launch()
            .with_context(|| format!("launching the CUDA graph of {key}"))?;
        self.counters.graph_launches.fetch_add(1, Ordering::Relaxed);
        self.download(&g.output)
    }

    fn counters(&self) -> Option<serde_json::Value> {
        let c = self.counts();
        Some(serde_json::json!({
            "launches": c.launches,
            "graph_launches": c.graph_launches,
            "gemms": c.gemms,
            "macs": c.macs,
            "allocations": c.allocations,
            "host_syncs": c.host_syncs,
            "standin": standin::counts(),
        }))
    }

    fn range_push(&self, name: &str) {
        if self.nvtx {
            cudarc::nvtx::result::range_push(name);
        }
    }

    fn range_pop(&self) {
        if self.nvtx {
            cudarc::nvtx::result::range_pop();
        }
    }
}

impl Cuda {
    fn capture(&self, inputs: &[&[f32]], f: &Forward<GpuBuf>) -> Result<Graph> {
        let pool = Pool::new(self.stream.clone());
        let previous = {
            let mut cur = self
                .pool
                .lock()
                .map_err(|_| anyhow::anyhow!("buffer pool poisoned"))?;
            std::mem::replace(&mut *cur, pool.clone())
        };
        let _scope = CaptureScope {
            be: self,
            previous: Some(previous),
        };
        let ins = inputs
            .iter()
            .map(|x| self.upload(x))
            .collect::<Result<Vec<_>>>()?;
        // Runs before the capture fill the pool and make the plans and attention's operand
        // arrays, so the capture needs neither allocations nor copies. The first run allocates;
        // the next finds every buffer free and leaves the pool as it found it (see `Pool`), so
        // the capture sees exactly that run's addresses.
        let mut settled = false;
        for _ in 0..4 {
            let before = pool.snapshot();
            drop(f(&ins)?);
            if pool.snapshot() == before {
                settled = true;
                break;
            }
        }
        ensure!(settled, "the buffer pool did not settle in 4 runs");
        self.sync()?;
        pool.freeze(true);
        self.capturing.store(true, Ordering::Relaxed);
        self.stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .context("cuStreamBeginCapture")?;
        let out = f(&ins);
        let graph = self.stream.end_capture(sys::CUgraphInstantiate_flags(0));
        let (out, graph) = (
            out?,
            graph
                .context("cuStreamEndCapture")?
                .context("the capture recorded nothing")?,
        );
        Ok(Graph {
            graph,
            inputs: ins,
            output: out,
            _pool: pool,
        })
    }
}
