//! The launch table: every kernel of `kernels/*.cu` with its parameter list, checked three ways —
//! against the PTX by the static gate (`tests/gpu/kernels_static.rs`), against the loaded module by
//! the driver at start-up (`cuFuncGetParamInfo`), and against the arguments of every launch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use cudarc::driver::{CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr};

use super::buf::GpuBuf;

/// A kernel parameter as the launch passes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum P {
    /// A device pointer (8 bytes).
    Ptr,
    /// `int`.
    I32,
    /// `long long`.
    I64,
    /// `float`.
    F32,
}

impl P {
    pub fn size(self) -> usize {
        match self {
            P::Ptr | P::I64 => 8,
            P::I32 | P::F32 => 4,
        }
    }
}

/// One kernel's interface: its file in `kernels/`, its `.entry` name, its parameters and the
/// largest block it is launched with.
#[derive(Debug)]
pub struct Sig {
    pub file: &'static str,
    pub name: &'static str,
    pub params: &'static [P],
    /// Threads per block of its largest launch: the static gate checks its registers for this
    /// many threads, and [`Launch::run`] refuses larger blocks.
    pub max_threads: u32,
}

use P::{Ptr, F32, I32, I64};

/// A loaded kernel and its row of the launch table.
pub struct Kernel {
    pub f: CudaFunction,
    pub sig: &'static Sig,
}

/// The launch table as one row per kernel (`field: file name [params] max_threads`), from which
/// both `SIGNATURES` and the `Kernels` struct of loaded functions are made.
macro_rules! launch_table {
    ($($field:ident: $file:literal $name:literal [$($p:ident),*] $threads:expr;)*) => {
        /// Every kernel the backend launches, in the order of [`Kernels`].
        pub const SIGNATURES: &[Sig] = &[
            $(Sig { file: $file, name: $name, params: &[$($p),*], max_threads: $threads },)*
        ];

        /// Every kernel function, looked up and checked once.
        pub struct Kernels {
            $(pub $field: Kernel,)*
        }

        impl Kernels {
            pub fn load(module: impl Fn(&str) -> Result<Arc<CudaModule>>) -> Result<Self> {
                let mut rows = SIGNATURES.iter();
                let mut next = || -> Result<Kernel> {
                    let sig = rows.next().context("the launch table is shorter than Kernels")?;
                    let f = module(sig.file)?
                        .load_function(sig.name)
                        .with_context(|| format!("kernel {} in kernels/{}.cu", sig.name, sig.file))?;
                    verify_params(&f, sig)?;
                    Ok(Kernel { f, sig })
                };
                Ok(Kernels { $($field: next()?,)* })
            }
        }
    };
}

/// Threads per block of the softmax (8 rows of one warp each).
pub const SOFTMAX_THREADS: u32 = 256;

