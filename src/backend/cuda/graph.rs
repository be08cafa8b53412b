//! CUDA graphs: the first call of a forward fills a private pool and is captured once, together
//! with the copies of its inputs from page-locked host buffers and of its output back to one;
//! every later call fills those buffers, replays the graph and waits for it once.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use cudarc::driver::{result as drv, sys, PinnedHostSlice};

use super::buf::{Dtype, GpuBuf, Pool};
use super::{Cuda, Graph, Staged};
use crate::backend::{Backend, Forward};

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

impl Cuda {
    /// The first call for a `key` runs `f` once to fill a private pool (and the plan and array
    /// caches), then captures it; every call copies the inputs in, launches the graph and copies
    /// the output back.
    pub(super) fn run_captured(
        &self,
        key: &str,
        inputs: &[&[f32]],
        f: &Forward<GpuBuf>,
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
            g.staged.inputs.len() == inputs.len(),
            "graph {key}: {} inputs for {}",
            inputs.len(),
            g.staged.inputs.len()
        );
        for (&(ptr, len), x) in g.staged.inputs.iter().zip(inputs) {
            ensure!(
                len == x.len(),
                "graph {key}: an input of {} values where it was captured with {len}",
                x.len()
            );
            // SAFETY: a page-locked buffer of `len` f32s that the graph owns; the stream is idle
            // (every launch ends with a wait), so no copy reads it now.
            unsafe { std::slice::from_raw_parts_mut(ptr, len) }.copy_from_slice(x);
        }
        self.bind()?;
        g.graph
            .launch()
            .with_context(|| format!("launching the CUDA graph of {key}"))?;
        self.counters.graph_launches.fetch_add(1, Ordering::Relaxed);
        // The forward's one wait: the graph's last node copies the output to the host.
        self.sync()?;
        let (ptr, len) = g.staged.output;
        // SAFETY: the graph's page-locked output buffer, written by the launch just waited for.
        Ok(unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec())
    }

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
        let (mut settled, mut out_len) = (false, 0);
        for _ in 0..4 {
            let before = pool.snapshot();
            out_len = f(&ins)?.len();
            if pool.snapshot() == before {
                settled = true;
                break;
            }
        }
        ensure!(settled, "the buffer pool did not settle in 4 runs");
        let (pinned, staged) = self.pinned(inputs, out_len)?;
        self.sync()?;
        pool.freeze(true);
        self.capturing.store(true, Ordering::Relaxed);
        self.stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .context("cuStreamBeginCapture")?;
        let out = self.captured_forward(&ins, &staged, f);
        let graph = self.stream.end_capture(sys::CUgraphInstantiate_flags(0));
        let ((), graph) = (
            out?,
            graph
                .context("cuStreamEndCapture")?
                .context("the capture recorded nothing")?,
        );
        Ok(Graph {
            graph,
            _pinned: pinned,
            staged,
            _pool: pool,
        })
    }

    /// Page-locked host buffers for a graph's inputs (filled with `inputs`) and its output of
    /// `out_len` values. Not write-combined (cudarc's default): the host reads the output back.
    fn pinned(
        &self,
        inputs: &[&[f32]],
        out_len: usize,
    ) -> Result<(Vec<PinnedHostSlice<f32>>, Staged)> {
        let ctx = self.stream.context();
        let mut pinned = Vec::with_capacity(inputs.len() + 1);
        let mut staged = Staged {
            inputs: Vec::with_capacity(inputs.len()),
            output: (std::ptr::null(), out_len),
        };
        for (i, len) in inputs.iter().map(|x| x.len()).chain([out_len]).enumerate() {
            // SAFETY: f32 has no invalid bit patterns; each buffer is written before it is read.
            let mut p = unsafe { ctx.alloc_pinned_with_flags::<f32>(len, 0) }
                .context("page-locked host memory for a CUDA graph")?;
            let ptr = p.as_mut_ptr()?;
            match inputs.get(i) {
                Some(x) => {
                    // SAFETY: `p` holds `len` = x.len() values and nothing reads it yet.
                    unsafe { std::slice::from_raw_parts_mut(ptr, len) }.copy_from_slice(x);
                    staged.inputs.push((ptr, len));
                }
                None => staged.output = (ptr, len),
            }
            pinned.push(p);
        }
        Ok((pinned, staged))
    }

    /// The captured work: the inputs copied in from their page-locked buffers, `f`, and its
    /// output copied out to its own. Copies between device and page-locked memory are recorded as
    /// graph nodes that read and write those host buffers at each launch.
    fn captured_forward(&self, ins: &[GpuBuf], staged: &Staged, f: &Forward<GpuBuf>) -> Result<()> {
        for (buf, &(ptr, len)) in ins.iter().zip(&staged.inputs) {
            // SAFETY: the page-locked buffer of `len` f32s, as many as `buf` holds; ordered on
            // our stream.
            unsafe {
                let host = std::slice::from_raw_parts(ptr, len);
                drv::memcpy_htod_async(buf.ptr(), host, self.stream.cu_stream())
            }
            .context("copy of a graph input")?;
        }
        let out = f(ins)?;
        let (ptr, len) = staged.output;
        ensure!(
            out.dtype() == Dtype::F32 && out.len() == len,
            "the captured forward gave {} {:?} values, its runs before {len} f32",
            out.len(),
            out.dtype()
        );
        // SAFETY: the page-locked output buffer holds exactly the output's values; ordered on our
        // stream.
        unsafe {
            let host = std::slice::from_raw_parts_mut(ptr as *mut f32, len);
            drv::memcpy_dtoh_async(host, out.ptr(), self.stream.cu_stream())
        }
        .context("copy of the graph's output")
    }
}
