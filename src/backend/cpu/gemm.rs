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
//! aligned vector loads. `F.linear` computes the transposed product, Yᵀ = W·Xᵀ: the weight rows
//! are the left operand (never copied) and the activations are packed, which costs one pass over
//! the input; attention packs its keys and values, the convolutions an implicit im2col (conv.rs).

use rayon::prelude::*;

/// Columns per packed panel (two AVX-512 vectors).
pub const NR: usize = 32;
/// Rows per kernel call: 12 × 32 accumulators fill 24 of AVX-512's 32 vector registers.
pub const MR: usize = 12;
/// Depth of one pass over a panel: 128 × 32 floats (16 KiB) stay in the L1 cache.
const KC: usize = 128;
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

/// The instruction set of the kernels. Every one gives the same bits; only the speed differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
}

/// 0: the best the CPU has; otherwise 1 + the forced [`Isa`].
static FORCED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Caps the kernels' instruction set (`None`: the best the CPU has). Results are identical
/// either way; tests use it to compare the kernels, benchmarks to time them.
pub fn force_isa(isa: Option<Isa>) {
    let v = isa.map_or(0, |i| i as u8 + 1);
    FORCED.store(v, std::sync::atomic::Ordering::Relaxed);
}

/// The instruction set the kernels use now.
pub fn isa() -> Isa {
    let best = best_isa();
    match FORCED.load(std::sync::atomic::Ordering::Relaxed) {
        1 => Isa::Scalar,
        2 => Isa::Avx2.min(best),
        _ => best,
    }
}

fn best_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Scalar
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
            let fill = |p: usize, panel: &mut [f32]| pack_panel(b, k, (p * NR, NR.min(n - p * NR)), panel);
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
/// to `out`. The k range is walked in steps of [`KC`] so that the panel's slice stays in the L1
/// cache across the row blocks; partial sums wait in memory between steps, which is exact.
pub fn rows_times_panel(
    a: View,
    rows: std::ops::Range<usize>,
    panel: &[f32],
    k: usize,
    (j0, w): (usize, usize),
    out: &impl Store,
) {
    let blocks = rows.len().div_ceil(MR);
    let block = |q: usize| {
        let i = rows.start + q * MR;
        (i, MR.min(rows.end - i))
    };
    let mut acc = vec![[[0f32; NR]; MR]; blocks];
    let mut k0 = 0;
    while k0 < k {
        let kl = KC.min(k - k0);
        for (q, c) in acc.iter_mut().enumerate() {
            let (i, r) = block(q);
            let at = i * a.rs + k0 * a.cs;
            tile(&a.data[at..], (a.rs, a.cs), kl, &panel[k0 * NR..], &mut c[..r]);
        }
        k0 += kl;
    }
    for (q, c) in acc.iter_mut().enumerate() {
        let (i, r) = block(q);
        out.store(i, j0, &mut c[..r], w);
    }
}

/// `acc[r] += Σ_k a[r·rs + k·cs] · panel[k·NR ..]` in increasing k, for the rows of `acc` (at
/// most MR).
fn tile(a: &[f32], (rs, cs): (usize, usize), k: usize, panel: &[f32], acc: &mut [[f32; NR]]) {
    let rows = acc.len();
    assert!(rows <= MR && panel.len() >= k * NR);
    if rows == 0 || k == 0 {
        return;
    }
    assert!(a.len() > (rows - 1) * rs + (k - 1) * cs, "gemm: lhs tile out of bounds");
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F (isa() checks); the asserts bound every read.
        Isa::Avx512 => unsafe { tile_avx512(a.as_ptr(), (rs, cs), k, panel.as_ptr(), acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA (isa() checks); the asserts bound every read.
        Isa::Avx2 => unsafe { tile_avx2(a.as_ptr(), (rs, cs), k, panel.as_ptr(), acc) },
        _ => tile_scalar(a, (rs, cs), k, panel, acc),
    }
}

/// The CPU twin of the vector kernels, bit for bit.
fn tile_scalar(a: &[f32], (rs, cs): (usize, usize), k: usize, panel: &[f32], acc: &mut [[f32; NR]]) {
    for (r, row) in acc.iter_mut().enumerate() {
        for kk in 0..k {
            let av = a[r * rs + kk * cs];
            for (v, &bv) in row.iter_mut().zip(&panel[kk * NR..][..NR]) {
                *v = av.mul_add(bv, *v);
            }
        }
    }
}

/// A tile's rows dispatched to a kernel whose row count is a constant, so that its accumulators
/// stay in registers.
#[cfg(target_arch = "x86_64")]
macro_rules! by_rows {
    ($kernel:ident, $a:expr, $s:expr, $k:expr, $p:expr, $acc:expr, [$($r:literal)*]) => {
        match $acc.len() {
            $($r => $kernel::<$r>($a, $s, $k, $p, $acc),)*
            n => unreachable!("{n} rows in a tile"),
        }
    };
}

/// # Safety
/// AVX-512F present; `a` readable at r·rs + kk·cs for r < acc.len(), kk < k; `p` at k·NR.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(a: *const f32, s: (usize, usize), k: usize, p: *const f32, acc: &mut [[f32; NR]]) {
    by_rows!(k512, a, s, k, p, acc, [1 2 3 4 5 6 7 8 9 10 11 12]);
}

