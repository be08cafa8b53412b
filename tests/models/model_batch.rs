//! Every network gives the same bits for an input whatever else shares its forward and however
//! many threads run it: 8 inputs as one batch (1, 2 and 3 threads), as batches of 3 + 3 + 2 and
//! one at a time. The CPU products compute each element in one fixed order
//! (src/backend/cpu/gemm.rs); these tests hold every model to it.

use crate::common::{open, repo, uniform_images};
use sitdiv::backend::cpu::Cpu;
use sitdiv::models::clip::{ClipVision, ClipVisionConfig};
use sitdiv::models::dinov2::{Dinov2, Dinov2Config};
use sitdiv::models::dreamsim::{DreamSim, DreamSimConfig};
use sitdiv::models::lpips::{Lpips, LpipsNet};
use sitdiv::models::resnet::ResNet50;
use sitdiv::models::synthetic;
use sitdiv::models::toy_classifier::ToyClassifier;
use sitdiv::models::vae::AutoencoderKL;
use sitdiv::rng;
use sitdiv::weights::WeightFile;

const N: usize = 8;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// `run(first, count)` on items `first .. first + count` must give the same bits as one batch
/// of all N, in batches of 3 + 3 + 2 and of 1, and on 1, 2 and 3 threads.
fn check(name: &str, run: impl Fn(usize, usize) -> Vec<f32> + Sync) {
    let whole = pool(2).install(|| run(0, N));
    assert_eq!(whole.len() % N, 0, "{name}: output length");
    for threads in [1, 3] {
        let again = pool(threads).install(|| run(0, N));
        assert!(again == whole, "{name}: {threads} threads changed the bits");
    }
    for sizes in [&[3, 3, 2][..], &[1; N][..]] {
        let mut parts = Vec::new();
        let mut first = 0;
        for &k in sizes {
            parts.extend(pool(2).install(|| run(first, k)));
            first += k;
        }
        let differ = parts
            .iter()
            .zip(&whole)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differ, 0,
            "{name}: batches of {sizes:?} changed {differ} values"
        );
    }
    println!(
        "{name}: {} values, identical for every batch split and thread count",
        whole.len()
    );
}

/// `count` items of `per` values from a fixed stream, starting at item `first`.
fn slice(all: &[f32], per: usize, first: usize, count: usize) -> &[f32] {
    &all[first * per..(first + count) * per]
}

#[test]
fn sit_velocities_ignore_the_batch_and_threads() {
    let sit = crate::common::load_tiny("sit_tiny.weights.safetensors");
    let per = sit.config.sample_len();
    let x = rng::gaussian(1, 0, 0, 0, N * per);
    let t: Vec<f32> = (0..N).map(|i| (i as f32 + 0.5) / N as f32).collect();
    let y: Vec<i64> = (0..N as i64).map(|i| i % 3).collect();
    check("SiT (tiny)", |f, k| {
        sit.forward(&Cpu, slice(&x, per, f, k), &t[f..f + k], &y[f..f + k])
            .unwrap()
    });
}

#[test]
fn vit_embeddings_ignore_the_batch_and_threads() {
    let per = 3 * 224 * 224;
    let x = rng::gaussian(2, 0, 0, 0, N * per);
    let f = open("dinov2_tiny.weights.safetensors");
    let dino = Dinov2::load(&Cpu, &f, Dinov2Config::detect(&f).unwrap()).unwrap();
    check("DINOv2 (tiny)", |f, k| {
        dino.forward(&Cpu, slice(&x, per, f, k), k, (224, 224))
            .unwrap()
    });
    let f = open("clip_tiny.weights.safetensors");
    let clip = ClipVision::load(&Cpu, &f, ClipVisionConfig::detect(&f).unwrap()).unwrap();
    check("CLIP (tiny)", |f, k| {
        clip.forward(&Cpu, slice(&x, per, f, k), k).unwrap()
    });
    let f = open("dreamsim_tiny.weights.safetensors");
    let ds = DreamSim::load(&Cpu, &f, DreamSimConfig::detect(&f).unwrap()).unwrap();
    check("DreamSim (tiny)", |f, k| {
        ds.embed(&Cpu, slice(&x, per, f, k), k).unwrap()
    });
}

#[test]
fn conv_nets_ignore_the_batch_and_threads() {
    // ResNet-50 at its released size on small inputs: strided and 1×1 convolutions, pools.
    let s = 48;
    let per = 3 * s * s;
    let x = rng::gaussian(3, 0, 0, 0, N * per);
    let r50 = ResNet50::load(&Cpu, &synthetic::resnet50(0).unwrap()).unwrap();
    check("ResNet-50", |f, k| {
        r50.forward(&Cpu, slice(&x, per, f, k), k, (s, s)).unwrap()
    });
    let side = 64;
    let img = uniform_images(4, N, side);
    let one = side * side * 3;
    let mut w = synthetic::formula_weights(LpipsNet::Alex.expected_tensors(), 0).unwrap();
    for (name, (_, data)) in w.tensors.iter_mut() {
        if name.starts_with("lin") || name.starts_with("scaling_layer") {
            data.iter_mut().for_each(|v| *v = v.abs() + 0.01);
        }
    }
    let alex = Lpips::load(&Cpu, &w, LpipsNet::Alex).unwrap();
    check("LPIPS AlexNet", |f, k| {
        alex.features(&Cpu, &img[f * one..(f + k) * one], (k, side, side, 3))
            .unwrap()
    });
    let toy = ToyClassifier::load(
        &Cpu,
        &WeightFile::open(repo().join("assets/toy/toy_classifier.safetensors")).unwrap(),
    )
    .unwrap();
    let img = uniform_images(5, N, 32);
    let one = 32 * 32 * 3;
    check("toy classifier", |f, k| {
        toy.forward(&Cpu, &img[f * one..(f + k) * one], (k, 32, 32, 3))
            .unwrap()
            .features
    });
    let vae = AutoencoderKL::load(&Cpu, &open("vae_tiny.weights.safetensors")).unwrap();
    let per = 4 * 8 * 8;
    let z = rng::gaussian(6, 0, 0, 0, N * per);
    check("SD-VAE decoder (tiny)", |f, k| {
        vae.decode(&Cpu, slice(&z, per, f, k), k, 8, 8, None)
            .unwrap()
    });
}
