//! The vectorisable exp/tanh and the fixed-order reductions.

use sitdiv::backend::cpu::math;

#[test]
fn exp_is_within_two_ulp() {
    let mut worst = 0f64;
    for i in -87_000..=88_000 {
        let x = i as f32 * 0.001;
        let r = (x as f64).exp();
        let ulp = (r as f32).to_bits() as i64 - math::exp(x).to_bits() as i64;
        worst = worst.max(ulp.abs() as f64);
    }
    assert!(worst <= 2.0, "exp off by {worst} ulp");
    assert_eq!(math::exp(-1000.0), math::exp(-87.3));
    assert!(math::exp(0.0) == 1.0);
}

#[test]
fn tanh_is_within_5e7() {
    for i in -20_000..=20_000 {
        let x = i as f32 * 0.001;
        let e = (math::tanh(x) as f64 - (x as f64).tanh()).abs();
        assert!(e <= 5e-7, "tanh({x}) off by {e:e}");
    }
    assert_eq!(math::tanh(100.0), 1.0);
}

#[test]
fn softmax_rows_sum_to_one_and_simd_paths_agree() {
    let row: Vec<f32> = (0..37).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
    let mut a = row.clone();
    math::softmax(&mut a);
    let mut b = row.clone();
    math::simd(|| math::softmax(&mut b));
    assert_eq!(a, b, "AVX2 and baseline paths differ");
    let s: f64 = a.iter().map(|&v| v as f64).sum();
    assert!((s - 1.0).abs() < 1e-6);
    let m = row.iter().cloned().fold(f32::MIN, f32::max);
    let z: f64 = row.iter().map(|&v| ((v - m) as f64).exp()).sum();
    for (&p, &v) in a.iter().zip(&row) {
        assert!((p as f64 - ((v - m) as f64).exp() / z).abs() < 1e-7);
    }
}
