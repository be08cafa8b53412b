//! DreamSim's ensemble against the `dreamsim` package (tests/golden/dreamsim_tiny.*, made by
//! `scripts/dump_golden.py dreamsim`): the package's own `dreamsim()` at a tiny width, its LoRA
//! adapters merged by `scripts/convert_weights.py dreamsim`; formula images through its
//! Resize((224, 224)) bicubic + ToTensor, then the three towers and `normalize_embedding`.

use crate::common::{formula_image, open, Report};
use sitdiv::backend::cpu::Cpu;
use sitdiv::models::dreamsim::{DreamSim, DreamSimConfig, Tower};
use sitdiv::models::preprocess::Pipeline;

const IMAGES: [&str; 4] = ["gradient", "checker", "noise", "wide"];

fn model() -> DreamSim<Cpu> {
    let file = open("dreamsim_tiny.weights.safetensors");
    let cfg = DreamSimConfig::detect(&file).unwrap();
    DreamSim::load(&Cpu, &file, cfg).unwrap()
}

#[test]
fn dreamsim_matches_the_package() {
    let net = model();
    let towers: Vec<_> = net
        .config
        .towers
        .iter()
        .map(|t| (t.tower, t.embed_dim, t.depth, t.num_heads, t.feature_dim))
        .collect();
    assert_eq!(
        towers,
        vec![
            (Tower::Dino, 32, 12, 2, 32),
            (Tower::Clip, 32, 2, 2, 16),
            (Tower::OpenClip, 32, 2, 2, 16)
        ]
    );
    let x: Vec<f32> = IMAGES
        .iter()
        .flat_map(|n| {
            let (img, h, w) = formula_image(n);
            Pipeline::DreamSim.prepare(&img, (h, w))
        })
        .collect();
    let e = net.embed(&Cpu, &x, IMAGES.len()).unwrap();
    let io = open("dreamsim_tiny.io.safetensors");
    let mut r = Report::new("dreamsim_tiny");
    r.check("embedding", &e, &io.f32("embedding").unwrap(), 1e-4);
    // The package's distance: 1 − cos of the normalised embeddings.
    let d = net.config.embedding_dim();
    let dot: f64 = (0..d).map(|k| e[k] as f64 * e[d + k] as f64).sum();
    let want = io.f64("distance_0_1").unwrap()[0];
    let err = ((1.0 - dot) - want).abs() / want.abs();
    println!(
        "dreamsim distance(gradient, checker): {:.9} vs {want:.9}, rel {err:.2e}",
        1.0 - dot
    );
    assert!(err < 1e-4, "distance rel {err:.2e}");
    r.finish();
}

#[test]
fn embeddings_are_centred_and_unit_norm() {
    let net = model();
    let (img, h, w) = formula_image("noise");
    let x = Pipeline::DreamSim.prepare(&img, (h, w));
    let one = net.embed(&Cpu, &x, 1).unwrap();
    let norm: f64 = one.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let mean: f64 = one.iter().map(|&v| v as f64).sum::<f64>() / one.len() as f64;
    assert!(
        (norm - 1.0).abs() < 1e-6 && mean.abs() < 1e-7,
        "norm {norm}, mean {mean}"
    );
}
