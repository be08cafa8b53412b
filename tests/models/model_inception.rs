//! The FID Inception-v3 against pytorch-fid's network with the TF1 resize
//! (tests/golden/inception_fid.io.safetensors, made by `scripts/dump_golden.py inception`).
//! The full-size weights and the images come from the counter-based formula both sides evaluate.

use crate::common::{open, uniform_images, Report};
use sitdiv::backend::cpu::Cpu;
use sitdiv::models::inception::{InceptionV3, INPUT_SIZE, LOGITS_DIM, POOL_DIM, SPATIAL_DIM};
use sitdiv::models::preprocess::tf1_bilinear_nchw;
use sitdiv::models::synthetic;
use sitdiv::weights::source::TensorSource;

const WEIGHT_SEED: u64 = 2015;

fn bits_equal(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn inception_matches_pytorch_fid_with_tf1_resize() {
    let io = open("inception_fid.io.safetensors");
    let weights = synthetic::inception(WEIGHT_SEED).unwrap();
    // The formula agrees with the script's to the bit.
    for name in [
        "Conv2d_1a_3x3.conv.weight",
        "Mixed_7c.branch_pool.bn.running_var",
        "fc.weight",
    ] {
        let got = weights.f32(name).unwrap();
        assert!(
            bits_equal(&got[..8], &io.f32(&format!("check.{name}")).unwrap()),
            "formula weights {name} differ from the script's"
        );
    }
    let net = InceptionV3::load(&Cpu, &weights).unwrap();
    let mut r = Report::new("inception (pytorch-fid + TF1 resize)");
    for (case, seed, count, side) in [("b2_256", 256, 2, 256), ("b1_512", 512, 1, 512)] {
        let imgs = uniform_images(seed, count, side);
        let head: Vec<f32> = imgs[..16].iter().map(|&v| v as f32).collect();
        assert!(
            bits_equal(&head, &io.f32(&format!("{case}.input_head")).unwrap()[..16]),
            "{case}: formula images differ from the script's"
        );
        // The resize is bit-exact.
        let x = tf1_bilinear_nchw(&imgs, (count, side, side, 3), INPUT_SIZE);
        let plane = 3 * INPUT_SIZE * INPUT_SIZE;
        assert!(
            bits_equal(&x[..plane], &io.f32(&format!("{case}.resized")).unwrap()),
            "{case}: TF1 resize is not bit-exact"
        );
        let f = net
            .forward_images(&Cpu, &imgs, (count, side, side, 3))
            .unwrap();
        assert_eq!(f.pool.len(), count * POOL_DIM);
        assert_eq!(f.spatial.len(), count * SPATIAL_DIM);
        assert_eq!(f.logits.len(), count * LOGITS_DIM);
        for (key, got) in [
            ("pool", &f.pool),
            ("spatial", &f.spatial),
            ("logits", &f.logits),
        ] {
            let name = format!("{case}.{key}");
            r.check(&name, got, &io.f32(&name).unwrap(), 1e-4);
        }
    }
    r.finish();
}

#[test]
fn inception_refuses_bad_inputs_and_weights() {
    let weights = synthetic::inception(WEIGHT_SEED).unwrap();
    let net = InceptionV3::load(&Cpu, &weights).unwrap();
    let e = net.forward_images(&Cpu, &[0; 12], (1, 2, 2, 3)).map(|_| ());
    assert!(e.is_ok(), "a 2×2 image resizes like any other: {e:?}");
    let e = net
        .forward_images(&Cpu, &[0; 16], (1, 2, 2, 4))
        .unwrap_err();
    assert!(e.to_string().contains("RGB"), "{e}");
    let e = net
        .forward_images(&Cpu, &[0; 11], (1, 2, 2, 3))
        .unwrap_err();
    assert!(e.to_string().contains("bytes"), "{e}");
    // A missing tensor is named.
    let mut partial = weights;
    partial.tensors.remove("Mixed_6d.branch1x1.bn.running_var");
    let e = InceptionV3::load(&Cpu, &partial).err().unwrap();
    assert!(
        e.to_string().contains("Mixed_6d.branch1x1.bn.running_var"),
        "{e}"
    );
}
