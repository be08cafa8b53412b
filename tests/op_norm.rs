//! LayerNorm (no affine) and adaLN modulate against closed forms.

#[path = "common/ops.rs"]
mod ops;

use ops::{max_err, randn};
use sitdiv::backend::cpu::Cpu;
use sitdiv::backend::{Backend, Cols};

#[test]
fn layer_norm_has_zero_mean_unit_variance() {
    let (rows, d) = (37, 129);
    let x: Vec<f32> = randn(1, rows * d).iter().map(|v| 3.0 * v + 5.0).collect();
    let y = Cpu.layer_norm(&x, rows, d, 1e-6).unwrap();
    for (r, row) in y.chunks(d).enumerate() {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        assert!(
            mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5,
            "row {r}: mean {mean}, var {var}"
        );
    }
    // Biased variance and eps inside the square root: a constant row stays 0.
    let c = Cpu.layer_norm(&vec![2.5; d], 1, d, 1e-6).unwrap();
    assert!(c.iter().all(|&v| v == 0.0));
}

#[test]
fn modulate_and_gated_add_broadcast_per_sample() {
    let (b, t, d) = (3, 5, 7);
    let x = randn(2, b * t * d);
    let m = randn(3, b * 4 * d); // per sample: [junk, shift, scale, gate]
    let col = |o: usize| Cols::<Cpu> {
        buf: &m,
        stride: 4 * d,
        offset: o * d,
    };
    let mut y = x.clone();
    Cpu.modulate(&mut y, col(1), col(2), b, t, d).unwrap();
    let mut expect = vec![0f32; x.len()];
    for n in 0..b {
        for i in 0..t {
            for j in 0..d {
                let (sh, sc) = (m[n * 4 * d + d + j], m[n * 4 * d + 2 * d + j]);
                expect[(n * t + i) * d + j] = x[(n * t + i) * d + j] * (1.0 + sc) + sh;
            }
        }
    }
    assert_eq!(y, expect, "modulate");
    let z = randn(4, b * t * d);
    let mut acc = x.clone();
    Cpu.gated_add(&mut acc, &z, col(3), b, t, d).unwrap();
    let expect: Vec<f32> = (0..x.len())
        .map(|e| x[e] + m[(e / (t * d)) * 4 * d + 3 * d + e % d] * z[e])
        .collect();
    assert!(max_err(&acc, &expect) == 0.0, "gated_add");
}
