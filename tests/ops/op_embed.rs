//! Patchify / unpatchify index maps and the embedding lookup.

use crate::common::ops;

use ops::randn;
use sitdiv::backend::cpu::Cpu;
use sitdiv::backend::Backend;

#[test]
fn patchify_follows_conv_weight_order() {
    let (b, c, h, w, p) = (2, 3, 6, 4, 2);
    let x = randn(1, b * c * h * w);
    let y = Cpu.patchify(&x, b, c, h, w, p).unwrap();
    let (gh, gw) = (h / p, w / p);
    for n in 0..b {
        for i in 0..gh {
            for j in 0..gw {
                for ch in 0..c {
                    for a in 0..p {
                        for bb in 0..p {
                            let tok = (n * gh + i) * gw + j;
                            assert_eq!(
                                y[tok * c * p * p + (ch * p + a) * p + bb],
                                x[((n * c + ch) * h + p * i + a) * w + p * j + bb]
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn unpatchify_keeps_interleaved_channels() {
    let (b, c_out, keep, h, w, p) = (2, 8, 4, 4, 6, 2);
    let o = randn(2, b * h * w * c_out);
    let y = Cpu.unpatchify(&o, b, c_out, keep, h, w, p).unwrap();
    let gw = w / p;
    for n in 0..b {
        for ch in 0..keep {
            for r in 0..h {
                for col in 0..w {
                    let (i, a, j, bb) = (r / p, r % p, col / p, col % p);
                    let src =
                        o[((n * (h / p) + i) * gw + j) * p * p * c_out + (a * p + bb) * c_out + ch];
                    assert_eq!(y[((n * keep + ch) * h + r) * w + col], src);
                }
            }
        }
    }
}

#[test]
fn gather_rows_picks_table_rows() {
    let table = randn(3, 5 * 4);
    let g = Cpu.gather_rows(&table, &[4, 0, 4], 4).unwrap();
    assert_eq!(&g[..4], &table[16..20]);
    assert_eq!(&g[4..8], &table[..4]);
    assert_eq!(&g[8..], &table[16..20]);
    assert!(
        Cpu.gather_rows(&table, &[5], 4).is_err(),
        "out-of-range id accepted"
    );
}

#[cfg(any(feature = "cuda", feature = "cuda12"))]
use crate::common::cuda;

#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_embed_ops_match_cpu() {
    let Some(gpu) = cuda::device() else { return };
    let (b, c, h, w, p) = (3, 4, 8, 12, 4);
    let x = randn(1, b * c * h * w);
    let gp = gpu
        .patchify(&gpu.upload(&x).unwrap(), b, c, h, w, p)
        .unwrap();
    assert_eq!(
        cuda::rel(&gpu, &gp, &Cpu.patchify(&x, b, c, h, w, p).unwrap()),
        0.0,
        "patchify"
    );
    let o = randn(2, b * h * w * 8);
    let gu = gpu
        .unpatchify(&gpu.upload(&o).unwrap(), b, 8, 4, h, w, p)
        .unwrap();
    assert_eq!(
        cuda::rel(&gpu, &gu, &Cpu.unpatchify(&o, b, 8, 4, h, w, p).unwrap()),
        0.0,
        "unpatchify"
    );
    let table = randn(3, 11 * 5);
    let gg = gpu
        .gather_rows(&gpu.upload(&table).unwrap(), &[10, 0, 3], 5)
        .unwrap();
    assert_eq!(
        cuda::rel(&gpu, &gg, &Cpu.gather_rows(&table, &[10, 0, 3], 5).unwrap()),
        0.0,
        "gather_rows"
    );
}

#[test]
fn transpose_swaps_the_last_two_axes() {
    let (b, r, c) = (2, 3, 5);
    let x = randn(9, b * r * c);
    let y = Cpu.transpose(&x, b, r, c).unwrap();
    for n in 0..b {
        for i in 0..r {
            for j in 0..c {
                assert_eq!(y[(n * c + j) * r + i], x[(n * r + i) * c + j]);
            }
        }
    }
}

#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_transpose_moves_the_cpus_bits() {
    let _g = cuda::shared();
    let Some(gpu) = cuda::device() else { return };
    let (b, r, c) = (3, 257, 65);
    let x = randn(13, b * r * c);
    let want = Cpu.transpose(&x, b, r, c).unwrap();
    let got = gpu.transpose(&gpu.upload(&x).unwrap(), b, r, c).unwrap();
    assert!(cuda::same_bits(&gpu.download(&got).unwrap(), &want));
}
