//! Host-side sampler pieces: Philox known answers, noise layout, time grids, work units.

use sitdiv::pipeline::{shard_units, units};
use sitdiv::rng;
use sitdiv::sampling::grid::linspace_f32;
use sitdiv::sampling::ode::torch_row_sum;

#[test]
fn philox_known_answers() {
    // Random123 kat_vectors, philox4x32_10.
    assert_eq!(
        rng::philox4x32_10([0; 4], [0; 2]),
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    );
    assert_eq!(
        rng::philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
    );
    assert_eq!(
        rng::philox4x32_10(
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0]
        ),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
}

#[test]
fn gaussian_draws_are_pure_and_standard() {
    let a = rng::gaussian(3, 17, 2, rng::STREAM_COND, 4099);
    assert_eq!(a, rng::gaussian(3, 17, 2, rng::STREAM_COND, 4099));
    assert_eq!(
        &a[..10],
        &rng::gaussian(3, 17, 2, rng::STREAM_COND, 10)[..],
        "a prefix depends on the length"
    );
    assert_ne!(a, rng::gaussian(3, 17, 2, rng::STREAM_NULL, 4099));
    assert_ne!(a, rng::gaussian(3, 18, 2, rng::STREAM_COND, 4099));
    let big: Vec<f64> = (0..64)
        .flat_map(|i| rng::gaussian(9, i, 0, 0, 4096))
        .map(|v| v as f64)
        .collect();
    let n = big.len() as f64;
    let mean = big.iter().sum::<f64>() / n;
    let var = big.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    assert!(
        mean.abs() < 0.01 && (var - 1.0).abs() < 0.01,
        "mean {mean}, var {var}"
    );
    let labels: Vec<i64> = (0..2000).map(|i| rng::label(5, i, 1000)).collect();
    assert!(labels.iter().all(|&l| (0..1000).contains(&l)));
    assert!(
        labels
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 800
    );
}

#[test]
fn linspace_matches_torch_float32() {
    // Values verified against torch.linspace in the spec (4.1).
    let g = linspace_f32(0.0, 1.0, 250);
    assert_eq!(g[249], 1.0);
    assert_eq!(g[248] as f64, 0.9959839582443237);
    assert_eq!((g[1] - g[0]) as f64, 0.00401606410741806);
    let s = linspace_f32(0.0, 1.0 - 0.04, 250);
    assert_eq!(s[249] as f64, 0.9599999785423279);
    assert_eq!((s[1] - s[0]) as f64, 0.0038554216735064983);
}

#[test]
fn torch_row_sum_order() {
    // Five or more terms: x4.. join the first partial before the others are folded in.
    let v = [1e8f32, 1.0, -1e8, 1.0, 1.0];
    assert_eq!(torch_row_sum(&v), ((((1e8 + 1.0) + 1.0) - 1e8) + 1.0));
    assert_eq!(torch_row_sum(&[1.0, 2.0, 3.0]), 6.0);
}

#[test]
fn shards_cover_units_exactly_once() {
    for &(n, u, s) in &[(8, 4, 2), (10, 3, 3), (5, 8, 4), (100, 7, 64)] {
        let all = units(n, u);
        let mut seen = Vec::new();
        for i in 0..s {
            seen.extend(shard_units(n, u, i, s).unwrap());
        }
        assert_eq!(seen, all, "n={n} u={u} shards={s}");
        assert_eq!(all.iter().map(|x| x.len()).sum::<usize>(), n);
    }
    assert!(shard_units(8, 4, 2, 2).is_err());
}

#[test]
fn score_and_noise_predictions_convert_like_the_reference() {
    use sitdiv::sampling::ode::{self, OdeMethod, OdeSettings, Tolerances};
    use sitdiv::sampling::path::PathType;
    use sitdiv::sampling::Prediction;
    // A constant model output m: one Euler step from t0 must follow `get_drift`.
    let (x0, m, t0, t1) = (0.7f32, -0.3f32, 0.25f32, 0.5f32);
    let step = |p: Prediction| {
        let mut model = |x: &[f32], _t: f32| Ok(vec![m; x.len()]);
        let s = OdeSettings {
            method: OdeMethod::Euler,
            path: PathType::Linear,
            prediction: p,
            tol: Tolerances {
                atol: 1e-6,
                rtol: 1e-3,
            },
        };
        ode::sample(&mut model, s, vec![x0], &[t0, t1], false)
            .unwrap()
            .sample[0]
    };
    // drift_var = (α'/α)·σ² − σ·σ', spelled as upstream does.
    let d_sigma = -1.0f32;
    let (a, var) = (
        1.0 / t0,
        (1.0 / t0) * ((1.0 - t0) * (1.0 - t0)) - (1.0 - t0) * d_sigma,
    );
    let h = t1 - t0;
    assert_eq!(step(Prediction::Velocity), x0 + h * m);
    assert_eq!(step(Prediction::Score), x0 + h * (a * x0 + var * m));
    assert_eq!(
        step(Prediction::Noise),
        x0 + h * (a * x0 + var * (m / -(1.0 - t0)))
    );
}

#[test]
fn dopri5_stops_at_once_on_non_finite_model_output() {
    use sitdiv::sampling::ode::{self, OdeMethod, OdeSettings, Tolerances};
    use sitdiv::sampling::path::PathType;
    use sitdiv::sampling::Prediction;
    let mut calls = 0;
    let mut model = |x: &[f32], t: f32| {
        calls += 1;
        Ok(x.iter()
            .map(|&v| if t > 0.5 { f32::NAN } else { -v })
            .collect())
    };
    let s = OdeSettings {
        method: OdeMethod::Dopri5,
        path: PathType::Linear,
        prediction: Prediction::Velocity,
        tol: Tolerances {
            atol: 1e-6,
            rtol: 1e-3,
        },
    };
    let err = ode::sample(
        &mut model,
        s,
        vec![1.0; 8],
        &linspace_f32(0.0, 1.0, 5),
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not finite"), "{err}");
    assert!(calls < 60, "{calls} model calls before giving up");
}

#[test]
fn guidance_interval_ends_at_t_1() {
    use sitdiv::sampling::guidance::Guidance;
    // (2n = 2, C = 1, 1 value): cond 2, uncond 1.
    let g = Guidance {
        interval: Some((0.2, 1.5)),
        all_channels: true,
        ..Guidance::cfg(3.0)
    };
    let at = |t: f32| {
        let mut o = vec![2.0, 1.0];
        g.combine(&mut o, 1, 1, t);
        o[0]
    };
    assert_eq!(at(0.5), 4.0, "inside: uncond + s·(cond − uncond)");
    assert_eq!(at(1.0), 4.0, "t = 1 is inside");
    assert_eq!(at(1.1), 2.0, "dopri5's evaluations past t = 1 are outside");
    assert_eq!(at(0.1), 2.0, "before the interval: cond");
}
