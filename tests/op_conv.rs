//! Convolution and nearest upsampling against naive references.

#[path = "common/ops.rs"]
mod ops;

use ops::{max_err, randn};
use sitdiv::backend::cpu::Cpu;
use sitdiv::backend::Backend;

#[allow(clippy::too_many_arguments)]
fn conv_ref(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    n: usize,
    ci: usize,
    h: usize,
    wd: usize,
    co: usize,
    k: usize,
    pad: usize,
) -> Vec<f32> {
    let (ho, wo) = (h + 2 * pad + 1 - k, wd + 2 * pad + 1 - k);
    let mut y = vec![0f32; n * co * ho * wo];
    for s in 0..n {
        for o in 0..co {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = b[o] as f64;
                    for c in 0..ci {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = (
                                    oy as isize + ky as isize - pad as isize,
                                    ox as isize + kx as isize - pad as isize,
                                );
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    acc += w[((o * ci + c) * k + ky) * k + kx] as f64
                                        * x[((s * ci + c) * h + iy as usize) * wd + ix as usize]
                                            as f64;
                                }
                            }
                        }
                    }
                    y[((s * co + o) * ho + oy) * wo + ox] = acc as f32;
                }
            }
        }
    }
    y
}

#[test]
fn conv2d_matches_naive_reference() {
    // 3×3 pad 1, 1×1, and a map larger than one im2col tile (2048 pixels).
    for &(n, ci, h, w, co, k, pad) in &[
        (2, 3, 5, 7, 4, 3, 1),
        (1, 5, 9, 4, 6, 1, 0),
        (1, 2, 48, 50, 3, 3, 1),
        (2, 1, 3, 3, 2, 3, 0),
    ] {
        let x = randn(1, n * ci * h * w);
        let wt = randn(2, co * ci * k * k);
        let b = randn(3, co);
        let got = Cpu.conv2d(&x, &wt, &b, n, ci, h, w, co, k, pad).unwrap();
        let err = max_err(&got, &conv_ref(&x, &wt, &b, n, ci, h, w, co, k, pad));
        assert!(err < 1e-5, "({n},{ci},{h},{w},{co},{k},{pad}): err {err:e}");
    }
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
