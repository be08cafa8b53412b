//! CUDA graphs: the first call of a forward fills a private pool and is captured once; every
//! later call copies its inputs in, replays the graph and copies the output back.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use cudarc::driver::sys;

use super::buf::{GpuBuf, Pool};
use super::{Cuda, Graph};
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