#[rustfmt::skip]
launch_table! {
    layer_norm:                   "norm"        "layer_norm_f32"                     [Ptr, Ptr, I32, I32, F32] BLOCK;
    layer_norm_modulate:          "norm"        "layer_norm_modulate_f32"            [Ptr, Ptr, Ptr, I32, I32, Ptr, I32, I32, I32, I32, F32] BLOCK;
    layer_norm_modulate_bf16:     "norm"        "layer_norm_modulate_bf16"           [Ptr, Ptr, Ptr, I32, I32, Ptr, I32, I32, I32, I32, F32] BLOCK;
    gated_add_ln_modulate:        "norm"        "gated_add_layer_norm_modulate_f32"  [Ptr, Ptr, Ptr, I32, I32, Ptr, I32, I32, Ptr, I32, I32, Ptr, I32, I32, F32] BLOCK;
    gated_add_ln_modulate_bf16:   "norm"        "gated_add_layer_norm_modulate_bf16" [Ptr, Ptr, Ptr, I32, I32, Ptr, I32, I32, Ptr, I32, I32, Ptr, I32, I32, F32] BLOCK;
    modulate:                     "norm"        "modulate_f32"                       [Ptr, Ptr, I32, I32, Ptr, I32, I32, I32, I32, I64] BLOCK;
    add:                          "elementwise" "add_f32"                            [Ptr, Ptr, I64] BLOCK;
    add_row:                      "elementwise" "add_row_f32"                        [Ptr, Ptr, I32, I64] BLOCK;
    gated_add:                    "elementwise" "gated_add_f32"                      [Ptr, Ptr, Ptr, I32, I32, I32, I32, I64] BLOCK;
    silu:                         "act"         "silu_f32"                           [Ptr, Ptr, I64] BLOCK;
    gelu_tanh:                    "act"         "gelu_tanh_f32"                      [Ptr, I64] BLOCK;
    gelu_erf:                     "act"         "gelu_erf_f32"                       [Ptr, I64] BLOCK;
    quick_gelu:                   "act"         "quick_gelu_f32"                     [Ptr, I64] BLOCK;
    relu:                         "act"         "relu_f32"                           [Ptr, I64] BLOCK;
    cast_bf16:                    "act"         "cast_bf16"                          [Ptr, Ptr, I64] BLOCK;
    split_tf32:                   "act"         "split_tf32"                         [Ptr, Ptr, I64, I32] BLOCK;
    patchify:                     "embed"       "patchify_f32"                       [Ptr, Ptr, I32, I32, I32, I32, I64] BLOCK;
    unpatchify:                   "embed"       "unpatchify_f32"                     [Ptr, Ptr, I32, I32, I32, I32, I32, I64] BLOCK;
    gather_rows:                  "embed"       "gather_rows_f32"                    [Ptr, Ptr, Ptr, I32, I64] BLOCK;
    gather_rows_idf:              "embed"       "gather_rows_idf_f32"                [Ptr, Ptr, Ptr, I32, I64] BLOCK;
    softmax_rows:                 "attention"   "softmax_rows_f32"                   [Ptr, Ptr, I64, I32] SOFTMAX_THREADS;
    softmax_rows_bf16:            "attention"   "softmax_rows_bf16"                  [Ptr, Ptr, I64, I32] SOFTMAX_THREADS;
    layer_norm_affine:            "norm"        "layer_norm_affine_f32"              [Ptr, Ptr, Ptr, Ptr, I32, I32, F32] BLOCK;
    group_norm:                   "norm"        "group_norm_f32"                     [Ptr, Ptr, Ptr, Ptr, I32, I32, I32, F32, I32] BLOCK;
    transpose:                    "embed"       "transpose_f32"                      [Ptr, Ptr, I32, I32, I64] BLOCK;
    im2col:                       "conv"        "im2col_f32"                         [Ptr, Ptr, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I64] BLOCK;
    im2col_bf16:                  "conv"        "im2col_bf16"                        [Ptr, Ptr, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I64] BLOCK;
    fill_bias:                    "conv"        "fill_bias_f32"                      [Ptr, Ptr, I32, I64, I64] BLOCK;
    upsample_nearest2x:           "conv"        "upsample_nearest2x_f32"             [Ptr, Ptr, I32, I32, I64] BLOCK;
    pool2d:                       "pool"        "pool2d_f32"                         [Ptr, Ptr, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I64] BLOCK;
    copy_channels:                "pool"        "copy_channels_f32"                  [Ptr, Ptr, I64, I64, I64, I64] BLOCK;
}

/// The parameter sizes of a loaded kernel, as the driver reports them (`cuFuncGetParamInfo`,
/// drivers from CUDA 12.4); `None` when the driver cannot tell.
pub fn param_sizes(f: &CudaFunction) -> Option<Vec<usize>> {
    use cudarc::driver::sys;
    // SAFETY: only looks the symbol up; older drivers lack it and cudarc would panic on the call.
    let present = unsafe {
        sys::culib()
            .get::<unsafe extern "C" fn()>(b"cuFuncGetParamInfo\0")
            .is_ok()
    };
    if !present {
        return None;
    }
    let mut sizes = Vec::new();
    loop {
        let (mut offset, mut size) = (0usize, 0usize);
        // SAFETY: a loaded function; the driver answers CUDA_ERROR_INVALID_VALUE past the last parameter.
        let r = unsafe {
            sys::cuFuncGetParamInfo(f.cu_function(), sizes.len(), &mut offset, &mut size)
        };
        if r != sys::CUresult::CUDA_SUCCESS {
            return Some(sizes);
        }
        sizes.push(size);
    }
}

/// Checks a loaded kernel's parameters against its row of the launch table.
pub fn verify_params(f: &CudaFunction, sig: &Sig) -> Result<()> {
    let Some(sizes) = param_sizes(f) else {
        return Ok(());
    };
    let want: Vec<usize> = sig.params.iter().map(|p| p.size()).collect();
    ensure!(
        sizes == want,
        "kernel {} in kernels/{}.cu: the module's parameters are {} ({:?} bytes), the launch table has {} ({:?} bytes)",
        sig.name,
        sig.file,
        sizes.len(),
        sizes,
        want.len(),
        want
    );
    Ok(())
}

/// Grid and block of a launch; dynamic shared memory in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub smem: u32,
}

/// Threads per block of the elementwise kernels.
pub const BLOCK: u32 = 256;