/// # Safety
/// See [`tile_avx512`]; R ≤ MR.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn k512<const R: usize>(
    a: *const f32,
    (rs, cs): (usize, usize),
    k: usize,
    p: *const f32,
    acc: &mut [[f32; NR]],
) {
    use std::arch::x86_64::*;
    let mut c = [[_mm512_setzero_ps(); 2]; R];
    for (cr, src) in c.iter_mut().zip(acc.iter()) {
        cr[0] = _mm512_loadu_ps(src.as_ptr());
        cr[1] = _mm512_loadu_ps(src.as_ptr().add(16));
    }
    for kk in 0..k {
        let (ap, pp) = (a.add(kk * cs), p.add(kk * NR));
        let b0 = _mm512_loadu_ps(pp);
        let b1 = _mm512_loadu_ps(pp.add(16));
        for (r, cr) in c.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*ap.add(r * rs));
            cr[0] = _mm512_fmadd_ps(av, b0, cr[0]);
            cr[1] = _mm512_fmadd_ps(av, b1, cr[1]);
        }
    }
    for (cr, out) in c.iter().zip(acc.iter_mut()) {
        _mm512_storeu_ps(out.as_mut_ptr(), cr[0]);
        _mm512_storeu_ps(out.as_mut_ptr().add(16), cr[1]);
    }
}

/// # Safety
/// AVX2 and FMA present; the bounds of [`tile_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(a: *const f32, s: (usize, usize), k: usize, p: *const f32, acc: &mut [[f32; NR]]) {
    // 16 vector registers: three rows of four vectors at a time.
    let mut r0 = 0;
    while r0 < acc.len() {
        let rows = 3.min(acc.len() - r0);
        let sub = &mut acc[r0..r0 + rows];
        by_rows!(k256, a.add(r0 * s.0), s, k, p, sub, [1 2 3]);
        r0 += rows;
    }
}

/// # Safety
/// See [`tile_avx2`]; R ≤ 3.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn k256<const R: usize>(
    a: *const f32,
    (rs, cs): (usize, usize),
    k: usize,
    p: *const f32,
    acc: &mut [[f32; NR]],
) {
    use std::arch::x86_64::*;
    let mut c = [[_mm256_setzero_ps(); 4]; R];
    for (cr, src) in c.iter_mut().zip(acc.iter()) {
        for (q, v) in cr.iter_mut().enumerate() {
            *v = _mm256_loadu_ps(src.as_ptr().add(8 * q));
        }
    }
    for kk in 0..k {
        let (ap, pp) = (a.add(kk * cs), p.add(kk * NR));
        let b = [
            _mm256_loadu_ps(pp),
            _mm256_loadu_ps(pp.add(8)),
            _mm256_loadu_ps(pp.add(16)),
            _mm256_loadu_ps(pp.add(24)),
        ];
        for (r, cr) in c.iter_mut().enumerate() {
            let av = _mm256_set1_ps(*ap.add(r * rs));
            for (v, bv) in cr.iter_mut().zip(b) {
                *v = _mm256_fmadd_ps(av, bv, *v);
            }
        }
    }
    for (cr, out) in c.iter().zip(acc.iter_mut()) {
        for (q, v) in cr.iter().enumerate() {
            _mm256_storeu_ps(out.as_mut_ptr().add(8 * q), *v);
        }
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
/// or its transpose. `epi(i, j0, seg)` finishes each run of C's row `i` from column `j0` before
/// it is written.
pub struct RowMajor<F> {
    pub ptr: OutPtr,
    pub ld: usize,
    pub transposed: bool,
    pub epi: F,
}

impl<F: Fn(usize, usize, &mut [f32]) + Sync> Store for RowMajor<F> {
    fn store(&self, i0: usize, j0: usize, acc: &mut [[f32; NR]], w: usize) {
        let put = |i: usize, j: usize, seg: &mut [f32]| {
            (self.epi)(i, j, seg);
            // SAFETY: `product` hands out each element once; the owner sized C for its rows.
            unsafe {
                std::ptr::copy_nonoverlapping(seg.as_ptr(), self.ptr.0.add(i * self.ld + j), seg.len())
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
    let epi = |i: usize, j0: usize, v: &mut [f32]| {
        if let Some(b) = b {
            v.iter_mut().zip(&b[j0..]).for_each(|(x, bb)| *x += bb);
        }
        act(v);
        if residual {
            // SAFETY: this run of row i is this thread's alone; read before it is overwritten.
            let old = unsafe { std::slice::from_raw_parts(y.get().add(i * n + j0), v.len()) };
            v.iter_mut().zip(old).for_each(|(x, &o)| *x = o + *x);
        }
    };
    let (xv, wv) = (View { data: x, rs: k, cs: 1 }, View { data: w, rs: k, cs: 1 });
    // Pack the smaller operand (a transposition): Y = X·Wᵀ with wᵀ packed, or Yᵀ = W·Xᵀ with xᵀ
    // packed. The bits are the same either way.
    let transposed = m < n;
    let (lhs, rows, packed) = if transposed { (wv, n, xv) } else { (xv, m, wv) };
    let cols = if transposed { m } else { n };
    let panels = Panels::pack(View { data: packed.data, rs: 1, cs: k }, k, cols, true);
    let out = RowMajor { ptr: y, ld: n, transposed, epi };
    product(lhs, rows, &panels, true, &out);
}
