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
    assert!(err.contains("is not an SD-VAE decoder"), "{err}");
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
