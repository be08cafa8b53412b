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

/// Runs `f` inside a function compiled with AVX2 when the CPU has it, so the loops inlined into
/// it vectorise 8 lanes wide. Results are bit-identical either way: Rust never contracts
/// `a * b + c` into an FMA, and every lane op is correctly rounded.
#[inline(always)]
pub fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
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
