//! The kernels of the CPU products (gemm.rs): up to [`MR`] rows of a left operand, read through
//! any strides, times one packed panel of [`NR`] columns, accumulated in place. AVX-512, AVX2+FMA
//! and a scalar twin compute every element as the same chain of fused multiply-adds over k, so
//! all three give the same bits (tests/ops/op_tile.rs).

/// Columns per packed panel (two AVX-512 vectors).
pub const NR: usize = 32;
/// Rows per kernel call: 12 × 32 accumulators fill 24 of AVX-512's 32 vector registers.
pub const MR: usize = 12;

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

/// `acc[r] += Σ_k a[r·rs + k·cs] · panel[k·NR ..]` in increasing k, for the rows of `acc` (at
/// most MR).
pub fn tile(a: &[f32], (rs, cs): (usize, usize), k: usize, panel: &[f32], acc: &mut [[f32; NR]]) {
    let rows = acc.len();
    assert!(rows <= MR && panel.len() >= k * NR);
    if rows == 0 || k == 0 {
        return;
    }
    assert!(
        a.len() > (rows - 1) * rs + (k - 1) * cs,
        "gemm: lhs tile out of bounds"
    );
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
fn tile_scalar(
    a: &[f32],
    (rs, cs): (usize, usize),
    k: usize,
    panel: &[f32],
    acc: &mut [[f32; NR]],
) {
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
unsafe fn tile_avx512(
    a: *const f32,
    s: (usize, usize),
    k: usize,
    p: *const f32,
    acc: &mut [[f32; NR]],
) {
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
unsafe fn tile_avx2(
    a: *const f32,
    s: (usize, usize),
    k: usize,
    p: *const f32,
    acc: &mut [[f32; NR]],
) {
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
