//! The guidance methods against `tests/golden/guidance.io.safetensors`
//! (scripts/dump_guidance_golden.py): APG and CFG-Zero* against diffusers' guider classes and
//! CADS against a transcription of its algorithm on recorded inputs (≤ 1e-6 rel), then full ODE
//! runs of the tiny SiT with each method against upstream's sampler loop (the ODE golden
//! tolerance).

use crate::common::{load_tiny, open, scaled_tiny_weights, tmp, Report};
use sitdiv::backend::cpu::Cpu;
use sitdiv::models::sit::{SiT, SiTConfig};
use sitdiv::pipeline::velocity::{CadsCondition, SiTVelocity};
use sitdiv::sampling::cads::CadsParams;
use sitdiv::sampling::grid;
use sitdiv::sampling::guidance::{ApgParams, Guidance, Guider, Rule};
use sitdiv::sampling::ode::{self, OdeMethod, OdeSettings, Tolerances};
use sitdiv::sampling::path::PathType;
use sitdiv::sampling::Prediction;
use sitdiv::weights::WeightFile;

const FILE: &str = "guidance.io.safetensors";
const RULE_TOL: f64 = 1e-6;
const RUN_TOL: f64 = 1e-5;

fn config() -> serde_json::Value {
    serde_json::from_str(&open(FILE).metadata()["config"]).unwrap()
}

fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

fn f32s(v: &serde_json::Value) -> Vec<f32> {
    f64s(v).iter().map(|&x| x as f32).collect()
}

/// Runs a guider over the recorded steps, one step per slice, as the golden's guider did.
fn run_rule(rule: Rule, scale: f32) -> Vec<f32> {
    let f = open(FILE);
    let (cond, uncond) = (f.f32("pred.cond").unwrap(), f.f32("pred.uncond").unwrap());
    let steps = f.info("pred.cond").unwrap().shape[0];
    let per = cond.len() / steps;
    let (b, c) = (3, 4);
    let mut g = Guider::new(Guidance {
        all_channels: true,
        rule,
        ..Guidance::cfg(scale)
    });
    let mut out = Vec::new();
    for k in 0..steps {
        let mut o = cond[k * per..(k + 1) * per].to_vec();
        o.extend_from_slice(&uncond[k * per..(k + 1) * per]);
        g.begin_step(k);
        g.combine(&mut o, b, c, 0.5);
        assert_eq!(
            o[..per],
            o[per..],
            "both halves carry the guided prediction"
        );
        out.extend_from_slice(&o[..per]);
    }
    out
}

#[test]
fn apg_and_cfg_zero_star_equal_diffusers_guiders() {
    let f = open(FILE);
    let c = config();
    let scale = c["rules"]["scale"].as_f64().unwrap() as f32;
    let mut rep = Report::new("guidance rules");
    for (i, case) in c["rules"]["apg"].as_array().unwrap().iter().enumerate() {
        let p = f32s(case);
        let rule = Rule::Apg(ApgParams {
            eta: p[0],
            norm_threshold: p[1],
            momentum: p[2],
        });
        let want = f.f32(&format!("apg.{i}.out")).unwrap();
        rep.check(&format!("apg.{i}"), &run_rule(rule, scale), &want, RULE_TOL);
    }
    let rule = Rule::CfgZeroStar { zero_init_steps: 1 };
    let got = run_rule(rule, scale);
    let per = got.len() / 4;
    assert!(
        got[..per].iter().all(|&v| v == 0.0),
        "the zeroed first step"
    );
    rep.check(
        "cfg-zero-star",
        &got,
        &f.f32("cfgzs.out").unwrap(),
        RULE_TOL,
    );
    rep.finish();
}

