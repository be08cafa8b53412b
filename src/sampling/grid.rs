//! Time grids exactly as the reference builds them.

/// `torch.linspace(t0, t1, n)` in float32: `step = (fl32(t1) − fl32(t0)) / (n − 1)` in f32; the first
/// half is `t0 + step·i`, the second `t1 − step·(n−1−i)`, each with a single rounding (fused).
pub fn linspace_f32(t0: f64, t1: f64, n: usize) -> Vec<f32> {
    let (start, end) = (t0 as f32, t1 as f32);
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((n - 1 - i) as f32, end)
            }
        })
        .collect()
}

/// `torch.linspace(t0, t1, n)` in float64, with the same fused halves as [`linspace_f32`].
pub fn linspace_f64(t0: f64, t1: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![t0];
    }
    let step = (t1 - t0) / (n - 1) as f64;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                step.mul_add(i as f64, t0)
            } else {
                (-step).mul_add((n - 1 - i) as f64, t1)
            }
        })
        .collect()
}
