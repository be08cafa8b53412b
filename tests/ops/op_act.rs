//! SiLU, tanh-GELU, exact GELU and quick GELU against f64 closed forms.

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
use crate::common::{cuda, ops};

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
    let (mut g, mut c) = (gpu.upload(&x).unwrap(), x.clone());
    gpu.gelu_erf(&mut g).unwrap();
    Cpu.gelu_erf(&mut c).unwrap();
    assert!(cuda::rel(&gpu, &g, &c) <= 1e-6, "gelu_erf");
    let (mut g, mut c) = (gpu.upload(&x).unwrap(), x.clone());
    gpu.quick_gelu(&mut g).unwrap();
    Cpu.quick_gelu(&mut c).unwrap();
    assert!(cuda::rel(&gpu, &g, &c) <= 1e-5, "quick_gelu");
}

#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_relu_moves_the_cpus_bits() {
    let Some(gpu) = cuda::device() else { return };
    let x: Vec<f32> = ops::randn(2, 4099)
        .into_iter()
        .chain([f32::NAN, -0.0, 0.0, f32::NEG_INFINITY, f32::INFINITY])
        .collect();
    let (mut g, mut c) = (gpu.upload(&x).unwrap(), x.clone());
    gpu.relu(&mut g).unwrap();
    Cpu.relu(&mut c).unwrap();
    let g = gpu.download(&g).unwrap();
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&g), bits(&c), "relu differs from the cpu's bits");
    assert!(g[4099].is_nan() && g[4100].to_bits() == (-0.0f32).to_bits());
}

#[test]
fn gelu_erf_and_quick_gelu_match_closed_forms() {
    let x: Vec<f32> = (-4000..=4000)
        .map(|i| i as f32 * 0.0025)
        .chain([-30.0, 30.0, 1e-7, -1e-7])
        .collect();
    let (mut g, mut q) = (x.clone(), x.clone());
    Cpu.gelu_erf(&mut g).unwrap();
    Cpu.quick_gelu(&mut q).unwrap();
    for ((&x, &g), &q) in x.iter().zip(&g).zip(&q) {
        let xd = x as f64;
        // erf(z) = 1 − erfc(z); a power series is enough at these arguments for a check.
        let r = 0.5 * xd * (1.0 + erf_ref(xd / std::f64::consts::SQRT_2));
        assert!(
            (g as f64 - r).abs() <= 1e-7 * xd.abs().max(1.0),
            "gelu({x}) = {g}, expected {r}"
        );
        let rq = xd / (1.0 + (-1.702 * xd).exp());
        assert!(
            (q as f64 - rq).abs() <= 3e-7 * xd.abs().max(1.0),
            "quick_gelu({x}) = {q}, expected {rq}"
        );
    }
}

