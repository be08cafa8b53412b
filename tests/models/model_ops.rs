//! Each network declares the backend ops its forward needs (`OPS`), and `load` refuses a backend
//! that lacks one, naming it: a job fails before its first unit instead of after hours of work.
//! Here every network runs once on a backend that records the ops called, and the record must
//! equal the declaration (a union over the variants a network has).

use std::collections::BTreeSet;

use crate::common::{formula_image, open, repo};
use sitdiv::backend::{Backend, Op};
use sitdiv::models::clip::{ClipVision, ClipVisionConfig};
use sitdiv::models::dinov2::{Dinov2, Dinov2Config};
use sitdiv::models::dreamsim::{DreamSim, DreamSimConfig};
use sitdiv::models::inception::InceptionV3;
use sitdiv::models::lpips::{Lpips, LpipsNet};
use sitdiv::models::preprocess::{Pipeline, PIPELINE_SIZE};
use sitdiv::models::resnet::ResNet50;
use sitdiv::models::sit::{SiT, SiTConfig};
use sitdiv::models::synthetic;
use sitdiv::models::toy_classifier::ToyClassifier;
use sitdiv::models::vae::{AutoencoderKL, Encoder};
use sitdiv::weights::WeightFile;

use crate::common::recording;

use recording::Recording;

/// Runs `forward` on a fresh recording backend; returns the ops it called.
fn record(forward: impl FnOnce(&Recording)) -> BTreeSet<Op> {
    let be = Recording::default();
    forward(&be);
    be.seen().into_iter().collect()
}

