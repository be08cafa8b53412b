//! Matrix products with one arithmetic for every shape: each output element is a single chain of
//! fused multiply-adds over k in increasing order, started from zero, then scaled or biased once.
//!
//! That one rule makes the bits independent of everything but the operands: the batch size (a
//! row computed alone equals the same row inside any batch), the thread count, the blocking, the
//! operand orientation and the instruction set — the AVX-512 and AVX2 kernels and the scalar
//! `mul_add` loop all round identically, since an FMA rounds once whatever computes it.
//!
//! A kernel multiplies up to [`MR`] rows of the left operand, read in place through any strides,
//! by one panel of the right operand: [`NR`] columns packed k-major, which it streams with
//! aligned vector loads. `F.linear` packs the smaller of its operands (one transposing pass) and
//! reads the other in place: Y = X·Wᵀ, or Yᵀ = W·Xᵀ when there are fewer rows than outputs.
//! Attention packs its keys and values, the convolutions an implicit im2col (conv.rs).

use rayon::prelude::*;

use super::tile::tile;
pub use super::tile::{force_isa, isa, Isa, MR, NR};

/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// A strided matrix view: element (i, j) is at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl View<'_> {
    /// Panics unless the view covers the `r × c` elements its strides address (a caller bug).
    fn check(&self, r: usize, c: usize, what: &str) {
        let last = if r == 0 || c == 0 {
            0
        } else {
            (r - 1) * self.rs + (c - 1) * self.cs + 1
        };
        assert!(self.data.len() >= last, "gemm: {what} view out of bounds");
    }
}

/// A zeroed f32 buffer whose first element sits on a 64-byte boundary, so that the kernels'
/// vector loads never straddle two cache lines.
pub struct Aligned {
    v: Vec<f32>,
    off: usize,
}

impl Aligned {
    pub fn zeroed(len: usize) -> Self {
        let v = vec![0f32; len + 15];
        let off = v.as_ptr().align_offset(64).min(15);
        Aligned { v, off }
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.v[self.off..]
    }

    fn as_slice(&self) -> &[f32] {
        &self.v[self.off..]
    }
}

/// A right operand B (K, N) packed into panels of [`NR`] columns: panel p holds, for k = 0..K,
/// the row `B[k, p·NR ..][..NR]`, zero past column N. Padding columns are computed and dropped.
pub struct Panels {
    data: Aligned,
    pub k: usize,
    pub n: usize,
}

impl Panels {
    pub fn count(&self) -> usize {
        self.n.div_ceil(NR)
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data.as_slice()[p * self.k * NR..][..self.k * NR]
    }

    /// Packs the view `b` (K, N).
    pub fn pack(b: View, k: usize, n: usize, threaded: bool) -> Self {
        b.check(k, n, "rhs");
        let count = n.div_ceil(NR);
        let mut data = Aligned::zeroed(count * k * NR);
        if k > 0 && count > 0 {
            let fill =
                |p: usize, panel: &mut [f32]| pack_panel(b, k, (p * NR, NR.min(n - p * NR)), panel);
            let all = &mut data.as_mut_slice()[..count * k * NR];
            if threaded && count > 1 && count * k * NR >= 1 << 16 {
                all.par_chunks_mut(k * NR)
                    .enumerate()
                    .for_each(|(p, d)| fill(p, d));
            } else {
                all.chunks_mut(k * NR)
                    .enumerate()
                    .for_each(|(p, d)| fill(p, d));
            }
        }
        Panels { data, k, n }
    }
}

/// Columns `j0 .. j0 + w` of the view `b` (K, ·) into one panel (K, NR).
fn pack_panel(b: View, k: usize, (j0, w): (usize, usize), panel: &mut [f32]) {
    if b.cs == 1 {
        for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
            row[..w].copy_from_slice(&b.data[kk * b.rs + j0..][..w]);
        }
        return;
    }
    // A transposition (the usual case: rows of an activation become panel columns). Blocks of
    // 16 k read one cache line per column and write 16 panel rows that stay in L1.
    let mut k0 = 0;
    while k0 < k {
        let kl = 16.min(k - k0);
        for j in 0..w {
            let src = &b.data[(j0 + j) * b.cs + k0 * b.rs..];
            for dk in 0..kl {
                panel[(k0 + dk) * NR + j] = src[dk * b.rs];
            }
        }
        k0 += kl;
    }
}