/// One thread per element over `n > 0` elements, in 64-bit arithmetic: the grid's x
/// dimension holds up to 2³¹ − 1 blocks, which is 5.5·10¹¹ elements.
pub fn grid_1d(n: usize) -> Result<Dims> {
    let blocks = n.div_ceil(BLOCK as usize);
    ensure!(
        blocks <= i32::MAX as usize,
        "{n} elements need {blocks} blocks, more than a grid holds (2^31 - 1)"
    );
    Ok(Dims {
        grid: (blocks as u32, 1, 1),
        block: (BLOCK, 1, 1),
        smem: 0,
    })
}

/// Something whose device address a kernel takes: our pooled buffers, or a cudarc slice.
pub trait DeviceArg {
    fn device_address(&self, stream: &CudaStream) -> u64;
}

impl DeviceArg for GpuBuf {
    fn device_address(&self, _: &CudaStream) -> u64 {
        self.ptr()
    }
}

impl<T> DeviceArg for CudaSlice<T> {
    fn device_address(&self, stream: &CudaStream) -> u64 {
        self.device_ptr(stream).0
    }
}

/// The arguments of one launch, checked against the kernel's signature before it runs.
pub struct Launch<'a> {
    stream: &'a Arc<CudaStream>,
    kernel: &'a Kernel,
    slots: Vec<u64>,
    kinds: Vec<P>,
    error: Option<anyhow::Error>,
    counter: Option<&'a AtomicU64>,
}

impl<'a> Launch<'a> {
    pub fn new(stream: &'a Arc<CudaStream>, kernel: &'a Kernel) -> Self {
        let n = kernel.sig.params.len();
        Launch {
            stream,
            kernel,
            slots: Vec::with_capacity(n),
            kinds: Vec::with_capacity(n),
            error: None,
            counter: None,
        }
    }

    /// Counts the launch in `c` when it is made.
    pub fn counted(mut self, c: &'a AtomicU64) -> Self {
        self.counter = Some(c);
        self
    }

    fn push(mut self, kind: P, bits: u64) -> Self {
        self.slots.push(bits);
        self.kinds.push(kind);
        self
    }

    /// A buffer, read or written by the kernel.
    pub fn buf(self, b: &impl DeviceArg) -> Self {
        let ptr = b.device_address(self.stream);
        self.push(Ptr, ptr)
    }

    /// A raw device address inside a live buffer (a chunk of one).
    pub fn addr(self, ptr: u64) -> Self {
        self.push(Ptr, ptr)
    }

    /// An `int`; a value beyond its range fails the launch instead of wrapping.
    pub fn int(mut self, v: usize, what: &str) -> Self {
        match i32::try_from(v) {
            Ok(v) => self.push(I32, v as u32 as u64),
            Err(_) => {
                self.error.get_or_insert_with(|| {
                    anyhow::anyhow!(
                        "kernel {}: {what} = {v} does not fit its 32-bit parameter",
                        self.kernel.sig.name
                    )
                });
                self.push(I32, 0)
            }
        }
    }

    /// A `long long`.
    pub fn long(self, v: usize) -> Self {
        self.push(I64, v as u64)
    }

    pub fn float(self, v: f32) -> Self {
        self.push(F32, v.to_bits() as u64)
    }

    /// Checks the arguments against the signature and launches on the stream.
    pub fn run(self, d: Dims) -> Result<()> {
        let sig = self.kernel.sig;
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.kinds != sig.params {
            bail!(
                "kernel {}: launched with {:?}, its signature is {:?}",
                sig.name,
                self.kinds,
                sig.params
            );
        }
        // Registers and static shared memory are checked for `max_threads` only (the static gate);
        // a larger block could fail to launch, or run past `__shared__` arrays sized for it.
        let threads = d.block.0 as u64 * d.block.1 as u64 * d.block.2 as u64;
        if threads > sig.max_threads as u64 {
            bail!(
                "kernel {}: block {:?} has {threads} threads, more than the {} of its launch table row",
                sig.name,
                d.block,
                sig.max_threads
            );
        }
        self.stream
            .context()
            .bind_to_thread()
            .context("binding the CUDA context")?;
        // Each slot holds the parameter's bytes in its low bytes (little-endian), as the driver
        // reads `size` bytes from each pointer.
        let mut slots = self.slots;
        let mut params: Vec<*mut std::ffi::c_void> = slots
            .iter_mut()
            .map(|s| s as *mut u64 as *mut std::ffi::c_void)
            .collect();
        // SAFETY: the parameter list matches the kernel's signature (checked above and, at load,
        // against the module); pointers come from live buffers of this stream.
        unsafe {
            cudarc::driver::result::launch_kernel(
                self.kernel.f.cu_function(),
                d.grid,
                d.block,
                d.smem,
                self.stream.cu_stream(),
                &mut params,
            )
        }
        .with_context(|| {
            format!(
                "launching {} (grid {:?}, block {:?}, {} B shared)",
                sig.name, d.grid, d.block, d.smem
            )
        })?;
        if let Some(c) = self.counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}
