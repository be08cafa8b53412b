//! The validation loss's core against upstream SiT's `Transport.training_losses`
//! (tests/golden/valloss_tiny.io.safetensors): the tiny SiT on 8 latents, 4 time segments, given
//! noise; paths linear, GVP and VP (velocity), and the noise and score predictions.

use crate::common::{open, Report};
use sitdiv::backend::cpu::Cpu;
use sitdiv::models::sit::{SiT, SiTConfig};
use sitdiv::sampling::loss::{loss, plan};
use sitdiv::sampling::path::PathType;
use sitdiv::sampling::Prediction;

#[test]
fn training_loss_matches_upstream() {
    let w = open("sit_tiny.weights.safetensors");
    let cfg = SiTConfig::from_metadata(&w).unwrap().unwrap();
    let sit = SiT::load(&Cpu, &w, cfg).unwrap();
    let io = open("valloss_tiny.io.safetensors");
    let (x1, y, x0, t) = (
        io.f32("x1").unwrap(),
        io.i64("y").unwrap(),
        io.f32("x0").unwrap(),
        io.f32("t").unwrap(),
    );
    let n = y.len();
    let mut r = Report::new("training loss vs Transport.training_losses");
    for (path, pred) in [
        (PathType::Linear, Prediction::Velocity),
        (PathType::Gvp, Prediction::Velocity),
        (PathType::Vp, Prediction::Velocity),
        (PathType::Linear, Prediction::Noise),
        (PathType::Linear, Prediction::Score),
    ] {
        let want = io
            .f32(&format!("loss.{}.{}", path.name(), pred.name()))
            .unwrap();
        let mut got = Vec::new();
        for (i, &ti) in t.iter().enumerate() {
            let ts = vec![ti; n];
            let x0 = &x0[i * x1.len()..(i + 1) * x1.len()];
            let (xt, ut) = plan(path, &ts, x0, &x1).unwrap();
            let out = sit.forward(&Cpu, &xt, &ts, &y).unwrap();
            got.extend(
                loss(path, pred, &ts, x0, &ut, &out)
                    .unwrap()
                    .into_iter()
                    .map(|v| v as f32),
            );
        }
        // Per image and segment, each relative to itself.
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            let what = format!(
                "{} {} segment {} image {}",
                path.name(),
                pred.name(),
                k / n,
                k % n
            );
            r.check(&what, &[*g], &[*w], 1e-5);
        }
    }
    r.finish();
}
