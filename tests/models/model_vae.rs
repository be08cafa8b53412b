//! SD-VAE decoder against diffusers (tests/golden/vae_tiny.*), and the other key spellings.

use crate::common::{golden_dir, open, Report};
use sitdiv::backend::cpu::Cpu;
use sitdiv::models::layers::Taps;
use sitdiv::models::vae::{to_uint8_nhwc, AutoencoderKL};
use sitdiv::weights::WeightFile;

fn decode_tiny(file: &WeightFile) -> (Vec<f32>, Taps) {
    let vae = AutoencoderKL::load(&Cpu, file).unwrap();
    let io = open("vae_tiny.io.safetensors");
    let z = io.f32("z").unwrap();
    let mut taps = Taps::new();
    let out = vae.decode(&Cpu, &z, 2, 8, 8, Some(&mut taps)).unwrap();
    (out, taps)
}

#[test]
fn decoder_matches_diffusers() {
    let (out, taps) = decode_tiny(&open("vae_tiny.weights.safetensors"));
    let io = open("vae_tiny.io.safetensors");
    let mut r = Report::new("vae_tiny decode");
    for name in [
        "tap.post_quant_conv.out",
        "tap.decoder.conv_in.out",
        "tap.decoder.mid_block.resnets.0.out",
        "tap.decoder.mid_block.attentions.0.out",
        "tap.decoder.mid_block.out",
        "tap.decoder.up_blocks.0.resnets.0.out",
        "tap.decoder.up_blocks.0.resnets.1.out",
        "tap.decoder.up_blocks.0.out",
        "tap.decoder.up_blocks.1.resnets.0.out",
        "tap.decoder.up_blocks.1.out",
        "tap.decoder.conv_norm_out.out",
    ] {
        r.check(name, &taps[name], &io.f32(name).unwrap(), 1e-5);
    }
    r.check("decoded", &out, &io.f32("decoded").unwrap(), 1e-5);
    r.finish();
    let u8s = to_uint8_nhwc(&out, 2, 3, 16, 16);
    let want = io.i64("image_uint8_nhwc").unwrap();
    let off: Vec<i64> = u8s
        .iter()
        .zip(&want)
        .map(|(&a, &b)| a as i64 - b)
        .filter(|d| *d != 0)
        .collect();
    println!(
        "uint8: {} of {} values differ (max |d| {})",
        off.len(),
        want.len(),
        off.iter().map(|d| d.abs()).max().unwrap_or(0)
    );
    assert!(
        off.iter().all(|d| d.abs() <= 1),
        "a uint8 value is off by more than 1"
    );
    assert!(
        off.len() as f64 <= 0.002 * want.len() as f64,
        "{} values differ",
        off.len()
    );
}

/// A copy of the tiny VAE with every key renamed by `rename` (and reshaped by `reshape`).
fn renamed(
    tag: &str,
    rename: impl Fn(&str) -> String,
    reshape: impl Fn(&str, &[usize]) -> Vec<usize>,
) -> WeightFile {
    let f = open("vae_tiny.weights.safetensors");
    let t: Vec<(String, Vec<usize>, Vec<f32>)> = f
        .names()
        .map(|n| {
            let shape = f.info(n).unwrap().shape.clone();
            (rename(n), reshape(n, &shape), f.f32(n).unwrap())
        })
        .collect();
    let p = std::env::temp_dir().join(format!(
        "sitdiv-vae-{}-{tag}.safetensors",
        std::process::id()
    ));
    sitdiv::weights::write_f32_safetensors(&p, &t, None).unwrap();
    WeightFile::open(&p).unwrap()
}

#[test]
fn ldm_and_legacy_names_load_the_same_decoder() {
    let (want, _) = decode_tiny(&open("vae_tiny.weights.safetensors"));
    let meta = open("vae_tiny.weights.safetensors");
    let ldm: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&meta.metadata()["ldm_key_map"]).unwrap();
    let legacy: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&meta.metadata()["legacy_diffusers_attention_key_map"]).unwrap();
    // Original SD checkpoint: LDM names, 1×1-conv attention, first_stage_model. prefix, no config.
    let f = renamed(
        "ldm",
        |n| {
            format!(
                "first_stage_model.{}",
                ldm.get(n).cloned().unwrap_or_else(|| n.to_string())
            )
        },
        |n, s| {
            if n.contains("attentions.0.to_") && s.len() == 2 {
                vec![s[0], s[1], 1, 1]
            } else {
                s.to_vec()
            }
        },
    );
    assert_eq!(decode_tiny(&f).0, want, "LDM names");
    let f = renamed(
        "legacy",
        |n| legacy.get(n).cloned().unwrap_or_else(|| n.to_string()),
        |_, s| s.to_vec(),
    );
    assert_eq!(decode_tiny(&f).0, want, "legacy diffusers names");
}

