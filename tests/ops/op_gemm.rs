//! CPU GEMM (`F.linear`) against an f64 reference on odd shapes; its rows independent of the
//! batch and of the thread count.

use crate::common::ops;

use ops::{linear_ref, max_err, randn};
use sitdiv::backend::cpu::gemm::linear;

#[test]
fn linear_matches_f64_reference_on_odd_shapes() {
    // (M, K, N): tiny, odd, skinny-M (column split) and tall (row split) products.
    for &(m, k, n) in &[
        (1, 1, 1),
        (3, 5, 7),
        (17, 33, 9),
        (4, 300, 1000),
        (517, 96, 130),
        (64, 0, 5),
    ] {
        let x = randn(1, m * k);
        let w = randn(2, n * k);
        let b = randn(3, n);
        for bias in [None, Some(b.as_slice())] {
            let got = linear(&x, &w, bias, m, k, n);
            let err = max_err(&got, &linear_ref(&x, &w, bias, m, k, n));
            assert!(
                err < 1e-5 * (k as f64).sqrt().max(1.0),
                "({m},{k},{n}) bias {}: err {err:e}",
                bias.is_some()
            );
        }
    }
}

#[test]
fn linear_rows_do_not_depend_on_the_batch() {
    // Row i of a product must not depend on which other rows share the call: rows of a batch
    // of 600 computed alone, in threes and in eights, for short, long and skinny products.
    for &(k, n) in &[(96, 130), (1536, 384), (384, 2304), (64, 1)] {
        let x = randn(4, 600 * k);
        let w = randn(5, n * k);
        let b = randn(6, n);
        let full = linear(&x, &w, Some(&b), 600, k, n);
        for rows in [1, 3, 8] {
            for first in [0, 5, 592] {
                let part = linear(&x[first * k..(first + rows) * k], &w, Some(&b), rows, k, n);
                assert!(
                    full[first * n..(first + rows) * n] == part[..],
                    "(K {k}, N {n}): rows {first}..{} changed alone",
                    first + rows
                );
            }
        }
    }
}

#[cfg(any(feature = "cuda", feature = "cuda12"))]
use crate::common::cuda;

#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_linear_matches_cpu() {
    use sitdiv::backend::Backend;
    let Some(gpu) = cuda::device() else { return };
    for &(m, k, n) in &[(1, 1, 1), (3, 5, 7), (517, 96, 130), (2048, 384, 1152)] {
        let (x, w, b) = (randn(1, m * k), randn(2, n * k), randn(3, n));
        let cpu = linear(&x, &w, Some(&b), m, k, n);
        let (gx, gw, gb) = (
            gpu.upload(&x).unwrap(),
            gpu.upload(&w).unwrap(),
            gpu.upload(&b).unwrap(),
        );
        let e = cuda::rel(
            &gpu,
            &gpu.linear(&gx, &gw, Some(&gb), m, k, n).unwrap(),
            &cpu,
        );
        assert!(e <= 1e-5, "({m},{k},{n}): rel {e:e}");
    }
}

/// A product with a precise weight (`upload_precise_weight`): under tf32 it is 3xTF32, one TF32
/// product over the split operands, within fp32's reach of the CPU (4e-6) where the plain TF32
/// product of the same operands is off by about 3e-4; under bf16 it is a TF32 product of f32
/// operands (≤ 1e-3, where bf16 operands are off by about 4e-3).
#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_precise_products_are_3xtf32_or_tf32() {
    use sitdiv::backend::{Backend, Precision};
    for (precision, bound) in [(Precision::Tf32, 4e-6), (Precision::Bf16, 1e-3)] {
        let Some(gpu) = cuda::device_in(precision) else {
            return;
        };
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 7), (2, 256, 384), (517, 96, 130)] {
            let (x, w, b) = (randn(1, m * k), randn(2, n * k), randn(3, n));
            let cpu = linear(&x, &w, Some(&b), m, k, n);
            let (gx, gb) = (gpu.upload(&x).unwrap(), gpu.upload(&b).unwrap());
            let precise = gpu.upload_precise_weight(&w, k).unwrap();
            let y = gpu.linear(&gx, &precise, Some(&gb), m, k, n).unwrap();
            let e = cuda::rel(&gpu, &y, &cpu);
            let plain = gpu.upload_weight(&w).unwrap();
            let e_plain = cuda::rel(
                &gpu,
                &gpu.linear(&gx, &plain, Some(&gb), m, k, n).unwrap(),
                &cpu,
            );
            println!("{precision:?} ({m},{k},{n}): precise rel {e:.2e}, plain {e_plain:.2e}");
            // One or a few products against a bias: the relative error of TF32 is erratic there.
            if precision == Precision::Tf32 || k >= 96 {
                assert!(e <= bound, "{precision:?} ({m},{k},{n}): precise rel {e:e}");
            }
            if k >= 96 {
                assert!(
                    e_plain >= 3.0 * e,
                    "{precision:?} ({m},{k},{n}): plain {e_plain:e}, precise {e:e}"
                );
            }
            // The same from an operand converted once (SiLU(c) before every adaLN).
            let op = gpu.operand(gpu.upload(&x).unwrap(), k).unwrap();
            let y2 = gpu.linear(&op, &precise, Some(&gb), m, k, n).unwrap();
            assert!(
                cuda::same_bits(&gpu.download(&y).unwrap(), &gpu.download(&y2).unwrap()),
                "{precision:?} ({m},{k},{n}): the converted operand gives other bits"
            );
        }
    }
}

#[test]
fn linear_bits_do_not_depend_on_the_thread_count() {
    // SiT-XL/2 shapes of a guided unit: tall (row tiles) and short (column tiles) products.
    for &(m, k, n) in &[(64, 1152, 2304), (1100, 96, 130), (96, 64, 1000)] {
        let (x, w, b) = (randn(6, m * k), randn(7, n * k), randn(8, n));
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| linear(&x, &w, Some(&b), m, k, n))
        };
        let one = run(1);
        for threads in [2, 3, 16, 64] {
            assert!(
                run(threads) == one,
                "({m},{k},{n}): {threads} threads changed the bits"
            );
        }
    }
}
