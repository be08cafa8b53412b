//! Max/average pooling and channel concatenation against naive references.

use crate::common::ops;

use ops::randn;
use sitdiv::backend::cpu::Cpu;
use sitdiv::backend::{Backend, Nchw, Pool, Window};

/// Pooling as PyTorch defines it, one output at a time: the max over the in-map inputs, or
/// their f32 sum in row-major order divided by their count (`count_include_pad=False`).
fn pool_ref(x: &[f32], d: Nchw, win: Window, pool: Pool) -> Vec<f32> {
    let (ho, wo) = win.output(d.h, d.w).unwrap();
    let mut y = Vec::new();
    for p in 0..d.n * d.c {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut vals = Vec::new();
                for ky in 0..win.kh {
                    for kx in 0..win.kw {
                        let iy = (oy * win.stride + ky) as isize - win.ph as isize;
                        let ix = (ox * win.stride + kx) as isize - win.pw as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < d.h && (ix as usize) < d.w {
                            vals.push(x[(p * d.h + iy as usize) * d.w + ix as usize]);
                        }
                    }
                }
                y.push(match pool {
                    Pool::Max => vals.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                    Pool::Avg => vals.iter().sum::<f32>() / vals.len() as f32,
                });
            }
        }
    }
    y
}

#[test]
fn pooling_matches_naive_reference_bit_for_bit() {
    // Inception's windows: 3×3 stride 2 max; 3×3 stride 1 pad 1 max and average (borders
    // average fewer inputs); the global 8×8 average; and odd shapes.
    let cases = [
        ((2, 3, 147, 147), Window::square(3, 2, 0)),
        ((1, 4, 17, 17), Window::square(3, 1, 1)),
        ((2, 5, 8, 8), Window::square(8, 8, 0)),
        ((1, 2, 9, 6), Window::square(3, 2, 1)),
        ((1, 1, 5, 7), Window::rect(2, 3, 1, 1)),
    ];
    for (i, &((n, c, h, w), win)) in cases.iter().enumerate() {
        let d = Nchw { n, c, h, w };
        let x = randn(10 + i as u64, d.len());
        for pool in [Pool::Max, Pool::Avg] {
            let got = Cpu.pool2d(&x, d, win, pool).unwrap();
            let want = pool_ref(&x, d, win, pool);
            assert_eq!(got.len(), want.len());
            let same = got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{d:?} {win:?} {pool:?} differs from the reference");
        }
    }
}

#[test]
fn max_pool_propagates_nan_and_refuses_bad_windows() {
    let d = Nchw {
        n: 1,
        c: 1,
        h: 3,
        w: 3,
    };
    let mut x = vec![1f32; 9];
    x[4] = f32::NAN;
    let y = Cpu
        .pool2d(&x, d, Window::square(3, 1, 1), Pool::Max)
        .unwrap();
    assert!(y.iter().all(|v| v.is_nan()), "{y:?}");
    let e = Cpu
        .pool2d(&x, d, Window::square(5, 1, 0), Pool::Max)
        .unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
    // Padding larger than half the window would leave outputs without inputs.
    let e = Cpu
        .pool2d(&x, d, Window::square(2, 1, 2), Pool::Avg)
        .unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
}

#[test]
fn concat_stacks_channels_per_sample() {
    let (n, hw) = (2, 3);
    let a: Vec<f32> = (0..n * hw).map(|v| v as f32).collect();
    let b: Vec<f32> = (0..n * 2 * hw).map(|v| 100.0 + v as f32).collect();
    let y = Cpu.concat_channels(&[(&a, 1), (&b, 2)], n, hw).unwrap();
    let want = [
        0., 1., 2., 100., 101., 102., 103., 104., 105., //
        3., 4., 5., 106., 107., 108., 109., 110., 111.,
    ];
    assert_eq!(y, want);
    assert!(Cpu.concat_channels(&[(&a, 2)], n, hw).is_err());
}

#[cfg(any(feature = "cuda", feature = "cuda12"))]
use crate::common::cuda;

/// Pooling visits the window as the CPU does, so the bits agree, NaN included; concatenation
/// copies.
#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_pooling_and_concat_move_the_cpus_bits() {
    let _g = cuda::shared();
    let Some(gpu) = cuda::device() else { return };
    let cases = [
        ((2, 3, 35, 35), Window::square(3, 2, 0)),
        ((1, 4, 17, 17), Window::square(3, 1, 1)),
        ((2, 5, 8, 8), Window::square(8, 8, 0)),
        ((1, 2, 9, 6), Window::square(3, 2, 1)),
        ((1, 1, 5, 7), Window::rect(2, 3, 1, 1)),
    ];
    for (i, &((n, c, h, w), win)) in cases.iter().enumerate() {
        let d = Nchw { n, c, h, w };
        let mut x = randn(20 + i as u64, d.len());
        x[3] = f32::NAN;
        let gx = gpu.upload(&x).unwrap();
        for pool in [Pool::Max, Pool::Avg] {
            let want = Cpu.pool2d(&x, d, win, pool).unwrap();
            let got = gpu
                .download(&gpu.pool2d(&gx, d, win, pool).unwrap())
                .unwrap();
            assert!(cuda::same_bits(&got, &want), "{d:?} {win:?} {pool:?}");
        }
    }
    let bad = Nchw {
        n: 1,
        c: 1,
        h: 2,
        w: 2,
    };
    let gx = gpu.upload(&[0f32; 4]).unwrap();
    assert!(gpu
        .pool2d(&gx, bad, Window::square(3, 1, 0), Pool::Max)
        .is_err());
    let (n, hw) = (3, 29);
    let (a, b) = (randn(30, n * 2 * hw), randn(31, n * 5 * hw));
    let want = Cpu.concat_channels(&[(&a, 2), (&b, 5)], n, hw).unwrap();
    let (ga, gb) = (gpu.upload(&a).unwrap(), gpu.upload(&b).unwrap());
    let got = gpu.concat_channels(&[(&ga, 2), (&gb, 5)], n, hw).unwrap();
    assert!(cuda::same_bits(&gpu.download(&got).unwrap(), &want));
    assert!(gpu.concat_channels(&[(&ga, 3)], n, hw).is_err());
}
