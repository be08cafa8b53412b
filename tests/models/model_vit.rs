//! DINOv2 and CLIP image towers against transformers (tests/golden/{dinov2,clip}_tiny.*, made by
//! `scripts/dump_golden.py vit`): formula images through the PIL-exact preprocessing, then the
//! network; the DINOv2 case resizes its 37 × 37 position grid to 16 × 16.

use crate::common;

use crate::common::{formula_image, golden_dir, open, Report};
use sitdiv::backend::cpu::Cpu;
use sitdiv::models::clip::{ClipVision, ClipVisionConfig};
use sitdiv::models::dinov2::{Dinov2, Dinov2Config, Dinov2Names};
use sitdiv::models::preprocess::{Pipeline, PIPELINE_SIZE};
use sitdiv::weights::WeightFile;

const IMAGES: [&str; 3] = ["gradient", "noise", "wide"];

fn inputs(p: Pipeline) -> Vec<f32> {
    IMAGES
        .iter()
        .flat_map(|n| {
            let (img, h, w) = formula_image(n);
            p.prepare(&img, (h, w))
        })
        .collect()
}

#[test]
fn dinov2_matches_transformers() {
    let file = open("dinov2_tiny.weights.safetensors");
    let cfg = Dinov2Config::detect(&file).unwrap();
    assert_eq!(
        (
            cfg.hidden_size,
            cfg.num_hidden_layers,
            cfg.num_attention_heads
        ),
        (32, 2, 4)
    );
    assert_eq!(
        (cfg.patch_size, cfg.position_grid, cfg.names),
        (14, 37, Dinov2Names::Hub)
    );
    let net = Dinov2::load(&Cpu, &file, cfg).unwrap();
    let s = PIPELINE_SIZE;
    let e = net
        .forward(&Cpu, &inputs(Pipeline::Dinov2Hf), IMAGES.len(), (s, s))
        .unwrap();
    let mut r = Report::new("dinov2_tiny");
    r.check(
        "pooler_output",
        &e,
        &open("dinov2_tiny.io.safetensors").f32("embedding").unwrap(),
        1e-4,
    );
    r.finish();
}

#[test]
fn clip_matches_transformers() {
    let file = open("clip_tiny.weights.safetensors");
    let cfg = ClipVisionConfig::detect(&file).unwrap();
    assert_eq!(
        (
            cfg.hidden_size,
            cfg.num_hidden_layers,
            cfg.patch_size,
            cfg.image_size
        ),
        (32, 2, 32, 224)
    );
    let net = ClipVision::load(&Cpu, &file, cfg).unwrap();
    let e = net
        .forward(&Cpu, &inputs(Pipeline::ClipHf), IMAGES.len())
        .unwrap();
    let mut r = Report::new("clip_tiny");
    r.check(
        "image_embeds",
        &e,
        &open("clip_tiny.io.safetensors").f32("embedding").unwrap(),
        1e-4,
    );
    r.finish();
}

#[test]
fn dinov2_reads_transformers5_names_and_refuses_other_models() {
    // The same weights under transformers ≥ 5 names give the same embedding.
    let f = open("dinov2_tiny.weights.safetensors");
    let renamed: Vec<(String, Vec<usize>, Vec<f32>)> = f
        .names()
        .map(|n| {
            let m = n
                .replace("attention.attention.query", "attention.q_proj")
                .replace("attention.attention.key", "attention.k_proj")
                .replace("attention.attention.value", "attention.v_proj")
                .replace("attention.output.dense", "attention.o_proj");
            (m, f.info(n).unwrap().shape.clone(), f.f32(n).unwrap())
        })
        .collect();
    let dir = common::tmp("dinov2-v5");
    let p = dir.join("w.safetensors");
    let meta = f.metadata().clone().into_iter().collect();
    sitdiv::weights::write_f32_safetensors(&p, &renamed, Some(meta)).unwrap();
    let g = WeightFile::open(&p).unwrap();
    let cfg = Dinov2Config::detect(&g).unwrap();
    assert_eq!(cfg.names, Dinov2Names::Transformers5);
    let s = PIPELINE_SIZE;
    let x = inputs(Pipeline::Dinov2Hf);
    let a = Dinov2::load(&Cpu, &g, cfg)
        .unwrap()
        .forward(&Cpu, &x, 3, (s, s))
        .unwrap();
    let b = Dinov2::load(&Cpu, &f, Dinov2Config::detect(&f).unwrap())
        .unwrap()
        .forward(&Cpu, &x, 3, (s, s))
        .unwrap();
    assert_eq!(a, b);
    // A SiT file is neither.
    let sit = WeightFile::open(golden_dir().join("sit_tiny.weights.safetensors")).unwrap();
    let e = Dinov2Config::detect(&sit).unwrap_err();
    assert!(e.to_string().contains("not a DINOv2 checkpoint"), "{e}");
    let e = ClipVisionConfig::detect(&sit).unwrap_err();
    assert!(e.to_string().contains("not a CLIP image tower"), "{e}");
}

#[test]
fn dinov2_release_matches_the_original_code_with_dgm_eval_preprocessing() {
    // facebookresearch/dinov2's own DinoVisionTransformer; the 37 × 37 grid resized with the
    // scale factor (16 + 0.1)/37.
    let file = open("dinov2_release_tiny.weights.safetensors");
    let cfg = Dinov2Config::detect(&file).unwrap();
    assert_eq!(cfg.names, Dinov2Names::Original);
    // Heads from the metadata (the released sizes all have D/64).
    assert_eq!(
        (
            cfg.hidden_size,
            cfg.num_hidden_layers,
            cfg.num_attention_heads,
            cfg.position_grid
        ),
        (32, 2, 4, 37)
    );
    let net = Dinov2::load(&Cpu, &file, cfg).unwrap();
    let s = PIPELINE_SIZE;
    let e = net
        .forward(&Cpu, &inputs(Pipeline::Dinov2Dgm), IMAGES.len(), (s, s))
        .unwrap();
    let mut r = Report::new("dinov2_release_tiny");
    r.check(
        "x_norm_clstoken",
        &e,
        &open("dinov2_release_tiny.io.safetensors")
            .f32("embedding")
            .unwrap(),
        1e-4,
    );
    r.finish();
}
