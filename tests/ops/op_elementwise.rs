//! Residual adds: plain, broadcast over the batch, gated (the gated form is in op_norm.rs with
//! the adaLN chunks it reads).

use sitdiv::backend::cpu::Cpu;
use sitdiv::backend::Backend;

#[test]
fn add_and_add_row() {
    let mut x = vec![1f32; 6];
    Cpu.add_row(&mut x, &vec![1.0, 2.0, 3.0], 2, 3).unwrap();
    assert_eq!(x, [2.0, 3.0, 4.0, 2.0, 3.0, 4.0]);
    Cpu.add(&mut x, &vec![1.0; 6]).unwrap();
    assert_eq!(x, [3.0, 4.0, 5.0, 3.0, 4.0, 5.0]);
    assert!(
        Cpu.add(&mut x, &vec![1.0; 5]).is_err(),
        "shape mismatch accepted"
    );
    assert!(
        Cpu.add_row(&mut x, &vec![1.0; 4], 2, 3).is_err(),
        "shape mismatch accepted"
    );
}

#[cfg(any(feature = "cuda", feature = "cuda12"))]
use crate::common::cuda;

#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_adds_match_cpu() {
    let Some(gpu) = cuda::device() else { return };
    let x: Vec<f32> = (0..3 * 1001).map(|i| i as f32 * 0.5).collect();
    let row: Vec<f32> = (0..1001).map(|i| -(i as f32)).collect();
    let (mut g, mut c) = (gpu.upload(&x).unwrap(), x.clone());
    gpu.add_row(&mut g, &gpu.upload(&row).unwrap(), 3, 1001)
        .unwrap();
    Cpu.add_row(&mut c, &row, 3, 1001).unwrap();
    gpu.add(&mut g, &gpu.upload(&x).unwrap()).unwrap();
    Cpu.add(&mut c, &x).unwrap();
    assert_eq!(cuda::rel(&gpu, &g, &c), 0.0);
}

/// One thread per element in 64-bit arithmetic: past 2³² elements (SiT-XL/2 at 512 px, batch
/// ≳ 900) the grid still covers every element; past the grid's 2³¹ − 1 blocks it is refused.
#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_grid_covers_more_than_2_32_elements() {
    use sitdiv::backend::cuda::launch::grid_1d;
    for n in [
        1usize,
        255,
        256,
        257,
        (1 << 32) - 1,
        1 << 32,
        (1 << 32) + 5,
        5_000_000_000,
    ] {
        let d = grid_1d(n).unwrap();
        let threads = d.grid.0 as usize * d.block.0 as usize;
        assert!(
            threads >= n && threads - n < d.block.0 as usize,
            "{n} elements: {d:?}"
        );
    }
    assert!(grid_1d(1 << 40).is_err());
}
