//! LayerNorm (no affine) and adaLN modulate against closed forms.

use crate::common::ops;

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

#[cfg(any(feature = "cuda", feature = "cuda12"))]
use crate::common::cuda;

#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_norm_ops_match_cpu() {
    let Some(gpu) = cuda::device() else { return };
    let (b, t, d) = (3, 17, 129);
    let x: Vec<f32> = randn(1, b * t * d).iter().map(|v| 2.0 * v + 0.5).collect();
    let m = randn(2, b * 5 * d);
    let (gx, gm) = (gpu.upload(&x).unwrap(), gpu.upload(&m).unwrap());
    let ln = Cpu.layer_norm(&x, b * t, d, 1e-6).unwrap();
    let e = cuda::rel(&gpu, &gpu.layer_norm(&gx, b * t, d, 1e-6).unwrap(), &ln);
    assert!(e <= 1e-5, "layer_norm: rel {e:e}");
    let cc = |o: usize| Cols::<Cpu> {
        buf: &m,
        stride: 5 * d,
        offset: o * d,
    };
    let gc = |o: usize| Cols::<sitdiv::backend::cuda::Cuda> {
        buf: &gm,
        stride: 5 * d,
        offset: o * d,
    };
    let want = Cpu
        .layer_norm_modulate(&x, cc(1), cc(3), b, t, d, 1e-6)
        .unwrap();
    let e = cuda::rel(
        &gpu,
        &gpu.layer_norm_modulate(&gx, gc(1), gc(3), b, t, d, 1e-6)
            .unwrap(),
        &want,
    );
    assert!(e <= 1e-5, "layer_norm_modulate: rel {e:e}");
    let mut gy = gpu.upload(&x).unwrap();
    gpu.modulate(&mut gy, gc(2), gc(4), b, t, d).unwrap();
    let mut y = x.clone();
    Cpu.modulate(&mut y, cc(2), cc(4), b, t, d).unwrap();
    assert!(cuda::rel(&gpu, &gy, &y) <= 1e-5, "modulate");
    let z = randn(3, b * t * d);
    let mut gacc = gpu.upload(&x).unwrap();
    gpu.gated_add(&mut gacc, &gpu.upload(&z).unwrap(), gc(0), b, t, d)
        .unwrap();
    let mut acc = x.clone();
    Cpu.gated_add(&mut acc, &z, cc(0), b, t, d).unwrap();
    assert!(cuda::rel(&gpu, &gacc, &acc) <= 1e-5, "gated_add");
}

#[test]
fn group_norm_normalises_each_group_then_applies_affine() {
    let (n, c, hw, groups) = (2, 6, 5, 3);
    let x: Vec<f32> = randn(5, n * c * hw).iter().map(|v| 3.0 * v - 1.0).collect();
    let gamma: Vec<f32> = (0..c).map(|i| 1.0 + 0.1 * i as f32).collect();
    let beta: Vec<f32> = (0..c).map(|i| -0.2 * i as f32).collect();
    for silu in [false, true] {
        let y = Cpu
            .group_norm(&x, &gamma, &beta, n, c, hw, groups, 1e-6, silu)
            .unwrap();
        let cg = c / groups;
        for s in 0..n {
            for g in 0..groups {
                let vals: Vec<f64> = (0..cg * hw)
                    .map(|i| x[(s * c + g * cg) * hw + i] as f64)
                    .collect();
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
                for i in 0..cg * hw {
                    let ch = g * cg + i / hw;
                    let mut z =
                        (vals[i] - mean) / (var + 1e-6).sqrt() * gamma[ch] as f64 + beta[ch] as f64;
                    if silu {
                        z /= 1.0 + (-z).exp();
                    }
                    let got = y[(s * c + g * cg) * hw + i] as f64;
                    assert!(
                        (got - z).abs() < 1e-5,
                        "silu {silu} s {s} g {g} i {i}: {got} vs {z}"
                    );
                }
            }
        }
    }
}

#[test]
fn layer_norm_affine_scales_and_shifts_each_column() {
    let (rows, d) = (5, 33);
    let x = randn(4, rows * d);
    let gamma = randn(5, d);
    let beta = randn(6, d);
    let plain = Cpu.layer_norm(&x, rows, d, 1e-5).unwrap();
    let y = Cpu
        .layer_norm_affine(&x, &gamma, &beta, rows, d, 1e-5)
        .unwrap();
    for (i, (&y, &p)) in y.iter().zip(&plain).enumerate() {
        let want = p * gamma[i % d] + beta[i % d];
        assert_eq!(y.to_bits(), want.to_bits(), "element {i}");
    }
    assert!(Cpu
        .layer_norm_affine(&x, &gamma[..d - 1].to_vec(), &beta, rows, d, 1e-5)
        .is_err());
}

/// GroupNorm (with and without its SiLU) and the affine LayerNorm on the GPU against the CPU,
/// on groups larger than a block (the VAE's are 4–16 channels of up to 256² pixels).
#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_group_norm_and_affine_layer_norm_match_cpu() {
    let _g = cuda::shared();
    let Some(gpu) = cuda::device() else { return };
    let (n, c, hw, groups) = (2, 12, 301, 3);
    let x: Vec<f32> = randn(7, n * c * hw).iter().map(|v| 3.0 * v - 1.0).collect();
    let (gamma, beta) = (randn(8, c), randn(9, c));
    let (gx, gg, gb) = (
        gpu.upload(&x).unwrap(),
        gpu.upload(&gamma).unwrap(),
        gpu.upload(&beta).unwrap(),
    );
    for silu in [false, true] {
        let want = Cpu
            .group_norm(&x, &gamma, &beta, n, c, hw, groups, 1e-6, silu)
            .unwrap();
        let got = gpu
            .group_norm(&gx, &gg, &gb, n, c, hw, groups, 1e-6, silu)
            .unwrap();
        let e = cuda::rel(&gpu, &got, &want);
        assert!(e <= 1e-6, "group_norm silu {silu}: rel {e:e}");
    }
    assert!(gpu
        .group_norm(&gx, &gg, &gb, n, c, hw, 5, 1e-6, false)
        .is_err());
    let (rows, d) = (37, 385);
    let x: Vec<f32> = randn(10, rows * d).iter().map(|v| 2.0 * v + 0.5).collect();
    let (gamma, beta) = (randn(11, d), randn(12, d));
    let want = Cpu
        .layer_norm_affine(&x, &gamma, &beta, rows, d, 1e-6)
        .unwrap();
    let got = gpu
        .layer_norm_affine(
            &gpu.upload(&x).unwrap(),
            &gpu.upload(&gamma).unwrap(),
            &gpu.upload(&beta).unwrap(),
            rows,
            d,
            1e-6,
        )
        .unwrap();
    let e = cuda::rel(&gpu, &got, &want);
    assert!(e <= 1e-5, "layer_norm_affine: rel {e:e}");
}
