//! The [`Backend`] trait on the GPU: transfers on the backend's stream, products through
//! cuBLASLt ([`gemm`]), every other op a kernel family of its own module.

use std::sync::atomic::Ordering;

use anyhow::{bail, ensure, Context, Result};
use cudarc::driver::result as drv;

use super::buf::{Dtype, GpuBuf};
use super::gemm::{self, Epilogue};
use super::{act, attention, conv, elementwise, embed, norm, pool, standin, Cuda, CudaOptions};
use crate::backend::cpu::act::Side;
use crate::backend::{Backend, Cols, Forward, Nchw, Pool, Precision, Window};

impl Cuda {
    /// `x` as the left operand of a product with `w`: a bf16 copy for a bf16 weight, the TF32
    /// split of a 3xTF32 product's, when `x` is f32.
    fn as_operand_of(&self, x: &GpuBuf, w: &GpuBuf, k: usize) -> Result<Option<GpuBuf>> {
        match (x.dtype(), w.dtype()) {
            (a, b) if a == b => Ok(None),
            (Dtype::F32, Dtype::Bf16) => Ok(Some(self.cast(x, Dtype::Bf16)?)),
            (Dtype::F32, Dtype::Tf32x3) => Ok(Some(act::split_tf32(self, x, k)?)),
            (a, b) => bail!("linear: x is {a:?}, the weight {b:?}"),
        }
    }

    /// x (M, K) · wᵀ (w: (N, K)) with the optional bias b (N) through the epilogue, written as
    /// `out`; an empty K is done on the host.
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
        // A split operand stores each value as three.
        let stored = |b: &GpuBuf| if b.dtype() == Dtype::Tf32x3 { 3 } else { 1 };
        ensure!(
            x.len() == m * k * stored(x) && w.len() == n * k * stored(w),
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
        let cast = self.as_operand_of(x, w, k)?;
        // A 3xTF32 product is one TF32 product over the 3K stored columns.
        let mkn = (m, k * stored(w), n);
        gemm::matmul(self, cast.as_ref().unwrap_or(x), w, b, mkn, epi, out)
    }
}

impl Backend for Cuda {
    type Buf = GpuBuf;

    fn name(&self) -> String {
        format!("{} [{:?}]", self.label, self.precision)
    }

    /// Every op has its kernels. With the test-only `fault-injection` feature,
    /// `SITDIV_FAULT_UNSUPPORTED=group_norm,…` hides ops, so that the tests see a job that needs
    /// one refuse before its first unit.
    fn supports(&self, _op: crate::backend::Op) -> bool {
        #[cfg(feature = "fault-injection")]
        if let Ok(hidden) = std::env::var("SITDIV_FAULT_UNSUPPORTED") {
            return !hidden.split(',').any(|n| n == _op.name());
        }
        true
    }

    /// The same device opened again: its own stream (graphs are captured per thread, so the
    /// two stages' work never mixes), pools and cuBLAS/cuBLASLt handles.
    fn runs(&self, _precision: Precision) -> bool {
        true
    }

    fn companion(&self, precision: Precision) -> Result<Self> {
        Cuda::with_options(
            self.ordinal,
            CudaOptions {
                precision,
                ..self.options
            },
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
        self.bind()?;
        self.counters.host_syncs.fetch_add(1, Ordering::Relaxed);
        // A copy to pageable memory returns only once it is done (CUDA driver API, memcpy
        // semantics): that is the host's wait for the stream, and the only one a forward needs.
        match buf.dtype() {
            // A split operand comes back as its stored parts.
            Dtype::F32 | Dtype::Tf32x3 => {
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

    /// The conditioning's products (see `Backend::upload_precise_weight`) one step nearer fp32
    /// than the others: 3xTF32 under tf32, TF32 (f32 weights) under bf16. Their errors reach
    /// every token of every block, and they cost under 1 % of a forward.
    fn upload_precise_weight(&self, w: &[f32], k: usize) -> Result<Self::Buf> {
        if self.precision != Precision::Tf32 {
            return self.upload(w);
        }
        let parts = crate::backend::cpu::act::split_tf32(w, k, Side::Right);
        let buf = self.alloc(parts.len(), Dtype::Tf32x3)?;
        self.copy_to_device(&buf, bytemuck::cast_slice(&parts))?;
        Ok(buf)
    }

    fn operand(&self, x: Self::Buf, k: usize) -> Result<Self::Buf> {
        if self.precision != Precision::Tf32 {
            return Ok(x);
        }
        act::split_tf32(self, &x, k)
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

    fn gelu_erf(&self, x: &mut Self::Buf) -> Result<()> {
        act::gelu_erf(self, x)
    }

    fn quick_gelu(&self, x: &mut Self::Buf) -> Result<()> {
        act::quick_gelu(self, x)
    }

    fn relu(&self, x: &mut Self::Buf) -> Result<()> {
        act::relu(self, x)
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

    fn layer_norm_affine(
        &self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        rows: usize,
        d: usize,
        eps: f32,
    ) -> Result<Self::Buf> {
        norm::layer_norm_affine(self, x, (gamma, beta), rows, d, eps)
    }

    fn conv2d(
        &self,
        x: &Self::Buf,
        dims: Nchw,
        w: &Self::Buf,
        b: &Self::Buf,
        co: usize,
        win: Window,
        relu: bool,
    ) -> Result<Self::Buf> {
        conv::conv2d(self, x, dims, w, b, co, win, relu)
    }

    fn pool2d(&self, x: &Self::Buf, dims: Nchw, win: Window, p: Pool) -> Result<Self::Buf> {
        pool::pool2d(self, x, dims, win, p)
    }

    fn concat_channels(
        &self,
        parts: &[(&Self::Buf, usize)],
        n: usize,
        hw: usize,
    ) -> Result<Self::Buf> {
        pool::concat_channels(self, parts, n, hw)
    }

    fn group_norm(
        &self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        n: usize,
        c: usize,
        hw: usize,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> Result<Self::Buf> {
        norm::group_norm(self, x, (gamma, beta), (n, c, hw), groups, eps, silu)
    }

    fn upsample_nearest2x(
        &self,
        x: &Self::Buf,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<Self::Buf> {
        conv::upsample_nearest2x(self, x, (n, c, h, w))
    }

    fn transpose(&self, x: &Self::Buf, b: usize, r: usize, c: usize) -> Result<Self::Buf> {
        embed::transpose(self, x, b, r, c)
    }

    /// Captured once per key into a CUDA graph, then replayed (graph.rs).
    fn run_graph(&self, key: &str, inputs: &[&[f32]], f: &Forward<Self::Buf>) -> Result<Vec<f32>> {
        self.run_captured(key, inputs, f)
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
