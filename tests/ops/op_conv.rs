//! Convolution and nearest upsampling against naive references.

use crate::common::ops;

use ops::{max_err, randn};
use sitdiv::backend::cpu::Cpu;
use sitdiv::backend::{Backend, Nchw, Window};

/// Direct convolution: output channel `o` at each pixel is `out(o, terms)` of its products'
/// terms (weight, input) in (c, ky, kx) order, the padding reading 0.
fn conv_direct(
    x: &[f32],
    d: Nchw,
    w: &[f32],
    co: usize,
    win: Window,
    out: impl Fn(usize, &[(f32, f32)]) -> f32,
) -> Vec<f32> {
    let (ho, wo) = win.output(d.h, d.w).unwrap();
    let mut y = vec![0f32; d.n * co * ho * wo];
    let mut terms = Vec::with_capacity(d.c * win.kh * win.kw);
    for s in 0..d.n {
        for o in 0..co {
            for oy in 0..ho {
                for ox in 0..wo {
                    terms.clear();
                    for c in 0..d.c {
                        for ky in 0..win.kh {
                            for kx in 0..win.kw {
                                let iy = (oy * win.stride + ky) as isize - win.ph as isize;
                                let ix = (ox * win.stride + kx) as isize - win.pw as isize;
                                let inside = iy >= 0
                                    && ix >= 0
                                    && (iy as usize) < d.h
                                    && (ix as usize) < d.w;
                                let v = if inside {
                                    x[((s * d.c + c) * d.h + iy as usize) * d.w + ix as usize]
                                } else {
                                    0.0
                                };
                                terms.push((w[((o * d.c + c) * win.kh + ky) * win.kw + kx], v));
                            }
                        }
                    }
                    y[((s * co + o) * ho + oy) * wo + ox] = out(o, &terms);
                }
            }
        }
    }
    y
}

/// Direct convolution in f64, then ReLU when asked.
fn conv_ref(
    x: &[f32],
    d: Nchw,
    w: &[f32],
    b: &[f32],
    co: usize,
    win: Window,
    relu: bool,
) -> Vec<f32> {
    conv_direct(x, d, w, co, win, |o, terms| {
        let acc = terms
            .iter()
            .fold(b[o] as f64, |acc, &(w, v)| acc + w as f64 * v as f64);
        (if relu { acc.max(0.0) } else { acc }) as f32
    })
}

/// 3×3 pad 1; 1×1 (the direct GEMM path); a map larger than one im2col tile (2048 pixels);
/// stride 2 with and without padding; Inception's factorised 1×7 / 7×1 and 1×3 / 3×1 kernels;
/// a strided 1×1; channel-split jobs.
/// (input (N, C, H, W), output channels, window).
type Case = ((usize, usize, usize, usize), usize, Window);

const CASES: [Case; 17] = [
    ((2, 3, 5, 7), 4, Window::square(3, 1, 1)),
    // Maps wider than a panel: panels inside one output row and clear of the padding.
    ((2, 3, 6, 70), 5, Window::square(3, 1, 1)),
    ((1, 2, 5, 70), 3, Window::square(5, 1, 2)),
    // 1×1 over panels that cross rows and samples.
    ((3, 4, 7, 7), 5, Window::square(1, 1, 0)),
    ((1, 5, 9, 4), 6, Window::square(1, 1, 0)),
    ((1, 2, 48, 50), 3, Window::square(3, 1, 1)),
    ((2, 1, 3, 3), 2, Window::square(3, 1, 0)),
    ((2, 3, 15, 13), 4, Window::square(3, 2, 0)),
    ((1, 2, 9, 8), 3, Window::square(3, 2, 1)),
    ((2, 3, 7, 9), 5, Window::rect(1, 7, 0, 3)),
    ((2, 3, 9, 7), 5, Window::rect(7, 1, 3, 0)),
    ((1, 4, 6, 6), 2, Window::rect(1, 3, 0, 1)),
    ((1, 4, 6, 6), 2, Window::rect(3, 1, 1, 0)),
    ((1, 3, 7, 7), 2, Window::square(1, 2, 0)),
    ((1, 2, 64, 70), 3, Window::square(5, 2, 2)),
    // More than one block of 64 output channels on a small map (channel-split jobs).
    ((2, 8, 9, 7), 130, Window::square(3, 1, 1)),
    // A map narrower than the padding: some window columns read padding only (LPIPS on
    // small images).
    ((1, 2, 1, 1), 3, Window::square(5, 1, 2)),
];