/// Each variant's record lies within the declaration, and together they cover it.
fn check(model: &str, declared: &[Op], records: &[BTreeSet<Op>]) {
    let declared: BTreeSet<Op> = declared.iter().copied().collect();
    let mut union = BTreeSet::new();
    for r in records {
        let extra: Vec<&str> = r.difference(&declared).map(|o| o.name()).collect();
        assert!(
            extra.is_empty(),
            "{model} calls {extra:?}, which its OPS does not declare"
        );
        union.extend(r.iter().copied());
    }
    let unused: Vec<&str> = declared.difference(&union).map(|o| o.name()).collect();
    assert!(
        unused.is_empty(),
        "{model} declares {unused:?}, which no forward called"
    );
    println!(
        "{model}: {}",
        union
            .iter()
            .map(|o| o.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn image(n: usize) -> Vec<f32> {
    let (img, h, w) = formula_image("gradient");
    (0..n)
        .flat_map(|_| Pipeline::Dinov2Hf.prepare(&img, (h, w)))
        .collect()
}

#[test]
fn sit_declares_its_ops() {
    let w = open("sit_tiny.weights.safetensors");
    let io = open("sit_tiny.io.safetensors");
    let r = record(|be| {
        let cfg = SiTConfig::from_metadata(&w).unwrap().unwrap();
        let model = SiT::load(be, &w, cfg).unwrap();
        model
            .forward(
                be,
                &io.f32("x").unwrap(),
                &io.f32("t").unwrap(),
                &io.i64("y").unwrap(),
            )
            .unwrap();
    });
    check("SiT", SiT::<Recording>::OPS, &[r]);
}

#[test]
fn vae_declares_its_ops() {
    let w = open("vae_tiny.weights.safetensors");
    let z = open("vae_tiny.io.safetensors").f32("z").unwrap();
    let r = record(|be| {
        let vae = AutoencoderKL::load(be, &w).unwrap();
        vae.decode(be, &z, 2, 8, 8, None).unwrap();
    });
    check("SD-VAE decoder", AutoencoderKL::<Recording>::OPS, &[r]);
    let (w, cfg) = crate::common::vae_encoder_weights();
    let x = open("vae_encoder.io.safetensors").f32("b2_32.x").unwrap();
    let r = record(|be| {
        let enc = Encoder::load(be, &w, Some(cfg)).unwrap();
        enc.moments(be, &x, 2, (32, 32), None).unwrap();
    });
    check("SD-VAE encoder", Encoder::<Recording>::OPS, &[r]);
}

#[test]
fn vits_declare_their_ops() {
    let s = PIPELINE_SIZE;
    let dino = open("dinov2_tiny.weights.safetensors");
    let release = open("dinov2_release_tiny.weights.safetensors");
    let records: Vec<_> = [&dino, &release]
        .into_iter()
        .map(|f| {
            record(|be| {
                let net = Dinov2::load(be, f, Dinov2Config::detect(f).unwrap()).unwrap();
                net.forward(be, &image(1), 1, (s, s)).unwrap();
            })
        })
        .collect();
    check("DINOv2", Dinov2::<Recording>::OPS, &records);
    let clip = open("clip_tiny.weights.safetensors");
    let r = record(|be| {
        let net = ClipVision::load(be, &clip, ClipVisionConfig::detect(&clip).unwrap()).unwrap();
        net.forward(be, &image(1), 1).unwrap();
    });
    check("CLIP", ClipVision::<Recording>::OPS, &[r]);
    let ds = open("dreamsim_tiny.weights.safetensors");
    let r = record(|be| {
        let net = DreamSim::load(be, &ds, DreamSimConfig::detect(&ds).unwrap()).unwrap();
        net.embed(be, &image(1), 1).unwrap();
    });
    check("DreamSim", DreamSim::<Recording>::OPS, &[r]);
}

#[test]
fn convnets_declare_their_ops() {
    let (img, h, w) = formula_image("gradient");
    let side = 64;
    let crop: Vec<u8> = (0..side)
        .flat_map(|y| img[y * w * 3..(y * w + side) * 3].to_vec())
        .collect();
    assert!(h >= side && w >= side);
    let inception = synthetic::inception(0).unwrap();
    let r = record(|be| {
        let net = InceptionV3::load(be, &inception).unwrap();
        net.forward_images(be, &crop, (1, side, side, 3)).unwrap();
    });
    check("FID Inception", InceptionV3::<Recording>::OPS, &[r]);
    let resnet = synthetic::resnet50(0).unwrap();
    let r = record(|be| {
        let net = ResNet50::load(be, &resnet).unwrap();
        let x: Vec<f32> = (0..3 * side * side).map(|i| (i % 7) as f32 / 7.0).collect();
        net.forward(be, &x, 1, (side, side)).unwrap();
    });
    check("ResNet-50", ResNet50::<Recording>::OPS, &[r]);
    let records: Vec<_> = [LpipsNet::Alex, LpipsNet::Vgg]
        .into_iter()
        .map(|net| {
            let mut weights = synthetic::formula_weights(net.expected_tensors(), 1).unwrap();
            // LPIPS's linear heads are non-negative.
            for (name, (_, data)) in weights.tensors.iter_mut() {
                if !name.starts_with("net.") {
                    data.iter_mut().for_each(|v| *v = v.abs());
                }
            }
            record(|be| {
                let model = Lpips::load(be, &weights, net).unwrap();
                model.features(be, &crop, (1, side, side, 3)).unwrap();
            })
        })
        .collect();
    check("LPIPS", Lpips::<Recording>::OPS, &records);
    let toy = WeightFile::open(repo().join("assets/toy/toy_classifier.safetensors")).unwrap();
    let r = record(|be| {
        let net = ToyClassifier::load(be, &toy).unwrap();
        let imgs: Vec<u8> = (0..32 * 32 * 3).map(|i| (i % 251) as u8).collect();
        net.forward(be, &imgs, (1, 32, 32, 3)).unwrap();
    });
    check("toy classifier", ToyClassifier::<Recording>::OPS, &[r]);
}

/// `load` names the network and the missing ops, on a backend that lacks them.
#[test]
fn load_refuses_a_backend_without_the_ops() {
    let w = open("vae_tiny.weights.safetensors");
    let e = sitdiv::backend::require(&Lacking, "SD-VAE decoder", AutoencoderKL::<Recording>::OPS)
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("SD-VAE decoder") && msg.contains("conv2d") && msg.contains("--device cpu"),
        "{msg}"
    );
    let e = AutoencoderKL::load(&Lacking, &w)
        .err()
        .expect("load must refuse");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("conv2d") && msg.contains("group_norm"),
        "{msg}"
    );
    println!("{msg}");
}

/// The CPU reference without convolutions and normalisations, like a backend in the making.
struct Lacking;

impl Backend for Lacking {
    type Buf = Vec<f32>;
    fn name(&self) -> String {
        "lacking".into()
    }
    fn supports(&self, op: Op) -> bool {
        !matches!(op, Op::Conv2d | Op::GroupNorm)
    }
    fn upload(&self, d: &[f32]) -> anyhow::Result<Vec<f32>> {
        Ok(d.to_vec())
    }
    fn download(&self, b: &Vec<f32>) -> anyhow::Result<Vec<f32>> {
        Ok(b.clone())
    }
    fn linear(
        &self,
        _: &Vec<f32>,
        _: &Vec<f32>,
        _: Option<&Vec<f32>>,
        _: usize,
        _: usize,
        _: usize,
    ) -> anyhow::Result<Vec<f32>> {
        unreachable!("a refused network never runs")
    }
    fn layer_norm(&self, _: &Vec<f32>, _: usize, _: usize, _: f32) -> anyhow::Result<Vec<f32>> {
        unreachable!()
    }
    fn modulate(
        &self,
        _: &mut Vec<f32>,
        _: sitdiv::backend::Cols<Self>,
        _: sitdiv::backend::Cols<Self>,
        _: usize,
        _: usize,
        _: usize,
    ) -> anyhow::Result<()> {
        unreachable!()
    }
    fn gated_add(
        &self,
        _: &mut Vec<f32>,
        _: &Vec<f32>,
        _: sitdiv::backend::Cols<Self>,
        _: usize,
        _: usize,
        _: usize,
    ) -> anyhow::Result<()> {
        unreachable!()
    }
    fn add_row(&self, _: &mut Vec<f32>, _: &Vec<f32>, _: usize, _: usize) -> anyhow::Result<()> {
        unreachable!()
    }
    fn add(&self, _: &mut Vec<f32>, _: &Vec<f32>) -> anyhow::Result<()> {
        unreachable!()
    }
    fn silu(&self, _: &Vec<f32>) -> anyhow::Result<Vec<f32>> {
        unreachable!()
    }
    fn gelu_tanh(&self, _: &mut Vec<f32>) -> anyhow::Result<()> {
        unreachable!()
    }
    fn attention(
        &self,
        _: &Vec<f32>,
        _: usize,
        _: usize,
        _: usize,
        _: usize,
    ) -> anyhow::Result<Vec<f32>> {
        unreachable!()
    }
    fn patchify(
        &self,
        _: &Vec<f32>,
        _: usize,
        _: usize,
        _: usize,
        _: usize,
        _: usize,
    ) -> anyhow::Result<Vec<f32>> {
        unreachable!()
    }
    fn unpatchify(
        &self,
        _: &Vec<f32>,
        _: usize,
        _: usize,
        _: usize,
        _: usize,
        _: usize,
        _: usize,
    ) -> anyhow::Result<Vec<f32>> {
        unreachable!()
    }
    fn gather_rows(&self, _: &Vec<f32>, _: &[usize], _: usize) -> anyhow::Result<Vec<f32>> {
        unreachable!()
    }
}
