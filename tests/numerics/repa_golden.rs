//! REPA's samplers against `tests/golden/repa_tiny.io.safetensors` (scripts/dump_repa_golden.py:
//! REPA's own `euler_sampler` and `euler_maruyama_sampler` on a tiny SiT of REPA's class, with
//! recorded latents and noise), ≤ 1e-4 rel; the REPA-layout checkpoint, projector heads included,
//! loads.

use crate::common::{golden, open, sitdiv, succeeds, tmp, Report};
use sitdiv::backend::cpu::Cpu;
use sitdiv::io::npy;
use sitdiv::models::sit::{SiT, SiTConfig};
use sitdiv::sampling::repa::{self, RepaMethod, RepaPath, RepaSettings};
use sitdiv::sampling::sde::NoiseSource;

const FILE: &str = "repa_tiny.io.safetensors";
const TOL: f64 = 1e-4;

/// Recorded draws, one (n, C, H, W) slice a step.
struct Recorded(Vec<f32>, usize);

impl NoiseSource for Recorded {
    fn draw(&mut self, step: usize) -> anyhow::Result<Vec<f32>> {
        Ok(self.0[step * self.1..(step + 1) * self.1].to_vec())
    }
}

fn settings(c: &serde_json::Value, null_class: i64) -> RepaSettings {
    let heun = c["heun"].as_bool().unwrap_or(false);
    RepaSettings {
        method: match (c["mode"].as_str().unwrap(), heun) {
            ("sde", _) => RepaMethod::EulerMaruyama,
            (_, true) => RepaMethod::Heun,
            _ => RepaMethod::Euler,
        },
        steps: c["num_steps"].as_u64().unwrap() as usize,
        cfg: c["cfg_scale"].as_f64().unwrap(),
        low: c["guidance_low"].as_f64().unwrap_or(0.0),
        high: c["guidance_high"].as_f64().unwrap_or(1.0),
        path: match c["path_type"].as_str() {
            Some("cosine") => RepaPath::Cosine,
            _ => RepaPath::Linear,
        },
        null_class,
    }
}

#[test]
fn repa_samplers_equal_repas_own_code() {
    let w = open("repa_tiny.weights.safetensors");
    let projectors = w.names().filter(|n| n.starts_with("projectors.")).count();
    assert!(
        projectors > 0,
        "the REPA checkpoint keeps its projector heads"
    );
    let cfg = SiTConfig::from_metadata(&w).unwrap().unwrap();
    let model = SiT::load(&Cpu, &w, cfg).unwrap();
    let f = open(FILE);
    let meta: serde_json::Value = serde_json::from_str(&f.metadata()["config"]).unwrap();
    let mut rep = Report::new("REPA samplers");
    for (name, c) in meta["cases"].as_object().unwrap() {
        let z = f.f32(&format!("{name}.x_init")).unwrap();
        let y = f.i64(&format!("{name}.y")).unwrap();
        let s = settings(c, model.null_class() as i64);
        let noise = f.f32(&format!("{name}.noise")).unwrap_or_default();
        let mut net = |x: &[f32], t: f32, y: &[i64]| model.forward(&Cpu, x, &vec![t; y.len()], y);
        let r = repa::sample(&mut net, s, &z, &y, &mut Recorded(noise, z.len())).unwrap();
        assert_eq!(
            r.eval_t.len() as i64,
            f.i64(&format!("{name}.nfe")).unwrap()[0],
            "{name}: model calls"
        );
        rep.check(
            name,
            &r.sample,
            &f.f32(&format!("{name}.sample")).unwrap(),
            TOL,
        );
    }
    rep.finish();
}

/// The published setting's sampler through the command line: recorded latents, labels and
/// draws give the golden sample.
#[test]
fn repa_sde_through_sample_equals_the_golden() {
    let f = open(FILE);
    let name = "sde_n10_cfg1.8_high0.7";
    let dir = tmp("repa-cli");
    let p = |s: &str| dir.join(s).display().to_string();
    let shape = [3usize, 4, 8, 8];
    npy::write_f32(
        std::path::Path::new(&p("z.npy")),
        &shape,
        &f.f32(&format!("{name}.x_init")).unwrap(),
    )
    .unwrap();
    npy::write_i64(
        std::path::Path::new(&p("y.npy")),
        &[3],
        &f.i64(&format!("{name}.y")).unwrap(),
    )
    .unwrap();
    npy::write_f32(
        std::path::Path::new(&p("noise.npy")),
        &[9, 3, 4, 8, 8],
        &f.f32(&format!("{name}.noise")).unwrap(),
    )
    .unwrap();
    let w = golden("repa_tiny.weights.safetensors");
    succeeds(&[
        "sample",
        "--weights",
        &w,
        "--mode",
        "repa-sde",
        "--steps",
        "10",
        "--cfg",
        "1.8",
        "--cfg-interval",
        "0,0.7",
        "--init-noise",
        &p("z.npy"),
        "--labels",
        &p("y.npy"),
        "--replay-noise",
        &p("noise.npy"),
        "--latents-out",
        &p("out.npy"),
    ]);
    let got = npy::read_f32(std::path::Path::new(&p("out.npy")))
        .unwrap()
        .data;
    let e = crate::common::rel_err(&got, &f.f32(&format!("{name}.sample")).unwrap());
    println!("{name} through sitdiv sample: rel {e:.3e}");
    assert!(e <= TOL, "rel {e:.3e} > {TOL:.0e}");
    let r = sitdiv(&[
        "sample",
        "--weights",
        &w,
        "--mode",
        "repa-ode",
        "--cfg",
        "2",
        "--cfg-interval",
        "0,0.7",
        "--cfg-interval-mode",
        "fork",
        "--num-samples",
        "2",
        "--latents-out",
        &p("x.npy"),
    ]);
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("published"));
}
