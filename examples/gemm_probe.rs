use rayon::prelude::*;
use sitdiv::backend::cpu::gemm::{matmul, View};
use std::time::Instant;
fn bench(name: &str, m: usize, k: usize, n: usize, f: &dyn Fn(&mut [f32])) {
    let mut y = vec![0f32; m * n];
    f(&mut y);
    let it = 10;
    let s = Instant::now();
    for _ in 0..it {
        f(&mut y);
    }
    let dt = s.elapsed().as_secs_f64() / it as f64;
    println!(
        "{name} {m}x{k}x{n}: {:.2} ms, {:.1} GFLOP/s",
        dt * 1e3,
        2.0 * (m * k * n) as f64 / dt / 1e9
    );
}
fn main() {
    for &(m, k, n) in &[
        (2048usize, 384usize, 1152usize),
        (2048, 384, 1536),
        (2048, 1536, 384),
        (2048, 384, 384),
    ] {
        let x: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 13) as f32 * 0.1).collect();
        let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect(); // (K, N) row-major
        bench("msplit", m, k, n, &|y| {
            y.par_chunks_mut(m / 2 * n)
                .zip(x.par_chunks(m / 2 * k))
                .for_each(|(yb, xb)| {
                    matmul(
                        yb,
                        false,
                        View {
                            data: xb,
                            rs: k,
                            cs: 1,
                        },
                        View {
                            data: &w,
                            rs: 1,
                            cs: k,
                        },
                        m / 2,
                        n,
                        k,
                        1.0,
                        false,
                    )
                })
        });
        let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
        bench("msplit-bias-prefill", m, k, n, &|y| {
            y.par_chunks_mut(m / 2 * n)
                .zip(x.par_chunks(m / 2 * k))
                .for_each(|(yb, xb)| {
                    for r in yb.chunks_mut(n) {
                        r.copy_from_slice(&bias)
                    }
                    matmul(
                        yb,
                        true,
                        View {
                            data: xb,
                            rs: k,
                            cs: 1,
                        },
                        View {
                            data: &w,
                            rs: 1,
                            cs: k,
                        },
                        m / 2,
                        n,
                        k,
                        1.0,
                        false,
                    )
                })
        });
        bench("msplit-bias-after", m, k, n, &|y| {
            y.par_chunks_mut(m / 2 * n)
                .zip(x.par_chunks(m / 2 * k))
                .for_each(|(yb, xb)| {
                    matmul(
                        yb,
                        false,
                        View {
                            data: xb,
                            rs: k,
                            cs: 1,
                        },
                        View {
                            data: &w,
                            rs: 1,
                            cs: k,
                        },
                        m / 2,
                        n,
                        k,
                        1.0,
                        false,
                    );
                    for r in yb.chunks_mut(n) {
                        for (a, b) in r.iter_mut().zip(&bias) {
                            *a += b
                        }
                    }
                })
        });
        bench("msplit-wt", m, k, n, &|y| {
            y.par_chunks_mut(m / 2 * n)
                .zip(x.par_chunks(m / 2 * k))
                .for_each(|(yb, xb)| {
                    matmul(
                        yb,
                        false,
                        View {
                            data: xb,
                            rs: k,
                            cs: 1,
                        },
                        View {
                            data: &wt,
                            rs: n,
                            cs: 1,
                        },
                        m / 2,
                        n,
                        k,
                        1.0,
                        false,
                    )
                })
        });
        bench("m4split", m, k, n, &|y| {
            y.par_chunks_mut(m / 8 * n)
                .zip(x.par_chunks(m / 8 * k))
                .for_each(|(yb, xb)| {
                    matmul(
                        yb,
                        false,
                        View {
                            data: xb,
                            rs: k,
                            cs: 1,
                        },
                        View {
                            data: &w,
                            rs: 1,
                            cs: k,
                        },
                        m / 8,
                        n,
                        k,
                        1.0,
                        false,
                    )
                })
        });
        bench("gemm-rayon", m, k, n, &|y| {
            matmul(
                y,
                false,
                View {
                    data: &x,
                    rs: k,
                    cs: 1,
                },
                View {
                    data: &w,
                    rs: 1,
                    cs: k,
                },
                m,
                n,
                k,
                1.0,
                true,
            )
        });
    }
}
