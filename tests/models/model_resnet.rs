//! The ResNet-50 trunk against torchvision (tests/golden/resnet50_formula.io.safetensors, made by
//! `scripts/dump_golden.py resnet`): formula weights, formula images through the MoCo v3
//! preprocessing, pooled features; and SimCLR v2 as its PyTorch port runs it.

use crate::common::{formula_image, open, Report};
use sitdiv::backend::cpu::Cpu;
use sitdiv::models::preprocess::{Pipeline, PIPELINE_SIZE};
use sitdiv::models::resnet::{ResNet50, EMBED_DIM};
use sitdiv::models::synthetic;
use sitdiv::weights::source::TensorSource;

#[test]
fn resnet50_matches_torchvision() {
    let io = open("resnet50_formula.io.safetensors");
    let weights = synthetic::resnet50(2016).unwrap();
    for name in [
        "conv1.weight",
        "layer4.2.bn3.weight",
        "layer1.0.downsample.1.running_var",
    ] {
        let got = weights.f32(name).unwrap();
        let want = io.f32(&format!("check.{name}")).unwrap();
        assert!(
            got[..8]
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "formula weights {name} differ from the script's"
        );
    }
    let net = ResNet50::load(&Cpu, &weights).unwrap();
    let x: Vec<f32> = ["gradient", "noise"]
        .iter()
        .flat_map(|n| {
            let (img, h, w) = formula_image(n);
            Pipeline::Mocov3.prepare(&img, (h, w))
        })
        .collect();
    let s = PIPELINE_SIZE;
    let pool = net.forward(&Cpu, &x, 2, (s, s)).unwrap();
    assert_eq!(pool.len(), 2 * EMBED_DIM);
    let mut r = Report::new("resnet50 (torchvision)");
    r.check("pool", &pool, &io.f32("pool").unwrap(), 1e-4);
    r.finish();
    // Missing tensors are named.
    let mut partial = weights;
    partial.tensors.remove("layer3.5.bn2.running_mean");
    let e = ResNet50::load(&Cpu, &partial).err().unwrap();
    assert!(e.to_string().contains("layer3.5.bn2.running_mean"), "{e}");
}

/// SimCLR v2 as Separius/SimCLRv2-Pytorch runs it (tests/golden/simclr_formula.io.safetensors,
/// `scripts/dump_golden.py simclr`): the same formula weights, renamed to its modules by the
/// inverse of `convert_weights.py simclr`, through SimCLR's preprocessing.
#[test]
fn simclr_matches_the_pytorch_port() {
    let net = ResNet50::load(&Cpu, &synthetic::resnet50(2016).unwrap()).unwrap();
    let x: Vec<f32> = ["gradient", "noise"]
        .iter()
        .flat_map(|n| {
            let (img, h, w) = formula_image(n);
            Pipeline::Simclr.prepare(&img, (h, w))
        })
        .collect();
    let s = PIPELINE_SIZE;
    let pool = net.forward(&Cpu, &x, 2, (s, s)).unwrap();
    let mut r = Report::new("simclr r50_1x_sk0 (Separius port)");
    r.check(
        "pool",
        &pool,
        &open("simclr_formula.io.safetensors").f32("pool").unwrap(),
        1e-4,
    );
    r.finish();
}
