//! SiLU and tanh-GELU against f64 closed forms.

#[path = "common/ops.rs"]
mod ops;

use sitdiv::backend::cpu::Cpu;
use sitdiv::backend::Backend;

#[test]
fn gelu_tanh_matches_closed_form() {
    let x: Vec<f32> = (-4000..=4000)
        .map(|i| i as f32 * 0.0025)
        .chain([-30.0, 30.0, 1e-7, -1e-7])
        .collect();
    let mut y = x.clone();
    Cpu.gelu_tanh(&mut y).unwrap();
    let c = (2.0 / std::f64::consts::PI).sqrt();
    for (&x, &y) in x.iter().zip(&y) {
        let x = x as f64;
        let r = 0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh());
        // f32 rounding of 1 + tanh(·) alone costs up to 6e-8·|x| where tanh → −1.
        assert!(
            (y as f64 - r).abs() <= 3e-7 * x.abs().max(1.0),
            "gelu({x}) = {y}, expected {r}"
        );
    }
}

#[test]
fn silu_matches_closed_form() {
    let x: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.01).collect();
    let y = Cpu.silu(&x).unwrap();
    for (&x, &y) in x.iter().zip(&y) {
        let r = x as f64 / (1.0 + (-(x as f64)).exp());
        assert!(
            (y as f64 - r).abs() <= 1e-6 * r.abs().max(1.0),
            "silu({x}) = {y}, expected {r}"
        );
    }
}

#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[path = "common/cuda.rs"]
mod cuda;

#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_activations_match_cpu() {
    let Some(gpu) = cuda::device() else { return };
    let x: Vec<f32> = ops::randn(1, 10_007).iter().map(|v| 4.0 * v).collect();
    let gx = gpu.upload(&x).unwrap();
    assert!(
        cuda::rel(&gpu, &gpu.silu(&gx).unwrap(), &Cpu.silu(&x).unwrap()) <= 1e-5,
        "silu"
    );
    let (mut g, mut c) = (gpu.upload(&x).unwrap(), x.clone());
    gpu.gelu_tanh(&mut g).unwrap();
    Cpu.gelu_tanh(&mut c).unwrap();
    assert!(cuda::rel(&gpu, &g, &c) <= 1e-5, "gelu_tanh");
}
