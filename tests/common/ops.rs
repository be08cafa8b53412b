//! Deterministic test inputs and naive references for the op tests.
#![allow(dead_code)]

use sitdiv::rng;

/// Standard normal values, a pure function of `seed`.
pub fn randn(seed: u64, n: usize) -> Vec<f32> {
    rng::gaussian(seed, 0, 0, 0, n)
}

/// Deterministic values in [-1, 1) from a xorshift generator (independent of the library's RNG).
pub fn signed_unit(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f64 / (1u64 << 23) as f64 - 1.0
        })
        .collect()
}

/// max |a − b| / max(1, max |b|): absolute for small references, relative for large ones.
pub fn max_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1.0f64, |m, &v| m.max((v as f64).abs()));
    a.iter()
        .zip(b)
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .fold(0.0, f64::max)
        / scale
}

/// y = x·wᵀ + b in f64.
pub fn linear_ref(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = b.map_or(0.0, |b| b[j] as f64);
            for l in 0..k {
                s += x[i * k + l] as f64 * w[j * k + l] as f64;
            }
            y[i * n + j] = s as f32;
        }
    }
    y
}