/// Where a product's results go: `store(i0, j0, acc, w)` receives rows `i0 .. i0 + acc.len()`,
/// columns `j0 .. j0 + w` of the product (`acc[r][..w]`), each element exactly once, from any
/// thread.
pub trait Store: Sync {
    fn store(&self, i0: usize, j0: usize, acc: &mut [[f32; NR]], w: usize);
}

/// `A (M, K) · B (K, N)` with A read in place and B packed, every element handed to `out` once.
/// Work is split over the threads by shape and thread count; no split changes a bit.
pub fn product(a: View, m: usize, b: &Panels, threaded: bool, out: &impl Store) {
    let k = b.k;
    a.check(m, k, "lhs");
    let panels = b.count();
    if m == 0 || panels == 0 {
        return;
    }
    // Jobs: runs of MR-row blocks × groups of panels, about four per thread so that uneven jobs
    // even out, each panel reused from cache by several row blocks.
    let threads = if threaded && m * b.n * k >= PARALLEL_MIN_MACS {
        rayon::current_num_threads()
    } else {
        1
    };
    let want = 4 * threads;
    let blocks = m.div_ceil(MR);
    let blocks_per_job = if threads == 1 {
        blocks
    } else {
        blocks.div_ceil(want).max(4).min(blocks)
    };
    let row_jobs = blocks.div_ceil(blocks_per_job);
    let panels_per_job = if threads == 1 {
        panels
    } else {
        panels.div_ceil(want.div_ceil(row_jobs)).max(1)
    };
    let panel_jobs = panels.div_ceil(panels_per_job);
    let job = |jb: usize| {
        let (rj, pj) = (jb / panel_jobs, jb % panel_jobs);
        let r0 = rj * blocks_per_job * MR;
        let r1 = (r0 + blocks_per_job * MR).min(m);
        for p in pj * panels_per_job..((pj + 1) * panels_per_job).min(panels) {
            let (j0, w) = (p * NR, NR.min(b.n - p * NR));
            rows_times_panel(a, r0..r1, b.panel(p), k, (j0, w), out);
        }
    };
    let jobs = row_jobs * panel_jobs;
    if jobs == 1 {
        job(0);
    } else {
        (0..jobs).into_par_iter().for_each(job);
    }
}

/// Rows `rows` of A (·, K) times one packed panel (K, NR) holding columns `j0 .. j0 + w`, handed
/// to `out`, one tile of [`MR`] rows at a time.
pub fn rows_times_panel(
    a: View,
    rows: std::ops::Range<usize>,
    panel: &[f32],
    k: usize,
    (j0, w): (usize, usize),
    out: &impl Store,
) {
    let mut i = rows.start;
    while i < rows.end {
        let r = MR.min(rows.end - i);
        let mut acc = [[0f32; NR]; MR];
        tile(&a.data[i * a.rs..], (a.rs, a.cs), k, panel, &mut acc[..r]);
        out.store(i, j0, &mut acc[..r], w);
        i += r;
    }
}

/// Base pointer of an output that threads fill in disjoint elements.
#[derive(Clone, Copy)]
pub struct OutPtr(pub *mut f32);
// SAFETY: every user writes each element from one thread only (see `Store`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper).
    pub fn get(self) -> *mut f32 {
        self.0
    }
}

/// A row-major output C with leading dimension `ld`, holding the product (`transposed: false`)
/// or its transpose. `epi(i, j0, run)` finishes each run of the product's row `i` from column
/// `j0` (in the product's coordinates, so that an activation sees runs of up to NR values);
/// with `residual`, C's old value is then added to each element as it is written.
pub struct RowMajor<F> {
    pub ptr: OutPtr,
    pub ld: usize,
    pub transposed: bool,
    pub residual: bool,
    pub epi: F,
}

