//! SiT forward and guidance against the upstream code (tests/golden/sit_tiny.*).

use crate::common::{open, Report};
use sitdiv::backend::cpu::Cpu;
use sitdiv::backend::Backend;
use sitdiv::models::layers::Taps;
use sitdiv::models::sit::{SiT, SiTConfig};
use sitdiv::sampling::guidance::Guidance;

#[cfg(any(feature = "cuda", feature = "cuda12"))]
use crate::common::cuda;

fn load_tiny<B: Backend>(be: &B) -> SiT<B> {
    let w = open("sit_tiny.weights.safetensors");
    let cfg = SiTConfig::from_metadata(&w)
        .unwrap()
        .expect("config in metadata");
    SiT::load(be, &w, cfg).unwrap()
}

#[test]
fn forward_and_taps_match_upstream() {
    forward_and_taps(&Cpu, "sit_tiny forward");
}

#[test]
fn guided_forward_matches_upstream() {
    guided_forward(&Cpu, "sit_tiny guidance");
}

/// The same golden cases on the CUDA backend (the emulated device without a GPU).
#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[test]
fn cuda_forward_and_guidance_match_upstream() {
    let Some(gpu) = cuda::device() else { return };
    forward_and_taps(&gpu, "sit_tiny forward on cuda");
    guided_forward(&gpu, "sit_tiny guidance on cuda");
}

fn forward_and_taps<B: Backend>(be: &B, what: &str) {
    let model = load_tiny(be);
    let io = open("sit_tiny.io.safetensors");
    let (x, t, y) = (
        io.f32("x").unwrap(),
        io.f32("t").unwrap(),
        io.i64("y").unwrap(),
    );
    let mut taps = Taps::new();
    let out = model.forward_taps(be, &x, &t, &y, Some(&mut taps)).unwrap();
    let mut r = Report::new(what);
    // Taps in forward order, so the first failure names the first diverging layer.
    let mut names: Vec<&str> = vec![
        "tap.x_embedder.out",
        "tap.pos_added_tokens",
        "tap.t_embedder.freq_embedding",
        "tap.t_embedder.out",
        "tap.y_embedder.out",
        "tap.c",
    ];
    let block_taps: Vec<String> = (0..model.config.depth)
        .flat_map(|k| {
            ["adaLN_modulation.out", "attn.out", "mlp.out", "out"]
                .map(|s| format!("tap.blocks.{k}.{s}"))
        })
        .collect();
    names.extend(block_taps.iter().map(String::as_str));
    names.extend([
        "tap.final_layer.adaLN_modulation.out",
        "tap.final_layer.out",
        "tap.unpatchified",
    ]);
    for name in names {
        r.check(name, &taps[name], &io.f32(name).unwrap(), 2e-5);
    }
    r.check(
        "out_8ch",
        &taps["tap.unpatchified"],
        &io.f32("out_8ch").unwrap(),
        1e-5,
    );
    r.check(
        "forward_out_4ch",
        &out,
        &io.f32("forward_out_4ch").unwrap(),
        1e-5,
    );
    r.finish();
}

fn guided_forward<B: Backend>(be: &B, what: &str) {
    let model = load_tiny(be);
    let io = open("sit_tiny.io.safetensors");
    let (x, t, y) = (
        io.f32("cfg_x").unwrap(),
        io.f32("cfg_t").unwrap(),
        io.i64("cfg_y").unwrap(),
    );
    let n = y.len() / 2;
    let len = x.len() / y.len();
    // forward_with_cfg evaluates [x[:n]; x[:n]].
    let mut xin = x[..n * len].to_vec();
    xin.extend_from_within(..);
    let combined = model.forward(be, &xin, &t, &y).unwrap();
    let mut r = Report::new(what);
    r.check(
        "cfg_model_out_combined",
        &combined,
        &io.f32("cfg_model_out_combined").unwrap(),
        2e-5,
    );
    let g = Guidance::cfg(4.0);
    let mut up = combined.clone();
    g.combine(&mut up, n, 4, t[0]);
    r.check(
        "cfg_out_upstream_3ch",
        &up,
        &io.f32("cfg_out_upstream_3ch").unwrap(),
        2e-5,
    );
    let mut all = combined;
    Guidance {
        all_channels: true,
        ..g
    }
    .combine(&mut all, n, 4, t[0]);
    r.check(
        "cfg_out_all4ch",
        &all,
        &io.f32("cfg_out_all4ch").unwrap(),
        2e-5,
    );
    r.finish();
}
