//! CMMD against a float64 numpy transcription of the paper's formula
//! (tests/golden/cmmd_formula.safetensors, made by scripts/dump_cmmd_golden.py).

use crate::common::open;
use sitdiv::metrics::cmmd::cmmd;

#[test]
fn cmmd_matches_the_formula() {
    let f = open("cmmd_formula.safetensors");
    for case in ["clip", "wide"] {
        let (x, y) = (
            f.f32(&format!("{case}.x")).unwrap(),
            f.f32(&format!("{case}.y")).unwrap(),
        );
        let d = f.info(&format!("{case}.x")).unwrap().shape[1];
        let want = f.f64(&format!("{case}.cmmd")).unwrap()[0];
        let got = cmmd(&x, &y, d).unwrap();
        let rel = ((got - want) / want).abs();
        println!(
            "cmmd {case}: {got} vs {want} (n {}, m {}, d {d}): rel {rel:.1e} (tolerance 1e-9)",
            x.len() / d,
            y.len() / d
        );
        assert!(rel <= 1e-9, "cmmd {case}: {got} vs {want}, rel {rel:.1e}");
    }
}

#[test]
fn cmmd_is_zero_on_equal_sets_and_symmetric() {
    let f = open("cmmd_formula.safetensors");
    let (x, y) = (f.f32("wide.x").unwrap(), f.f32("wide.y").unwrap());
    let d = f.info("wide.x").unwrap().shape[1];
    assert!(cmmd(&x, &x, d).unwrap().abs() < 1e-12);
    let (a, b) = (cmmd(&x, &y, d).unwrap(), cmmd(&y, &x, d).unwrap());
    assert!(((a - b) / a).abs() < 1e-12, "{a} vs {b}");
    // Thread-count independence: the same bits from a one-thread pool.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    assert_eq!(
        pool.install(|| cmmd(&x, &y, d).unwrap()).to_bits(),
        a.to_bits()
    );
    let e = cmmd(&x, &y[..y.len() - 1], d).unwrap_err();
    assert!(e.to_string().contains("not rows of width"), "{e}");
}
