//! Branch-free f32 `exp` and `tanh` that the compiler can vectorise: softmax and GELU apply them
//! to tens of millions of elements per forward, where a libm call per element dominates.
//! Accuracy (checked in tests/ops/op_math.rs): exp within 2 ulp, tanh within 5e-7 absolute.

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in two (Cody–Waite) so that n·LN2_HI is exact for |n| < 2^9.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
// 1.5·2^23: adding it rounds to the nearest integer in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// e^x for f32, with results flushed to 0 below e^-87.3 and saturated above e^88.7.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Minimax polynomial for e^r on [-ln2/2, ln2/2] (Cephes expf).
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001e-1, which is 0.5 in f32
    let e = (p * (r * r) + r) + 1.0;
    let ni = (t.to_bits() as i32) - (ROUND.to_bits() as i32);
    e * f32::from_bits(((ni + 127) << 23) as u32)
}

/// tanh(x) for f32: a 13/6 rational minimax approximation on [-7.9, 7.9], ±1 beyond.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    let xc = x.clamp(-CLAMP, CLAMP);
    let x2 = xc * xc;
    let mut p = -2.760_768_5e-16_f32;
    p = p * x2 + 2.000_188e-13;
    p = p * x2 - 8.604_672e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    p *= xc;
    let mut q = 1.198_258_4e-6_f32;
    q = q * x2 + 1.185_347_1e-4;
    q = q * x2 + 2.268_434_6e-3;
    q = q * x2 + 4.893_525e-3;
    let y = p / q;
    // Tiny inputs: tanh(x) = x to f32 precision; avoids the rational's relative error near 0.
    if xc.abs() < 4e-4 {
        xc
    } else {
        y
    }
}

/// Runs `f` inside a function compiled with AVX2 and FMA when the CPU has them, so the loops
/// inlined into it vectorise 8 lanes wide and `mul_add` is one instruction. Results are
/// bit-identical either way: Rust never contracts `a * b + c` into an FMA, `mul_add` rounds once
/// on every path, and every lane op is correctly rounded.
#[inline(always)]
pub fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `erfc(a)·e^{a²}` as a polynomial in s ∈ [−1, 1], s affine in t = 1/(1 + a/2) over a ∈ [0, 12]
/// (Chebyshev interpolation at 25 nodes in 40-digit arithmetic; relative error below 2e-15).
const ERFC_G: [f64; 25] = [
    0.32158541645431754,
    0.42951015904797024,
    0.20259563971817138,
    0.05015768919898234,
    -0.0007688560379239672,
    -0.003379424900038355,
    4.761879626555251e-05,
    0.00031150275738153565,
    -4.224006585838486e-05,
    -2.8235054902841208e-05,
    1.1180461804835701e-05,
    8.565985710614031e-07,
    -1.7804314874128008e-06,
    4.4384887714761375e-07,
    1.127006421959659e-07,
    -1.110802116187198e-07,
    2.6209265748940694e-08,
    7.258131717574007e-09,
    -7.843467137665258e-09,
    2.4780249393083366e-09,
    3.8840361838557466e-10,
    -7.28767323981073e-10,
    1.9046812996819318e-10,
    6.85343501718661e-11,
    -3.315513679129525e-11,
];
/// t at a = 12, where erfc is below 1e-63 and the GELU of the f32 input rounds to ±0.
const ERFC_T_LO: f64 = 1.0 / 7.0;

/// e^x in place for f64 x in [−708, 0], branch-free: Cody–Waite reduction, degree-13 Taylor
/// polynomial (error below 1e-16 on |r| ≤ ln2/2), each step over the whole block.
#[inline(always)]
fn exp64_block(x: &mut [f64; GELU_BLOCK]) {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // ln 2 = LN2_HI + LN2_LO; LN2_HI has 21 trailing zero bits, so n·LN2_HI is exact.
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // 1.5·2^52: adding it rounds to the nearest integer in the low mantissa bits.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    // 1/k! for k = 0..=13.
    const INV_FACT: [f64; 14] = [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
        1.0 / 6_227_020_800.0,
    ];
    let mut t = [0f64; GELU_BLOCK];
    let mut r = [0f64; GELU_BLOCK];
    for i in 0..GELU_BLOCK {
        t[i] = x[i].max(-708.0).mul_add(LOG2E, ROUND);
        let n = t[i] - ROUND;
        r[i] = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x[i].max(-708.0)));
    }
    let mut p = [INV_FACT[13]; GELU_BLOCK];
    for &c in INV_FACT[..13].iter().rev() {
        for i in 0..GELU_BLOCK {
            p[i] = p[i].mul_add(r[i], c);
        }
    }
    for i in 0..GELU_BLOCK {
        let ni = (t[i].to_bits() as i64) - (ROUND.to_bits() as i64);
        x[i] = p[i] * f64::from_bits(((ni + 1023) << 52) as u64);
    }
}

/// Values per step of [`gelu_erf`]: four AVX-512 vectors of f64, whose polynomial chains
/// interleave instead of waiting on each other.
const GELU_BLOCK: usize = 32;

