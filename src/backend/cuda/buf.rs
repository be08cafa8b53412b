//! Device buffers and the pool they come from. A forward allocates and frees the same sizes in
//! the same order every time, so after the first one every buffer comes back from the pool: no
//! `cuMemAlloc` in steady state (and none at all while a CUDA graph is captured).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use cudarc::driver::{result, sys, CudaStream};

/// Element type of a buffer. The residual stream and every normalisation stay in f32; bf16 is
/// for GEMM operands in `--precision bf16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    F32,
    Bf16,
    /// An operand of a 3xTF32 product, in f32 storage: a matrix of K columns stored as 3K, the
    /// TF32 parts of each value (`cpu::act::split_tf32`: [hi | hi | lo] on the left, [hi | lo |
    /// hi] on the right). Its length counts the stored values.
    Tf32x3,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 | Dtype::Tf32x3 => 4,
            Dtype::Bf16 => 2,
        }
    }
}

/// Allocations are rounded to this many bytes (cuMemAlloc's alignment), so sizes that differ by
/// a few elements share a free list.
const GRAIN: usize = 256;

/// Free device allocations by size. Memory goes back to the driver only when the pool drops.
///
/// A request takes the free buffer of its size that was made first, and makes a new one only
/// when none is free. A forward then gets the very buffers it got the first time: where the first
/// run found a free buffer the next finds the same one first (its extra free buffers were all made
/// later), and where the first run made one the next finds it as the earliest of those extras.
/// Cached operand addresses (attention's pointer arrays) stay valid, and a graph captured after a
/// run sees that run's addresses.
pub struct Pool {
    stream: Arc<CudaStream>,
    /// Free buffers by size, as (creation index, address).
    free: Mutex<HashMap<usize, BTreeSet<(u64, sys::CUdeviceptr)>>>,
    /// Every allocation the pool made, to free at the end.
    all: Mutex<Vec<sys::CUdeviceptr>>,
    allocations: AtomicU64,
    /// While a graph is captured from its buffers, a miss is an error, not an allocation.
    frozen: AtomicBool,
}

impl Pool {
    pub fn new(stream: Arc<CudaStream>) -> Arc<Self> {
        Arc::new(Pool {
            stream,
            free: Mutex::default(),
            all: Mutex::default(),
            allocations: AtomicU64::new(0),
            frozen: AtomicBool::new(false),
        })
    }

    /// Device allocations made so far.
    pub fn allocations(&self) -> u64 {
        self.allocations.load(Ordering::Relaxed)
    }

    /// The free buffers by size: equal snapshots hand out the same addresses in the same order.
    pub fn snapshot(&self) -> Vec<(usize, Vec<(u64, sys::CUdeviceptr)>)> {
        let mut v: Vec<_> = self
            .free
            .lock()
            .map(|f| {
                f.iter()
                    .map(|(k, l)| (*k, l.iter().copied().collect()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn freeze(&self, on: bool) {
        self.frozen.store(on, Ordering::Relaxed);
    }

    fn take(&self, bytes: usize) -> Result<(sys::CUdeviceptr, u64, usize)> {
        let size = bytes.max(1).div_ceil(GRAIN) * GRAIN;
        let reuse = self
            .free
            .lock()
            .map_err(|_| anyhow::anyhow!("buffer pool poisoned"))?
            .get_mut(&size)
            .and_then(BTreeSet::pop_first);
        if let Some((seq, p)) = reuse {
            return Ok((p, seq, size));
        }
        anyhow::ensure!(
            !self.frozen.load(Ordering::Relaxed),
            "an allocation of {size} bytes inside a captured forward: the run before the capture \
             allocated differently"
        );
        let seq = self.allocations.fetch_add(1, Ordering::Relaxed);
        // SAFETY: a fresh stream-ordered allocation, freed in `Drop` after the stream is idle.
        let p = unsafe { result::malloc_async(self.stream.cu_stream(), size) }
            .with_context(|| format!("CUDA allocation of {size} bytes"))?;
        self.all
            .lock()
            .map_err(|_| anyhow::anyhow!("buffer pool poisoned"))?
            .push(p);
        Ok((p, seq, size))
    }

    fn give_back(&self, ptr: sys::CUdeviceptr, seq: u64, size: usize) {
        if let Ok(mut free) = self.free.lock() {
            free.entry(size).or_default().insert((seq, ptr));
        }
    }

    /// A buffer of `len` elements; its contents are whatever the last user left.
    pub fn alloc(self: &Arc<Self>, len: usize, dtype: Dtype) -> Result<GpuBuf> {
        let (ptr, seq, size) = self.take(len * dtype.size())?;
        Ok(GpuBuf {
            ptr,
            seq,
            size,
            len,
            dtype,
            pool: self.clone(),
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = self.stream.synchronize();
        if let Ok(all) = self.all.lock() {
            for &p in all.iter() {
                // SAFETY: allocated by this pool; no buffer refers to it any more (each holds an Arc).
                let _ = unsafe { result::free_async(p, self.stream.cu_stream()) };
            }
        }
    }
}

/// `len` elements of one dtype on the device, returned to its pool when dropped.
pub struct GpuBuf {
    ptr: sys::CUdeviceptr,
    /// The pool's creation index of the allocation.
    seq: u64,
    size: usize,
    len: usize,
    dtype: Dtype,
    pool: Arc<Pool>,
}

impl GpuBuf {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }
    /// The device address, for kernel and GEMM arguments.
    pub fn ptr(&self) -> sys::CUdeviceptr {
        self.ptr
    }
    /// Bytes of data (`len` elements).
    pub fn bytes(&self) -> usize {
        self.len * self.dtype.size()
    }
}

impl Drop for GpuBuf {
    fn drop(&mut self) {
        self.pool.give_back(self.ptr, self.seq, self.size);
    }
}

impl std::fmt::Debug for GpuBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuBuf({} × {:?} at {:#x})",
            self.len, self.dtype, self.ptr
        )
    }
}
