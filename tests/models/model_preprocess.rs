//! Image preprocessing against Pillow, transformers' PIL processors and torchvision
//! (tests/golden/preprocess.io.safetensors, made by `scripts/dump_golden.py preprocess`): the
//! 8-bit resizes bit for bit, each backbone's normalised input within 1e-6.

use crate::common::{formula_image, open};
use sitdiv::io::sha256_hex;
use sitdiv::models::preprocess::{pil_resize, PilFilter, Pipeline};

const IMAGES: [&str; 6] = ["gradient", "checker", "edges", "noise", "wide", "big"];

#[test]
fn pil_resize_is_bit_exact() {
    let g = open("preprocess.io.safetensors");
    for name in IMAGES {
        let (img, h, w) = formula_image(name);
        let head: Vec<i64> = img[..64].iter().map(|&v| v as i64).collect();
        assert_eq!(
            head,
            g.i64(&format!("{name}.head")).unwrap(),
            "{name}: formula image differs"
        );
        for (op, filter, oh, ow) in [
            ("bicubic_224", PilFilter::Bicubic, 224, 224),
            ("bilinear_256", PilFilter::Bilinear, 256, 256),
            ("bicubic_299x180", PilFilter::Bicubic, 299, 180),
        ] {
            let got = if (oh, ow) == (h, w) {
                img.clone()
            } else {
                pil_resize(&img, (h, w, 3), (oh, ow), filter)
            };
            assert_eq!(got.len(), oh * ow * 3);
            // The noise image's output is stored whole (to count differing bytes); every
            // output's SHA-256 is.
            if let Ok(want) = g.i64(&format!("{name}.{op}")) {
                let differ = got
                    .iter()
                    .zip(&want)
                    .filter(|(a, b)| **a as i64 != **b)
                    .count();
                assert_eq!(
                    differ,
                    0,
                    "{name} {op}: {differ} of {} bytes differ from Pillow",
                    want.len()
                );
            }
            let sha: String = g
                .i64(&format!("{name}.{op}.sha256"))
                .unwrap()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                sha256_hex(&got),
                sha,
                "{name} {op}: output differs from Pillow's"
            );
        }
    }
}

#[test]
fn backbone_inputs_match_their_processors() {
    let g = open("preprocess.io.safetensors");
    let mut worst = 0f64;
    for name in IMAGES {
        let (img, h, w) = formula_image(name);
        for (proc, p) in [
            ("clip", Pipeline::ClipHf),
            ("dinov2", Pipeline::Dinov2Hf),
            ("mocov3", Pipeline::Mocov3),
            ("simclr", Pipeline::Simclr),
        ] {
            let x = p.prepare(&img, (h, w));
            assert_eq!(x.len(), 3 * 224 * 224);
            let rows = g.f32(&format!("{name}.{proc}")).unwrap(); // (3, 8, 224)
            for c in 0..3 {
                for (i, &r) in rows[c * 8 * 224..(c + 1) * 8 * 224].iter().enumerate() {
                    let err = (x[c * 224 * 224 + i] - r).abs() as f64;
                    worst = worst.max(err);
                    assert!(
                        err <= 1e-6,
                        "{name} {proc}: channel {c} value {i}: {} vs {r}",
                        x[c * 224 * 224 + i]
                    );
                }
            }
            let sum: f64 = x.iter().map(|&v| v as f64).sum();
            let want = g.f64(&format!("{name}.{proc}_sum")).unwrap()[0];
            assert!(
                (sum - want).abs() <= 1e-6 * x.len() as f64,
                "{name} {proc}: sum {sum} vs {want}"
            );
        }
    }
    println!("worst normalised-input difference: {worst:e}");
}

/// The formula image of tests/golden/adm_crop.io.safetensors (scripts/dump_golden.py
/// `crop_image`): (3x + 5y + 64c + 17((x/7 + y/5) mod 3)) mod 256.
fn crop_image(h: usize, w: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                out.push(((3 * x + 5 * y + 64 * c + 17 * ((x / 7 + y / 5) % 3)) % 256) as u8);
            }
        }
    }
    out
}

/// ADM's center crop (BOX halvings, bicubic, crop) equals Pillow's byte for byte at sizes that
/// take zero, one and two halvings, upsample, and crop odd margins.
#[test]
fn adm_center_crop_matches_pillow() {
    use sitdiv::models::preprocess::adm_center_crop;
    let io = open("adm_crop.io.safetensors");
    let cfg: serde_json::Value = serde_json::from_str(&io.metadata()["config"]).unwrap();
    let sizes: Vec<(usize, usize)> = serde_json::from_value(cfg["sizes"].clone()).unwrap();
    assert!(sizes.len() >= 8);
    for (h, w) in sizes {
        let out = adm_center_crop(&crop_image(h, w), (h, w), 256);
        let want: Vec<u8> = io
            .i64(&format!("crop_{h}x{w}.sha256"))
            .unwrap()
            .into_iter()
            .map(|b| b as u8)
            .collect();
        let got = sitdiv::io::sha256_hex(&out);
        let want: String = want.iter().map(|b| format!("{b:02x}")).collect();
        if h == 300 && got != want {
            let full = io.i64("crop_300x400.image").unwrap();
            let diff = out
                .iter()
                .zip(&full)
                .filter(|(a, b)| **a as i64 != **b)
                .count();
            panic!("{h}×{w}: {diff} bytes differ from Pillow");
        }
        assert_eq!(got, want, "{h}×{w}: the crop differs from Pillow's");
    }
}

/// JPEG files decode to Pillow's bytes exactly (libjpeg-turbo's code on both sides): 4:2:0 and
/// 4:4:4 chroma, odd sizes; a corrupt one is an error naming it.
#[test]
fn jpeg_decodes_to_pillows_bytes() {
    let io = open("adm_crop.io.safetensors");
    let as_u8 = |k: &str| -> Vec<u8> { io.i64(k).unwrap().into_iter().map(|b| b as u8).collect() };
    for case in ["q90_420", "q95_444", "q75_420_odd"] {
        let bytes = as_u8(&format!("jpeg_{case}.bytes"));
        let want = as_u8(&format!("jpeg_{case}.decoded"));
        let shape = io
            .info(&format!("jpeg_{case}.decoded"))
            .unwrap()
            .shape
            .clone();
        let img = sitdiv::io::image::decode_rgb(std::path::Path::new(case), &bytes).unwrap();
        assert_eq!([img.height, img.width, 3], shape[..], "{case}: size");
        let off = img.data.iter().zip(&want).filter(|(a, b)| a != b).count();
        println!(
            "{case}: {} × {}, {off} values differ from Pillow",
            img.height, img.width
        );
        assert_eq!(off, 0, "{case}: the decode differs from Pillow's");
    }
    let mut bad = as_u8("jpeg_q90_420.bytes");
    bad.truncate(bad.len() / 3);
    bad[200..260].fill(0xFF);
    let e = sitdiv::io::image::decode_rgb(std::path::Path::new("bad.jpg"), &bad);
    println!("{:?}", e.as_ref().err().map(|e| format!("{e:#}")));
    assert!(e
        .err()
        .is_some_and(|e| format!("{e:#}").contains("bad.jpg")));
}