/// `F.gelu(x)` (exact) in place: 0.5·x·(1 + erf(x/√2)), evaluated in f64 and rounded,
/// branch-free so that it vectorises: 1 + erf(z) is 2 − erfc(|z|) for z ≥ 0 and erfc(|z|)
/// below, which keeps the relative accuracy where 1 + erf(z) is tiny. Bit-equal to that route
/// through libm's erfc on every input tested (tests/ops/op_act.rs), whatever the instruction set.
pub fn gelu_erf(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("fma") {
            // SAFETY: the CPU has AVX-512F and FMA, checked just above.
            return unsafe { gelu_erf_avx512(v) };
        }
        if has!("avx2") && has!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return unsafe { gelu_erf_avx2(v) };
        }
    }
    gelu_erf_blocks(v)
}

// The polynomial's `mul_add`s are single instructions only where FMA is enabled: these carry
// the target features themselves rather than rely on a closure being inlined.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gelu_erf_avx512(v: &mut [f32]) {
    gelu_erf_blocks(v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_erf_avx2(v: &mut [f32]) {
    gelu_erf_blocks(v)
}

#[inline(always)]
fn gelu_erf_blocks(v: &mut [f32]) {
    let mut chunks = v.chunks_exact_mut(GELU_BLOCK);
    for c in &mut chunks {
        if let Ok(c) = <&mut [f32; GELU_BLOCK]>::try_from(c) {
            gelu_erf_block(c);
        }
    }
    let tail = chunks.into_remainder();
    if tail.is_empty() {
        return;
    }
    let mut last = [0f32; GELU_BLOCK];
    last[..tail.len()].copy_from_slice(tail);
    gelu_erf_block(&mut last);
    let n = tail.len();
    tail.copy_from_slice(&last[..n]);
}

#[inline(always)]
fn gelu_erf_block(v: &mut [f32; GELU_BLOCK]) {
    const S_SCALE: f64 = 2.0 / (1.0 - ERFC_T_LO);
    let mut x = [0f64; GELU_BLOCK];
    let mut a = [0f64; GELU_BLOCK];
    let mut s = [0f64; GELU_BLOCK];
    for i in 0..GELU_BLOCK {
        x[i] = v[i] as f64;
        a[i] = (x[i] * std::f64::consts::FRAC_1_SQRT_2).abs().min(12.0);
        s[i] = (1.0 / (1.0 + 0.5 * a[i]) - ERFC_T_LO) * S_SCALE - 1.0;
    }
    // Every step over the whole block, so that the block's chains run side by side.
    let mut g = [ERFC_G[24]; GELU_BLOCK];
    for &c in ERFC_G[..24].iter().rev() {
        for i in 0..GELU_BLOCK {
            g[i] = g[i].mul_add(s[i], c);
        }
    }
    let mut e = [0f64; GELU_BLOCK];
    for i in 0..GELU_BLOCK {
        e[i] = -(a[i] * a[i]);
    }
    exp64_block(&mut e);
    for i in 0..GELU_BLOCK {
        // Past a = 12 erfc is below 1e-63: zero, as libm's erfc underflows, so that
        // GELU(−∞) = −∞·0 = NaN as on that route.
        let erfc = if a[i] >= 12.0 { 0.0 } else { e[i] * g[i] };
        let one_plus = if x[i] >= 0.0 { 2.0 - erfc } else { erfc };
        v[i] = (0.5 * x[i] * one_plus) as f32;
    }
}

/// Lanes of the partial sums and maxima below: a fixed order, independent of the SIMD width.
pub const LANES: usize = 8;

/// max(v) with [`LANES`] interleaved partial maxima.
#[inline(always)]
pub fn max(v: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            m[l] = m[l].max(c[l]);
        }
    }
    for (l, &x) in tail.iter().enumerate() {
        m[l] = m[l].max(x);
    }
    m.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))
}

/// Σ v with [`LANES`] interleaved partial sums folded left to right.
#[inline(always)]
pub fn sum(v: &[f32]) -> f32 {
    let mut s = [0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            s[l] += c[l];
        }
    }
    for (l, &x) in tail.iter().enumerate() {
        s[l] += x;
    }
    s.iter().fold(0.0, |a, &b| a + b)
}

/// Mean and biased variance of `v` in f64 (two passes), each sum over [`LANES`] interleaved
/// partial sums folded left to right: a fixed order that vectorises, where a single running
/// sum would wait on each addition.
#[inline(always)]
pub fn mean_var_f64(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let lanes = |f: &dyn Fn(f32) -> f64| {
        let mut s = [0f64; LANES];
        let chunks = v.chunks_exact(LANES);
        let tail = chunks.remainder();
        for c in chunks {
            for l in 0..LANES {
                s[l] += f(c[l]);
            }
        }
        for (l, &x) in tail.iter().enumerate() {
            s[l] += f(x);
        }
        s.iter().fold(0.0, |a, &b| a + b)
    };
    let mean = lanes(&|x| x as f64) / n;
    let var = lanes(&|x| (x as f64 - mean) * (x as f64 - mean)) / n;
    (mean, var)
}

/// In-place softmax of one row: `exp(x − max) / Σ`.
#[inline(always)]
pub fn softmax(row: &mut [f32]) {
    let m = max(row);
    for x in row.iter_mut() {
        *x = exp(*x - m);
    }
    let inv = 1.0 / sum(row);
    for x in row.iter_mut() {
        *x *= inv;
    }
}
