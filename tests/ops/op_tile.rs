//! The products' kernels (src/backend/cpu/tile.rs): AVX-512, AVX2 and the scalar twin give the
//! same bits, each element the chain `acc = x·w + acc` over k in order from zero, plus the bias.

use crate::common::ops::randn;
use sitdiv::backend::cpu::gemm::{force_isa, isa, linear, Isa};

/// The documented arithmetic, written out: one f32 FMA chain per element, then the bias.
fn chain(x: &[f32], w: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f32;
            for kk in 0..k {
                acc = x[i * k + kk].mul_add(w[j * k + kk], acc);
            }
            y[i * n + j] = acc + b[j];
        }
    }
    y
}

#[test]
fn every_instruction_set_computes_the_documented_chain() {
    println!("best instruction set here: {:?}", isa());
    // Rows and columns around the kernel's 12 × 32 tile, odd depths, both
    // orientations (M < N packs x, M ≥ N packs w).
    for &(m, k, n) in &[
        (1, 1, 1),
        (3, 5, 7),
        (13, 129, 33),
        (40, 300, 12),
        (7, 257, 100),
        (64, 0, 5),
    ] {
        let (x, w, b) = (randn(1, m * k), randn(2, n * k), randn(3, n));
        let want = chain(&x, &w, &b, m, k, n);
        for forced in [Some(Isa::Scalar), Some(Isa::Avx2), None] {
            force_isa(forced);
            let got = linear(&x, &w, Some(&b), m, k, n);
            force_isa(None);
            let differ = got
                .iter()
                .zip(&want)
                .filter(|(g, r)| g.to_bits() != r.to_bits())
                .count();
            assert_eq!(
                differ, 0,
                "({m},{k},{n}) {forced:?}: {differ} values off the chain"
            );
        }
    }
}