#[test]
fn conv2d_matches_naive_reference() {
    for (i, &((n, c, h, w), co, win)) in CASES.iter().enumerate() {
        let d = Nchw { n, c, h, w };
        let x = randn(1 + i as u64, d.len());
        let wt = randn(100 + i as u64, co * c * win.kh * win.kw);
        let b = randn(200 + i as u64, co);
        for relu in [false, true] {
            let got = Cpu.conv2d(&x, d, &wt, &b, co, win, relu).unwrap();
            let err = max_err(&got, &conv_ref(&x, d, &wt, &b, co, win, relu));
            assert!(err < 1e-5, "{d:?} co {co} {win:?} relu {relu}: err {err:e}");
        }
    }
}

/// The convolution's defined arithmetic, written out: each output is the chain of f32 FMAs over
/// (c, ky, kx) in order from 0 (padding reads 0), then + bias, then the ReLU.
fn conv_fma_chain(x: &[f32], d: Nchw, w: &[f32], b: &[f32], co: usize, win: Window) -> Vec<f32> {
    conv_direct(x, d, w, co, win, |o, terms| {
        let v = terms.iter().fold(0f32, |acc, &(w, v)| w.mul_add(v, acc)) + b[o];
        if v < 0.0 {
            0.0
        } else {
            v
        }
    })
}

/// Every way the im2col panels are built gives the defined arithmetic to the bit: maps narrower
/// than a panel (31, 16, 15, 10, 8, 7 and 17 wide, panels across output rows and samples), a wide
/// map (panels inside one row), a 1×3 window and a strided one.
#[test]
fn conv2d_is_the_fma_chain_in_every_panel_layout() {
    for (i, &((n, c, h, w), co, win)) in [
        ((2, 3, 31, 31), 5, Window::square(3, 1, 1)),
        ((2, 4, 31, 31), 3, Window::square(5, 1, 2)),
        ((3, 3, 15, 15), 70, Window::square(3, 1, 1)),
        ((2, 2, 16, 16), 4, Window::square(3, 1, 1)),
        ((2, 3, 12, 10), 4, Window::square(3, 1, 1)),
        ((1, 2, 10, 10), 3, Window::square(3, 1, 0)),
        ((2, 3, 9, 8), 4, Window::rect(1, 3, 0, 1)),
        ((2, 3, 7, 7), 4, Window::square(3, 1, 1)),
        ((2, 3, 17, 17), 4, Window::square(3, 1, 1)),
        ((1, 2, 6, 70), 3, Window::square(3, 1, 1)),
        ((2, 2, 15, 13), 3, Window::square(3, 2, 0)),
    ]
    .iter()
    .enumerate()
    {
        let d = Nchw { n, c, h, w };
        let x = randn(700 + i as u64, d.len());
        let wt = randn(800 + i as u64, co * c * win.kh * win.kw);
        let b = randn(900 + i as u64, co);
        let got = Cpu.conv2d(&x, d, &wt, &b, co, win, true).unwrap();
        let want = conv_fma_chain(&x, d, &wt, &b, co, win);
        let differ = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differ, 0, "{d:?} co {co} {win:?}: {differ} values differ");
    }
}

#[test]
fn conv2d_samples_do_not_depend_on_the_batch_or_threads() {
    // 5 samples in one call equal each sample alone, to the bit, on 1 and 3 threads: padded
    // 3×3, strided 7×7, 1×1 and a map narrower than a panel (7 × 7).
    for (i, &((c, h, w), co, win)) in [
        ((3, 19, 23), 13, Window::square(3, 1, 1)),
        ((3, 32, 32), 16, Window::square(7, 2, 3)),
        ((40, 9, 9), 20, Window::square(1, 1, 0)),
        ((8, 7, 7), 30, Window::square(3, 1, 1)),
    ]
    .iter()
    .enumerate()
    {
        let n = 5;
        let d = Nchw { n, c, h, w };
        let one = Nchw { n: 1, ..d };
        let x = randn(300 + i as u64, d.len());
        let wt = randn(400 + i as u64, co * c * win.kh * win.kw);
        let b = randn(500 + i as u64, co);
        let run = |threads: usize, x: &[f32], d: Nchw| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| Cpu.conv2d(&x.to_vec(), d, &wt, &b, co, win, true).unwrap())
        };
        let all = run(3, &x, d);
        assert!(
            run(1, &x, d) == all,
            "{d:?} {win:?}: threads changed the bits"
        );
        let per = all.len() / n;
        for s in 0..n {
            let alone = run(2, &x[s * one.len()..(s + 1) * one.len()], one);
            assert!(
                alone[..] == all[s * per..(s + 1) * per],
                "{d:?} {win:?}: sample {s} changed alone"
            );
        }
    }
}