/// erf: Taylor series for |z| ≤ 4, else 1 − erfc from its asymptotic series (both good to
/// ~1e-11 here).
fn erf_ref(z: f64) -> f64 {
    if z.abs() > 4.0 {
        let z2 = z * z;
        let erfc = (-z2).exp() / (z.abs() * std::f64::consts::PI.sqrt())
            * (1.0 - 1.0 / (2.0 * z2) + 3.0 / (4.0 * z2 * z2) - 15.0 / (8.0 * z2 * z2 * z2));
        return z.signum() * (1.0 - erfc);
    }
    let (mut term, mut sum) = (z, z);
    for n in 1..200 {
        term *= -z * z / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn relu_zeroes_negatives_and_keeps_nan() {
    let mut x = vec![-2.0, -0.0, 0.0, 3.5, f32::NAN, f32::NEG_INFINITY];
    Cpu.relu(&mut x).unwrap();
    assert_eq!(&x[..4], &[0.0, -0.0, 0.0, 3.5]);
    assert!(x[4].is_nan() && x[5] == 0.0);
}

#[test]
fn gelu_erf_equals_the_libm_routes() {
    // Dense and random inputs: the branch-free f64 evaluation equals libm's erfc route to the
    // bit everywhere. The former route, `1 + erf(z)`, cancels below x ≈ −5; above, it differs
    // only where it disagrees with libm's own erfc route (a rounding tie of its f64 result).
    let mut x: Vec<f32> = (-120_000..=120_000).map(|i| i as f32 * 1e-4).collect();
    x.extend(
        sitdiv::rng::gaussian(9, 0, 0, 0, 400_000)
            .iter()
            .map(|v| 3.0 * v),
    );
    let mut g = x.clone();
    Cpu.gelu_erf(&mut g).unwrap();
    let (mut off_erf, mut off_erfc) = (0, 0);
    for (&x, &g) in x.iter().zip(&g) {
        let xd = x as f64;
        let z = xd * std::f64::consts::FRAC_1_SQRT_2;
        let via_erf = (0.5 * xd * (1.0 + libm::erf(z))) as f32;
        let e = libm::erfc(z.abs());
        let via_erfc = (0.5 * xd * if z >= 0.0 { 2.0 - e } else { e }) as f32;
        let routes_agree = via_erf.to_bits() == via_erfc.to_bits();
        off_erf += usize::from(x >= -5.0 && routes_agree && g.to_bits() != via_erf.to_bits());
        off_erfc +=
            usize::from(g.to_bits() != via_erfc.to_bits() && !(g.is_nan() && via_erfc.is_nan()));
    }
    println!(
        "gelu_erf: {} inputs, {off_erf} off 1 + erf, {off_erfc} off erfc",
        x.len()
    );
    assert_eq!((off_erf, off_erfc), (0, 0), "gelu_erf left the libm routes");
}

/// The split of a 3xTF32 product's left operand on the device moves its CPU twin's bits (rows
/// [hi | hi | lo]), ties, ±∞, NaN and −0 included; and hi + lo is each finite value within 2⁻²²
/// of it, where TF32 alone keeps 2⁻¹¹.
#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_split_tf32_moves_the_cpus_bits() {
    use sitdiv::backend::cpu::act::{split_tf32, tf32, Side};
    use sitdiv::backend::Precision;
    let Some(gpu) = cuda::device_in(Precision::Tf32) else {
        return;
    };
    let k = 37;
    let mut x: Vec<f32> = ops::randn(3, k * 11).iter().map(|v| 1e3 * v).collect();
    let tie = f32::from_bits(0x3f80_1000); // 1 + 2⁻¹¹: halfway between two TF32 values
    x[..8].copy_from_slice(&[
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        f32::MAX,
        tie,
        -tie,
        1e-40,
    ]);
    let g = gpu
        .download(&gpu.operand(gpu.upload(&x).unwrap(), k).unwrap())
        .unwrap();
    let c = split_tf32(&x, k, Side::Left);
    assert!(
        cuda::same_bits(&g, &c),
        "split_tf32 differs from its cpu twin"
    );
    assert_eq!(
        (tf32(tie), tf32(-tie)),
        (1.0 + 2f32.powi(-10), -1.0 - 2f32.powi(-10))
    );
    for (row, parts) in x.chunks(k).zip(c.chunks(3 * k)) {
        for (j, &v) in row.iter().enumerate() {
            let (hi, hi2, lo) = (parts[j], parts[k + j], parts[2 * k + j]);
            assert_eq!(hi.to_bits(), hi2.to_bits());
            assert_eq!(hi.to_bits() & 0x1fff, 0, "hi of {v} is not TF32");
            assert_eq!(lo.to_bits() & 0x1fff, 0, "lo of {v} is not TF32");
            if hi.is_finite() {
                let e = (hi as f64 + lo as f64 - v as f64).abs();
                // Subnormals keep their absolute grid, 2⁻¹³⁶ in TF32.
                assert!(
                    e <= (v as f64).abs() * 2f64.powi(-22) + 2f64.powi(-136),
                    "{v}: hi + lo off by {e:e}"
                );
            }
        }
    }
}
