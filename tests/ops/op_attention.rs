//! Multi-head attention against a naive f64 softmax(q kᵀ/√d) v.

use crate::common::ops;

use ops::{max_err, randn};
use sitdiv::backend::cpu::Cpu;
use sitdiv::backend::Backend;

#[test]
fn attention_matches_naive_reference() {
    for &(b, t, heads, dh) in &[(1, 1, 1, 1), (2, 5, 3, 4), (3, 17, 2, 16), (1, 64, 4, 72)] {
        let d = heads * dh;
        let qkv = randn(7, b * t * 3 * d);
        let got = Cpu.attention(&qkv, b, t, heads, dh).unwrap();
        let mut want = vec![0f32; b * t * d];
        let at = |n: usize, i: usize, part: usize, h: usize, e: usize| {
            qkv[(n * t + i) * 3 * d + part * d + h * dh + e] as f64
        };
        for n in 0..b {
            for h in 0..heads {
                for i in 0..t {
                    let s: Vec<f64> = (0..t)
                        .map(|j| {
                            (0..dh)
                                .map(|e| at(n, i, 0, h, e) * at(n, j, 1, h, e))
                                .sum::<f64>()
                                / (dh as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                    for e in 0..dh {
                        want[(n * t + i) * d + h * dh + e] = (0..t)
                            .map(|j| (s[j] - m).exp() / z * at(n, j, 2, h, e))
                            .sum::<f64>()
                            as f32;
                    }
                }
            }
        }
        let err = max_err(&got, &want);
        assert!(err < 2e-6, "({b},{t},{heads},{dh}): err {err:e}");
    }
}

#[cfg(any(feature = "cuda", feature = "cuda12"))]
use crate::common::cuda;

#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_attention_matches_cpu() {
    let Some(gpu) = cuda::device() else { return };
    for &(b, t, heads, dh) in &[
        (2, 5, 3, 4),
        (3, 17, 2, 16),
        (2, 256, 16, 72),
        (1, 1024, 6, 64),
    ] {
        let qkv = randn(7, b * t * 3 * heads * dh);
        let want = Cpu.attention(&qkv, b, t, heads, dh).unwrap();
        let e = cuda::rel(
            &gpu,
            &gpu.attention(&gpu.upload(&qkv).unwrap(), b, t, heads, dh)
                .unwrap(),
            &want,
        );
        assert!(e <= 1e-5, "({b},{t},{heads},{dh}): rel {e:e}");
    }
}

/// Past 48 KiB of scores a block must opt in to more shared memory; the launch does so.
#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_attention_opts_in_above_48k_of_shared_memory() {
    let Some(gpu) = cuda::device() else { return };
    // scores[T] + q[Dh] + scratch[128]: (2 + 12 160 + 128) · 4 B = 49 160 B per block.
    let (b, t, heads, dh) = (1, 2, 1, 12_160);
    let qkv = randn(9, b * t * 3 * heads * dh);
    let want = Cpu.attention(&qkv, b, t, heads, dh).unwrap();
    let got = gpu
        .attention(&gpu.upload(&qkv).unwrap(), b, t, heads, dh)
        .unwrap();
    let e = cuda::rel(&gpu, &got, &want);
    assert!(e <= 1e-5, "T={t}: rel {e:e}");
}

/// More images than gridDim.z's 65 535: the grid is (B·T, H), so the batch has no such bound.
#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_attention_takes_more_than_65535_images() {
    let Some(gpu) = cuda::device() else { return };
    let (b, t, heads, dh) = (65_537, 1, 1, 2);
    let qkv = randn(10, b * t * 3 * heads * dh);
    let want = Cpu.attention(&qkv, b, t, heads, dh).unwrap();
    let got = gpu
        .attention(&gpu.upload(&qkv).unwrap(), b, t, heads, dh)
        .unwrap();
    let e = cuda::rel(&gpu, &got, &want);
    assert!(e <= 1e-5, "B={b}: rel {e:e}");
}