impl<F: Fn(usize, usize, &mut [f32]) + Sync> Store for RowMajor<F> {
    fn store(&self, i0: usize, j0: usize, acc: &mut [[f32; NR]], w: usize) {
        for (r, row) in acc.iter_mut().enumerate() {
            (self.epi)(i0 + r, j0, &mut row[..w]);
        }
        // Runs of C: (row, first column, values).
        let put = |i: usize, j: usize, seg: &mut [f32]| {
            // SAFETY: `product` hands out each element once, so this run of C is this thread's
            // alone; the owner sized C for its rows.
            unsafe {
                let dst = self.ptr.get().add(i * self.ld + j);
                if self.residual {
                    let old = std::slice::from_raw_parts(dst, seg.len());
                    seg.iter_mut().zip(old).for_each(|(v, &o)| *v = o + *v);
                }
                std::ptr::copy_nonoverlapping(seg.as_ptr(), dst, seg.len())
            };
        };
        if self.transposed {
            let rows = acc.len();
            let mut seg = [0f32; MR];
            for j in 0..w {
                for (s, row) in seg.iter_mut().zip(acc.iter()) {
                    *s = row[j];
                }
                put(j0 + j, i0, &mut seg[..rows]);
            }
        } else {
            for (r, row) in acc.iter_mut().enumerate() {
                put(i0 + r, j0, &mut row[..w]);
            }
        }
    }
}

/// `dst (M, N) = scale · (lhs (M, K) · rhs (K, N))`, row-major and contiguous.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    dst: &mut [f32],
    lhs: View,
    rhs: View,
    m: usize,
    n: usize,
    k: usize,
    scale: f32,
    threaded: bool,
) {
    assert!(dst.len() >= m * n, "matmul: dst too small");
    let b = Panels::pack(rhs, k, n, threaded);
    let out = RowMajor {
        ptr: OutPtr(dst.as_mut_ptr()),
        ld: n,
        transposed: false,
        residual: false,
        epi: |_: usize, _: usize, v: &mut [f32]| {
            if scale != 1.0 {
                v.iter_mut().for_each(|x| *x *= scale);
            }
        },
    };
    product(lhs, m, &b, threaded, &out);
}

/// `F.linear(x, w, b)`: x (M, K), w (N, K), b (N) → (M, N), each element the chain plus its bias.
pub fn linear(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    linear_then(x, w, b, m, k, n, |_| {})
}

/// [`linear`] with `act` applied to each finished run of an output row (fused activations).
pub fn linear_then(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
    act: impl Fn(&mut [f32]) + Sync,
) -> Vec<f32> {
    let mut y: Vec<f32> = Vec::with_capacity(m * n);
    linear_raw(OutPtr(y.as_mut_ptr()), false, x, w, b, (m, k, n), act);
    // SAFETY: the product handed every one of the M·N elements to its store, which wrote it.
    unsafe { y.set_len(m * n) };
    y
}

/// `y += F.linear(x, w, b)`, y (M, N): a residual branch's last product, added as it is stored.
pub fn linear_residual(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) {
    assert!(y.len() >= m * n, "linear_residual: output size");
    linear_raw(OutPtr(y.as_mut_ptr()), true, x, w, b, (m, k, n), |_| {});
}

/// The product of [`linear_then`] / [`linear_residual`] into the (M, N) buffer at `y`, which
/// holds the residual when `residual` (and may be uninitialised otherwise).
fn linear_raw(
    y: OutPtr,
    residual: bool,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    (m, k, n): (usize, usize, usize),
    act: impl Fn(&mut [f32]) + Sync,
) {
    assert!(
        x.len() >= m * k && w.len() >= n * k && b.is_none_or(|b| b.len() == n),
        "linear: operand sizes"
    );
    // Pack the smaller operand (a transposition): Y = X·Wᵀ with wᵀ packed, or Yᵀ = W·Xᵀ with xᵀ
    // packed. The bits are the same either way.
    let transposed = m < n;
    // Bias then activation, on runs of the product: a run of one output row (its bias varies
    // along it), or of one output feature over tokens when transposed.
    let epi = |i: usize, j0: usize, v: &mut [f32]| {
        if let Some(b) = b {
            if transposed {
                v.iter_mut().for_each(|x| *x += b[i]);
            } else {
                v.iter_mut().zip(&b[j0..]).for_each(|(x, bb)| *x += bb);
            }
        }
        act(v);
    };
    let (xv, wv) = (
        View {
            data: x,
            rs: k,
            cs: 1,
        },
        View {
            data: w,
            rs: k,
            cs: 1,
        },
    );
    let (lhs, rows, packed) = if transposed { (wv, n, xv) } else { (xv, m, wv) };
    let cols = if transposed { m } else { n };
    let panels = Panels::pack(
        View {
            data: packed.data,
            rs: 1,
            cs: k,
        },
        k,
        cols,
        true,
    );
    let out = RowMajor {
        ptr: y,
        ld: n,
        transposed,
        residual,
        epi,
    };
    product(lhs, rows, &panels, true, &out);
}
