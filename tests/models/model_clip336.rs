//! The clip-l14-336 backbone (CMMD's CLIP ViT-L/14 @ 336 px) against transformers
//! (tests/golden/clip336_tiny.*, made by `scripts/dump_golden.py clip336`): a tiny tower in the
//! 336 px / patch 14 geometry with formula weights, formula images through CMMD's authors'
//! preprocessing (centre square crop, PIL bicubic 336, /255, CLIP mean/std), `image_embeds`
//! L2-normalised, all through the embedder the pipeline uses.

use crate::common::{golden, golden_dir, open, Report};
use sitdiv::backend::cpu::Cpu;
use sitdiv::models::clip::ClipVisionConfig;
use sitdiv::models::preprocess::{center_crop, pil_resize, CropRounding, PilFilter, Pipeline};
use sitdiv::pipeline::backbone::Backbone;
use sitdiv::pipeline::embed::Embedder;

/// (H, W, seed) of the script's noise images: upsampled, cropped and upsampled, downsampled.
const IMAGES: [(usize, usize, u64); 3] = [(256, 256, 9), (300, 240, 11), (360, 400, 12)];

fn image((h, w, seed): (usize, usize, u64)) -> Vec<u8> {
    sitdiv::rng::uniform(seed, 0, 0, 0, h * w * 3)
        .iter()
        .map(|u| (256.0 * u).floor() as u8)
        .collect()
}

#[test]
fn cmmd_preprocessing_matches_pil() {
    let io = open("clip336_tiny.io.safetensors");
    let sha = io.i64("resized_sha256").unwrap(); // (N, 32) bytes
    let strided = io.f32("pixel_values_strided").unwrap(); // (N, 3, 48, 48)
    let sums = io.f64("pixel_values_sum").unwrap(); // (N,)
    let p = Pipeline::ClipCmmd;
    assert_eq!(p.size(), 336);
    let (mut got_strided, mut worst_sum) = (Vec::new(), 0f64);
    for (n, &(h, w, s)) in IMAGES.iter().enumerate() {
        let img = image((h, w, s));
        // The uint8 image CLIP sees: exact.
        let side = h.min(w);
        let c = center_crop(&img, (h, w, 3), (side, side), CropRounding::Floor);
        let r = pil_resize(&c, (side, side, 3), (336, 336), PilFilter::Bicubic);
        let want: String = sha[n * 32..(n + 1) * 32]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sitdiv::io::sha256_hex(&r), want, "resized image {n}");
        let x = p.prepare(&img, (h, w)); // (3, 336, 336)
        for ch in 0..3 {
            for y in (0..336).step_by(7) {
                for xx in (0..336).step_by(7) {
                    got_strided.push(x[(ch * 336 + y) * 336 + xx]);
                }
            }
        }
        let sum: f64 = x.iter().map(|&v| v as f64).sum();
        worst_sum = worst_sum.max(((sum - sums[n]) / sums[n]).abs());
    }
    let mut rep = Report::new("clip336 preprocessing");
    rep.check("pixel_values_strided", &got_strided, &strided, 1e-6);
    println!("clip336 preprocessing: resized images exact, input sums rel {worst_sum:.1e}");
    assert!(worst_sum < 1e-6);
    rep.finish();
}

#[test]
fn clip_l14_336_embedding_matches_transformers() {
    let file = open("clip336_tiny.weights.safetensors");
    let cfg = ClipVisionConfig::detect(&file).unwrap();
    assert_eq!(
        (
            cfg.hidden_size,
            cfg.patch_size,
            cfg.image_size,
            cfg.projection_dim
        ),
        (32, 14, 336, 16)
    );
    let w = golden_dir().join("clip336_tiny.weights.safetensors");
    let (emb, _) = Embedder::load(&Cpu, Backbone::ClipL14_336, &w).unwrap();
    let mut e = Vec::new();
    for &(h, w, s) in &IMAGES {
        e.extend(emb.embed(&Cpu, &image((h, w, s)), (1, h, w, 3)).unwrap());
    }
    for row in e.chunks(16) {
        let norm: f64 = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6, "row norm {norm}");
    }
    let mut rep = Report::new("clip336_tiny");
    rep.check(
        "embedding (image_embeds / norm)",
        &e,
        &open("clip336_tiny.io.safetensors")
            .f32("embedding")
            .unwrap(),
        1e-5,
    );
    rep.finish();
    // The 224 px CLIP backbone refuses the 336 px tower, naming the one that fits.
    let err = format!(
        "{:#}",
        Embedder::load(&Cpu, Backbone::ClipL14, &w).err().unwrap()
    );
    assert!(
        err.contains("336 px input; clip-l14 preprocesses to 224 px (use --backbone clip-l14-336"),
        "{err}"
    );
    let err = Embedder::load(
        &Cpu,
        Backbone::ClipL14_336,
        std::path::Path::new(&golden("clip_tiny.weights.safetensors")),
    )
    .err()
    .unwrap();
    let err = format!("{err:#}");
    assert!(
        err.contains("224 px input; clip-l14-336 preprocesses to 336 px"),
        "{err}"
    );
}