#[test]
fn cads_annealing_equals_the_algorithm() {
    let f = open(FILE);
    let c = config();
    let (y, noise, ts) = (
        f.f32("cads.y").unwrap(),
        f.f32("cads.noise").unwrap(),
        f.f32("cads.t").unwrap(),
    );
    let d = 64;
    let mut rep = Report::new("CADS");
    for (i, case) in c["rules"]["cads"].as_array().unwrap().iter().enumerate() {
        let p = f64s(case);
        let params = CadsParams {
            tau1: p[0],
            tau2: p[1],
            noise_scale: p[2],
            psi: p[3],
        };
        let got: Vec<f32> = ts
            .iter()
            .enumerate()
            .flat_map(|(k, &t)| params.anneal(&y, &noise[k * y.len()..(k + 1) * y.len()], d, t))
            .collect();
        rep.check(
            &format!("cads.{i}"),
            &got,
            &f.f32(&format!("cads.{i}.out")).unwrap(),
            RULE_TOL,
        );
    }
    rep.finish();
}

/// The tiny SiT with every tensor scaled by `k`, loaded.
fn scaled_tiny(k: f32) -> SiT<Cpu> {
    let file = WeightFile::open(scaled_tiny_weights(&tmp("guide"), k)).unwrap();
    let cfg = SiTConfig::from_metadata(&file).unwrap().unwrap();
    SiT::load(&Cpu, &file, cfg).unwrap()
}

#[test]
fn full_runs_equal_the_reference_loop() {
    let f = open(FILE);
    let c = config();
    let model = load_tiny("sit_tiny.weights.safetensors");
    let guide = scaled_tiny(0.8);
    let mut rep = Report::new("guided runs");
    for (name, r) in c["runs"].as_object().unwrap() {
        let x_init = f.f32(&format!("run.{name}.x_init")).unwrap();
        let y_model = f.i64(&format!("run.{name}.y_model")).unwrap();
        let scale = r["scale"].as_f64().unwrap() as f32;
        let n = if scale > 1.0 {
            y_model.len() / 2
        } else {
            y_model.len()
        };
        let rule = match r["rule"][0].as_str().unwrap() {
            "apg" => {
                let p = f32s(&r["rule"]);
                Rule::Apg(ApgParams {
                    eta: p[1],
                    norm_threshold: p[2],
                    momentum: p[3],
                })
            }
            "cfgzs" => Rule::CfgZeroStar {
                zero_init_steps: r["rule"][1].as_u64().unwrap() as usize,
            },
            _ => Rule::Cfg,
        };
        let interval = r.get("interval").map(|iv| {
            let v = f32s(iv);
            (v[0], v[1])
        });
        let mut vel = SiTVelocity::new(&Cpu, &model, y_model.clone());
        vel.guider = (scale > 1.0).then(|| {
            Guider::new(Guidance {
                interval,
                all_channels: true,
                rule,
                ..Guidance::cfg(scale)
            })
        });
        if r.get("guide").is_some() {
            vel.guide = Some(&guide);
        }
        if let Some(p) = r.get("cads") {
            let p = f64s(p);
            vel.cads = Some(CadsCondition {
                params: CadsParams {
                    tau1: p[0],
                    tau2: p[1],
                    noise_scale: p[2],
                    psi: p[3],
                },
                seed: r["seed"].as_u64().unwrap(),
                indices: (0..n as u64).collect(),
                clean: model.class_embeddings(&Cpu, &y_model[..n]).unwrap(),
                null: if scale > 1.0 {
                    model.class_embeddings(&Cpu, &[10]).unwrap()
                } else {
                    Vec::new()
                },
            });
        }
        let method = match r["method"].as_str().unwrap() {
            "heun2" => OdeMethod::Heun,
            _ => OdeMethod::Euler,
        };
        let s = OdeSettings {
            method,
            path: PathType::Linear,
            prediction: Prediction::Velocity,
            tol: Tolerances {
                atol: 1e-6,
                rtol: 1e-3,
            },
        };
        let steps = r["steps"].as_u64().unwrap() as usize;
        let out = ode::sample(
            &mut vel,
            s,
            x_init,
            &grid::linspace_f32(0.0, 1.0, steps),
            false,
        )
        .unwrap();
        assert_eq!(
            out.nfe() as i64,
            f.i64(&format!("run.{name}.nfe")).unwrap()[0],
            "{name}: model calls"
        );
        rep.check(
            name,
            &out.sample,
            &f.f32(&format!("run.{name}.sample")).unwrap(),
            RUN_TOL,
        );
    }
    rep.finish();
}
