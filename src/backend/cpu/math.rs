//! Branch-free f32 `exp` and `tanh` that the compiler can vectorise: softmax and GELU apply them
//! to tens of millions of elements per forward, where a libm call per element dominates.
//! Accuracy (checked in tests/op_math.rs): exp within 2 ulp, tanh within 5e-7 absolute.

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
    p = p * r + 5.000_000_1e-1;
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