#[test]
fn conv2d_refuses_windows_that_do_not_fit() {
    let d = Nchw {
        n: 1,
        c: 1,
        h: 2,
        w: 2,
    };
    let (x, w, b) = (vec![0f32; 4], vec![0f32; 9], vec![0f32; 1]);
    let e = Cpu
        .conv2d(&x, d, &w, &b, 1, Window::square(3, 1, 0), false)
        .unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
    let e = Cpu
        .conv2d(
            &x[..3].to_vec(),
            d,
            &w,
            &b,
            1,
            Window::square(3, 1, 1),
            false,
        )
        .unwrap_err();
    assert!(e.to_string().contains("elements"), "{e}");
}

#[test]
fn upsample_repeats_each_pixel_twice_per_axis() {
    let x: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32).collect();
    let y = Cpu.upsample_nearest2x(&x, 2, 1, 3, 4).unwrap();
    for nc in 0..2 {
        for oy in 0..6 {
            for ox in 0..8 {
                assert_eq!(y[(nc * 6 + oy) * 8 + ox], x[(nc * 3 + oy / 2) * 4 + ox / 2]);
            }
        }
    }
}

#[cfg(any(feature = "cuda", feature = "cuda12"))]
use crate::common::cuda;

/// Every case on the GPU in each precision against the CPU, weights uploaded as a convolution's
/// are (`upload_weight`): fp32 to rounding, tf32 and bf16 within the bounds the backbones state.
#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_conv2d_matches_cpu_in_every_precision() {
    use sitdiv::backend::Precision;
    let _g = cuda::shared();
    for (precision, tol) in [
        (Precision::Fp32, 1e-5),
        (Precision::Tf32, 3e-3),
        (Precision::Bf16, 2e-2),
    ] {
        let Some(gpu) = cuda::device_in(precision) else {
            return;
        };
        for (i, &((n, c, h, w), co, win)) in CASES.iter().enumerate() {
            let d = Nchw { n, c, h, w };
            let x = randn(1 + i as u64, d.len());
            let wt = randn(100 + i as u64, co * c * win.kh * win.kw);
            let b = randn(200 + i as u64, co);
            let (gx, gw, gb) = (
                gpu.upload(&x).unwrap(),
                gpu.upload_weight(&wt).unwrap(),
                gpu.upload(&b).unwrap(),
            );
            for relu in [false, true] {
                let want = Cpu.conv2d(&x, d, &wt, &b, co, win, relu).unwrap();
                let got = gpu.conv2d(&gx, d, &gw, &gb, co, win, relu).unwrap();
                let e = cuda::rel(&gpu, &got, &want);
                assert!(
                    e <= tol,
                    "{precision:?} {d:?} co {co} {win:?} relu {relu}: rel {e:e}"
                );
                if relu {
                    assert!(gpu.download(&got).unwrap().iter().all(|v| *v >= 0.0));
                }
            }
        }
    }
}

#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_conv2d_refuses_what_the_cpu_refuses() {
    let _g = cuda::shared();
    let Some(gpu) = cuda::device() else { return };
    let d = Nchw {
        n: 1,
        c: 1,
        h: 2,
        w: 2,
    };
    let (x, w, b) = (
        gpu.upload(&[0f32; 4]).unwrap(),
        gpu.upload(&[0f32; 9]).unwrap(),
        gpu.upload(&[0f32; 1]).unwrap(),
    );
    let e = gpu
        .conv2d(&x, d, &w, &b, 1, Window::square(3, 1, 0), false)
        .unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
    let e = gpu
        .conv2d(&x, d, &w, &b, 2, Window::square(3, 1, 1), false)
        .unwrap_err();
    assert!(e.to_string().contains("weight/bias"), "{e}");
}

#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_upsample_moves_the_cpus_bits() {
    let _g = cuda::shared();
    let Some(gpu) = cuda::device() else { return };
    let (n, c, h, w) = (2, 3, 5, 7);
    let x = randn(7, n * c * h * w);
    let want = Cpu.upsample_nearest2x(&x, n, c, h, w).unwrap();
    let got = gpu
        .upsample_nearest2x(&gpu.upload(&x).unwrap(), n, c, h, w)
        .unwrap();
    assert!(cuda::same_bits(&gpu.download(&got).unwrap(), &want));
}
