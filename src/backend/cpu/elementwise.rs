//! Residual adds: plain, broadcast over the batch, and gated.

use rayon::prelude::*;

/// `x += y`.
pub fn add(x: &mut [f32], y: &[f32]) {
    x.par_chunks_mut(1 << 14)
        .zip(y.par_chunks(1 << 14))
        .for_each(|(a, b)| {
            for (a, &b) in a.iter_mut().zip(b) {
                *a += b;
            }
        });
}

/// `x[b] += row` for x (B, R).
pub fn add_row(x: &mut [f32], row: &[f32]) {
    // R = 0: rows of nothing (and rayon refuses chunks of 0).
    if x.is_empty() {
        return;
    }
    x.par_chunks_mut(row.len()).for_each(|xb| {
        for (a, &r) in xb.iter_mut().zip(row) {
            *a += r;
        }
    });
}

/// `x += gate[b] * y` for x, y (B, T, D); `gate(b)` gives row b (D).
pub fn gated_add<'a>(
    x: &mut [f32],
    y: &[f32],
    gate: impl Fn(usize) -> &'a [f32] + Sync,
    t: usize,
    d: usize,
) {
    // T = 0 or D = 0: nothing to add (and rayon refuses chunks of 0).
    if x.is_empty() {
        return;
    }
    x.par_chunks_mut(t * d)
        .zip(y.par_chunks(t * d))
        .enumerate()
        .for_each(|(b, (xb, yb))| {
            let g = gate(b);
            for (xr, yr) in xb.chunks_mut(d).zip(yb.chunks(d)) {
                for ((a, &v), &g) in xr.iter_mut().zip(yr).zip(g) {
                    *a += g * v;
                }
            }
        });
}