#[test]
fn a_sit_file_is_not_a_vae() {
    let f = WeightFile::open(golden_dir().join("sit_tiny.weights.safetensors")).unwrap();
    let err = AutoencoderKL::load(&Cpu, &f)
        .err()
        .expect("loaded a SiT as a VAE")
        .to_string();
    assert!(
        err.contains("has no SD-VAE decoder: no decoder.conv_in.weight"),
        "{err}"
    );
}

#[test]
fn expected_tensors_list_the_golden_files_tensors() {
    let f = open("vae_tiny.weights.safetensors");
    let cfg: sitdiv::models::vae::VaeConfig =
        serde_json::from_str(&f.metadata()["config"]).unwrap();
    let want: std::collections::BTreeMap<String, Vec<usize>> = f
        .names()
        .map(|n| (n.to_string(), f.info(n).unwrap().shape.clone()))
        .collect();
    assert_eq!(cfg.expected_tensors(), want);
}

/// The encoder against diffusers' `AutoencoderKL.encode` on square and rectangular images: the
/// moments, the posterior's mean, log-variance and std, and a sample with the golden's noise.
#[test]
fn encoder_matches_diffusers() {
    use sitdiv::models::vae::{Encoder, Posterior};
    let (w, cfg) = crate::common::vae_encoder_weights();
    let enc = Encoder::load(&Cpu, &w, Some(cfg.clone())).unwrap();
    let io = open("vae_encoder.io.safetensors");
    let mut r = Report::new("vae encoder");
    for (case, n, h, w) in [("b2_32", 2, 32, 32), ("b1_24x40", 1, 24, 40)] {
        let g = |k: &str| io.f32(&format!("{case}.{k}")).unwrap();
        // The input as the golden computed it from its uint8 images.
        let images = io.i64(&format!("{case}.images")).unwrap();
        let mut x = vec![0f32; n * 3 * h * w];
        for (i, &v) in images.iter().enumerate() {
            let (s, p, c) = (i / (h * w * 3), (i / 3) % (h * w), i % 3);
            x[(s * 3 + c) * h * w + p] = v as f32 / 127.5 - 1.0;
        }
        r.check(&format!("{case} x"), &x, &g("x"), 0.0);
        let mut taps = Taps::new();
        let m = enc.moments(&Cpu, &x, n, (h, w), Some(&mut taps)).unwrap();
        for t in [
            "tap.encoder.down_blocks.0.out",
            "tap.encoder.down_blocks.1.out",
            "tap.encoder.mid_block.out",
        ] {
            r.check(&format!("{case} {t}"), &taps[t], &g(t), 1e-5);
        }
        r.check(&format!("{case} moments"), &m, &g("moments"), 1e-5);
        let p = Posterior::new(&m, n, cfg.latent_channels).unwrap();
        r.check(&format!("{case} mean"), &p.mean, &g("mean"), 1e-5);
        r.check(&format!("{case} logvar"), &p.logvar, &g("logvar"), 1e-5);
        r.check(&format!("{case} std"), &p.std, &g("std"), 1e-5);
        let sample = p.sample(&g("noise")).unwrap();
        r.check(&format!("{case} sample"), &sample, &g("sample"), 1e-5);
    }
    r.finish();
}

/// The same encoder read from the original LDM names (the golden's ldm_key_map, attention
/// projections as 1×1 convolutions, under `first_stage_model.`) gives the same bits.
#[test]
fn encoder_reads_ldm_names_to_the_bit() {
    use sitdiv::models::vae::Encoder;
    let (w, cfg) = crate::common::vae_encoder_weights();
    let io = open("vae_encoder.io.safetensors");
    let map: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&io.metadata()["ldm_key_map"]).unwrap();
    let ldm: sitdiv::weights::source::Synthetic = w
        .tensors
        .iter()
        .map(|(k, (s, d))| {
            let mut s = s.clone();
            if k.contains("attentions.0.to_") && k.ends_with(".weight") {
                s.extend([1, 1]);
            }
            (format!("first_stage_model.{}", map[k]), s, d.clone())
        })
        .collect();
    assert_eq!(map.len(), w.tensors.len());
    let x = io.f32("b2_32.x").unwrap();
    let a = Encoder::load(&Cpu, &w, Some(cfg.clone())).unwrap();
    let b = Encoder::load(&Cpu, &ldm, Some(cfg)).unwrap();
    let (ma, mb) = (
        a.moments(&Cpu, &x, 2, (32, 32), None).unwrap(),
        b.moments(&Cpu, &x, 2, (32, 32), None).unwrap(),
    );
    assert!(ma.iter().zip(&mb).all(|(p, q)| p.to_bits() == q.to_bits()));
    // Without a config: read from the shapes (GroupNorm groups cannot be, so 32 is assumed;
    // this config has 8: the architecture must still be found, and refuse nothing).
    let inferred = Encoder::load(&Cpu, &ldm, None).unwrap().config;
    assert_eq!(inferred.block_out_channels, [32, 64]);
    assert_eq!(
        (inferred.layers_per_block, inferred.latent_channels),
        (1, 4)
    );
}
