//! The toy study's trained models (assets/toy, written by scripts/train_toy.py): sitdiv's forward
//! passes equal PyTorch's on the inputs the training script saved (`toy_*.io.safetensors`), the
//! classifier recognises held-out data, and the files record how they were trained.

use crate::common;

use std::path::PathBuf;

use sitdiv::backend::cpu::Cpu;
use sitdiv::models::sit::{SiT, SiTConfig};
use sitdiv::models::toy_classifier::ToyClassifier;
use sitdiv::toy;
use sitdiv::weights::WeightFile;

fn asset(name: &str) -> PathBuf {
    common::repo().join("assets/toy").join(name)
}

fn classifier() -> ToyClassifier<Cpu> {
    ToyClassifier::load(
        &Cpu,
        &WeightFile::open(asset("toy_classifier.safetensors")).unwrap(),
    )
    .unwrap()
}

#[test]
fn classifier_equals_pytorch() {
    let io = common::open("toy_classifier.io.safetensors");
    let images: Vec<u8> = io.i64("images").unwrap().iter().map(|&v| v as u8).collect();
    let n = io.shape("images").unwrap()[0];
    let out = classifier().forward(&Cpu, &images, (n, 32, 32, 3)).unwrap();
    let mut r = common::Report::new("toy classifier");
    r.check(
        "features",
        &out.features,
        &io.f32("features").unwrap(),
        1e-5,
    );
    r.check("logits", &out.logits, &io.f32("logits").unwrap(), 1e-5);
    r.finish();
}

#[test]
fn classifier_recognises_held_out_data() {
    let per_class = 30;
    let (images, labels) = toy::dataset(toy::HELD_OUT_SEED, per_class).unwrap();
    let out = classifier()
        .forward(&Cpu, &images, (labels.len(), 32, 32, 3))
        .unwrap();
    let hits = out
        .logits
        .chunks(toy::NUM_CLASSES)
        .zip(&labels)
        .filter(|(row, &y)| {
            let best = (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b });
            best as i64 == y
        })
        .count();
    let acc = hits as f64 / labels.len() as f64;
    println!("held-out accuracy {acc:.4} ({hits}/{})", labels.len());
    assert!(acc >= 0.95, "held-out accuracy {acc} < 0.95");
}

#[test]
fn toy_sit_equals_pytorch() {
    let w = WeightFile::open(asset("toy_sit.safetensors")).unwrap();
    let cfg = SiTConfig::from_metadata(&w)
        .unwrap()
        .expect("config in the metadata");
    assert_eq!(
        (cfg.in_channels, cfg.input_size),
        (3, 32),
        "a pixel-space model"
    );
    let sit = SiT::load(&Cpu, &w, cfg).unwrap();
    let io = common::open("toy_sit.io.safetensors");
    let out = sit
        .forward(
            &Cpu,
            &io.f32("x").unwrap(),
            &io.f32("t").unwrap(),
            &io.i64("y").unwrap(),
        )
        .unwrap();
    let mut r = common::Report::new("toy SiT");
    r.check("out", &out, &io.f32("out").unwrap(), 1e-5);
    r.finish();
}

#[test]
fn weights_record_their_training_and_fit_in_5_mb() {
    let mut bytes = 0;
    for (name, keys) in [
        (
            "toy_sit.safetensors",
            &["config", "steps", "loss_curve", "training_seed", "data"][..],
        ),
        (
            "toy_classifier.safetensors",
            &[
                "config",
                "steps",
                "loss_curve",
                "held_out_accuracy",
                "training_seed",
                "data",
            ][..],
        ),
    ] {
        let w = WeightFile::open(asset(name)).unwrap();
        for k in keys {
            assert!(
                w.metadata().contains_key(*k),
                "{name}: no {k} in the metadata"
            );
        }
        bytes += w.bytes().len();
    }
    println!("toy models: {bytes} bytes");
    assert!(bytes <= 5_000_000, "{bytes} bytes > 5 MB");
}
