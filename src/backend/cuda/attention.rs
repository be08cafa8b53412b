//! Softmax attention as two batched tensor-core products around a row softmax: per (image, head)
//! S = Q·Kᵀ/√Dh (T × T), P = softmax(S), O = P·V, read straight from the fused qkv (B, T, 3·H·Dh)
//! and written straight into (B, T, H·Dh), through arrays of operand addresses. CPU twin:
//! src/backend/cpu/attention.rs; test: tests/ops/op_attention.rs.

use anyhow::{ensure, Context, Result};

use super::buf::{Dtype, GpuBuf};
use super::gemm::{self, Batched};
use super::launch::{Dims, SOFTMAX_THREADS};
use super::{ArrayKey, Cuda};

/// Scores of one chunk stay under this many bytes (1 GiB): larger batches run in chunks of images.
const SCORES_BYTES: usize = 1 << 30;

fn operand_arrays(be: &Cuda, key: ArrayKey) -> Result<u64> {
    let mut cache = be
        .attn_arrays
        .lock()
        .map_err(|_| anyhow::anyhow!("attention cache poisoned"))?;
    if let Some(buf) = cache.get(&key) {
        return Ok(buf.ptr());
    }
    ensure!(
        !be.capturing(),
        "attention: new operand arrays inside a captured forward (no warm-up ran)"
    );
    let ArrayKey {
        qkv,
        out,
        s,
        p,
        images,
        t,
        heads,
        dh,
        es,
    } = key;
    let (d, bh) = (heads * dh, images * heads);
    let mut host = vec![0u64; 6 * bh];
    for i in 0..bh {
        let (img, h) = (i / heads, i % heads);
        let row0 = (img * t * 3 * d + h * dh) as u64;
        host[i] = qkv + (row0 + d as u64) * es as u64; // K
        host[bh + i] = qkv + row0 * es as u64; // Q
        host[2 * bh + i] = s + (i * t * t * 4) as u64; // S (f32)
        host[3 * bh + i] = qkv + (row0 + 2 * d as u64) * es as u64; // V
        host[4 * bh + i] = p + (i * t * t * es) as u64; // P
        host[5 * bh + i] = out + ((img * t * d + h * dh) * es) as u64; // O
    }
    // Raw addresses: a f32 buffer of twice the count.
    let buf = be.persistent.alloc(2 * host.len(), Dtype::F32)?;
    be.copy_to_device(&buf, bytemuck::cast_slice(&host))?;
    if cache.len() > 256 {
        cache.clear();
    }
    let ptr = buf.ptr();
    cache.insert(key, buf);
    Ok(ptr)
}

/// One chunk of `images` images: where its operand arrays live and the sizes of its products.
struct Chunk {
    /// Six arrays of `bh` operand addresses each: K, Q, S, V, P, O (see [`ArrayKey`]).
    arrays: u64,
    /// images · heads products of each kind.
    bh: usize,
    t: usize,
    dh: usize,
    /// heads · head_dim.
    d: usize,
    operand: Dtype,
}

impl Chunk {
    /// The address of the i-th array of `bh` pointers.
    fn at(&self, i: usize) -> u64 {
        self.arrays + (i * self.bh * 8) as u64
    }

    /// Sᵀ (column-major T × T, i.e. S row-major) = K · Qᵀ · scale: m = n = T, k = Dh.
    fn scores(&self, be: &Cuda, scale: f32) -> Result<()> {
        let (t, d) = (self.t, self.d);
        gemm::batched(
            be,
            &Batched {
                trans: (true, false),
                mnk: (t, t, self.dh),
                alpha: scale,
                a: (self.at(0), 3 * d),
                b: (self.at(1), 3 * d),
                c: (self.at(2), t),
                types: (self.operand, Dtype::F32),
                batch: self.bh,
            },
        )
    }

    /// P = softmax(S) row by row (bh · T rows of T), into `p` (which may be `s` itself).
    fn softmax(&self, be: &Cuda, s: &GpuBuf, p: &GpuBuf) -> Result<()> {
        let rows = self.bh * self.t;
        let blocks = rows.div_ceil((SOFTMAX_THREADS / 32) as usize);
        ensure!(
            blocks <= i32::MAX as usize,
            "attention: {rows} score rows exceed the grid"
        );
        let k = if self.operand == Dtype::F32 {
            &be.k.softmax_rows
        } else {
            &be.k.softmax_rows_bf16
        };
        be.launch(k)
            .buf(s)
            .buf(p)
            .long(rows)
            .int(self.t, "T")
            .run(Dims {
                grid: (blocks as u32, 1, 1),
                block: (SOFTMAX_THREADS, 1, 1),
                smem: 0,
            })
            .context("attention softmax")?;
        be.done("softmax_rows")
    }

    /// Oᵀ (column-major Dh × T, ld D) = Vᵀ · Pᵀ: m = Dh, n = T, k = T.
    fn output(&self, be: &Cuda) -> Result<()> {
        let (t, d) = (self.t, self.d);
        gemm::batched(
            be,
            &Batched {
                trans: (false, false),
                mnk: (self.dh, t, t),
                alpha: 1.0,
                a: (self.at(3), 3 * d),
                b: (self.at(4), t),
                c: (self.at(5), d),
                types: (self.operand, self.operand),
                batch: self.bh,
            },
        )
    }
}

/// qkv (B, T, 3·H·Dh) → (B, T, H·Dh) in the operand type, in chunks of images whose scores fit
/// [`SCORES_BYTES`].
pub fn attention(
    be: &Cuda,
    qkv: &GpuBuf,
    b: usize,
    t: usize,
    heads: usize,
    dh: usize,
) -> Result<GpuBuf> {
    ensure!(
        qkv.len() == b * t * 3 * heads * dh,
        "attention: qkv has {} elements for ({b}, {t}, 3·{heads}·{dh})",
        qkv.len()
    );
    let operand = be.operand_dtype();
    let cast;
    let qkv = if qkv.dtype() == operand {
        qkv
    } else {
        cast = be.cast(qkv, operand)?;
        &cast
    };
    let d = heads * dh;
    let out = be.alloc(b * t * d, operand)?; // (B, T, D)
    if out.is_empty() {
        return Ok(out);
    }
    let es = operand.size();
    let per_image = heads * t * t * 4;
    let chunk = (SCORES_BYTES / per_image.max(1)).clamp(1, b);
    let scale = 1.0 / (dh as f32).sqrt();
    let mut img0 = 0;
    while img0 < b {
        let images = chunk.min(b - img0);
        let bh = images * heads;
        let s = be.alloc(bh * t * t, Dtype::F32)?; // (bh, T, T)

        // f32 operands take the softmax in place; bf16 ones get P in bf16 for the second product.
        let p_own = if operand == Dtype::F32 {
            None
        } else {
            Some(be.alloc(bh * t * t, operand)?)
        };
        let p = p_own.as_ref().unwrap_or(&s);
        let key = ArrayKey {
            qkv: qkv.ptr() + (img0 * t * 3 * d * es) as u64,
            out: out.ptr() + (img0 * t * d * es) as u64,
            s: s.ptr(),
            p: p.ptr(),
            images,
            t,
            heads,
            dh,
            es,
        };
        let c = Chunk {
            arrays: operand_arrays(be, key)?,
            bh,
            t,
            dh,
            d,
            operand,
        };
        c.scores(be, scale)?;
        c.softmax(be, &s, p)?;
        c.output(be)?;
        img0 += images;
    }
    Ok(out)
}
