//! Every network of the study on the GPU against the CPU backend, in each precision: fp32 within
//! the network's golden tolerance, tf32 ≤ 3e-3 and bf16 ≤ 2e-2 relative error on its outputs
//! (max |gpu − cpu| / max |cpu| per output). Prints the table of worst errors. SiT has its own
//! test (model_sit.rs).
#![cfg(any(feature = "cuda", feature = "cuda12"))]

use std::cell::RefCell;
use std::time::Instant;

use serde_json::Value;

use crate::common::{self, cuda, formula_image, open, rel_err, uniform_images};
use sitdiv::backend::cpu::Cpu;
use sitdiv::backend::cuda::{Cuda, CudaOptions};
use sitdiv::backend::{Backend, Precision};
use sitdiv::models::clip::{ClipVision, ClipVisionConfig};
use sitdiv::models::dinov2::{Dinov2, Dinov2Config};
use sitdiv::models::dreamsim::{DreamSim, DreamSimConfig};
use sitdiv::models::inception::InceptionV3;
use sitdiv::models::lpips::{Lpips, LpipsNet};
use sitdiv::models::preprocess::{Pipeline, PIPELINE_SIZE};
use sitdiv::models::resnet::ResNet50;
use sitdiv::models::sit::{SiT, SiTConfig};
use sitdiv::models::synthetic;
use sitdiv::models::toy_classifier::ToyClassifier;
use sitdiv::models::vae::AutoencoderKL;
use sitdiv::weights::WeightFile;

type Outputs = Vec<(&'static str, Vec<f32>)>;

/// Images through a preprocessing pipeline: (N, 3, S, S).
fn prepared(p: Pipeline, names: &[&str]) -> Vec<f32> {
    names
        .iter()
        .flat_map(|n| {
            let (img, h, w) = formula_image(n);
            p.prepare(&img, (h, w))
        })
        .collect()
}

fn toy(name: &str) -> WeightFile {
    WeightFile::open(common::repo().join("assets/toy").join(name)).unwrap()
}

/// One network: its name, its fp32 tolerance (that of its golden test) and its forward.
struct Net {
    name: &'static str,
    fp32_tol: f64,
    run: fn(&dyn Runner) -> Outputs,
}

const fn net(name: &'static str, fp32_tol: f64, run: fn(&dyn Runner) -> Outputs) -> Net {
    Net {
        name,
        fp32_tol,
        run,
    }
}

/// The forward of every network on one backend.
trait Runner {
    fn vae(&self) -> Outputs;
    fn inception(&self) -> Outputs;
    fn resnet(&self) -> Outputs;
    fn lpips(&self, net: LpipsNet) -> Outputs;
    fn dinov2(&self) -> Outputs;
    fn clip(&self) -> Outputs;
    fn dreamsim(&self) -> Outputs;
    fn toy_classifier(&self) -> Outputs;
    fn toy_sit(&self) -> Outputs;
}

/// A backend, and when `counted`, the counters of the second of two forwards (the first warms up:
/// plans, pools, graphs).
struct On<B: Backend> {
    be: B,
    counted: bool,
    last: RefCell<Option<serde_json::Value>>,
}

impl<B: Backend> On<B> {
    fn new(be: B, counted: bool) -> Self {
        On {
            be,
            counted,
            last: RefCell::new(None),
        }
    }

    fn forward(&self, f: impl Fn() -> Outputs) -> Outputs {
        if !self.counted {
            return f();
        }
        f();
        let before = self.be.counters();
        let out = f();
        *self.last.borrow_mut() = delta(before, self.be.counters());
        out
    }
}

/// after − before for every number of the counters (nested maps included).
fn delta(before: Option<Value>, after: Option<Value>) -> Option<Value> {
    fn sub(b: &Value, a: &Value) -> Value {
        match (b, a) {
            (Value::Object(b), Value::Object(a)) => Value::Object(
                a.iter()
                    .map(|(k, v)| (k.clone(), sub(b.get(k).unwrap_or(&Value::Null), v)))
                    .collect(),
            ),
            (b, Value::Number(a)) => Value::from(a.as_u64().unwrap_or(0) - b.as_u64().unwrap_or(0)),
            (_, a) => a.clone(),
        }
    }
    Some(sub(&before?, &after?))
}

impl<B: Backend> Runner for On<B> {
    fn vae(&self) -> Outputs {
        let be = &self.be;
        let vae = AutoencoderKL::load(be, &open("vae_tiny.weights.safetensors")).unwrap();
        let z = open("vae_tiny.io.safetensors").f32("z").unwrap();
        self.forward(|| vec![("decoded", vae.decode(be, &z, 2, 8, 8, None).unwrap())])
    }

    fn inception(&self) -> Outputs {
        let be = &self.be;
        let net = InceptionV3::load(be, &synthetic::inception(2015).unwrap()).unwrap();
        let images = uniform_images(256, 1, 64);
        self.forward(|| {
            let f = net.forward_images(be, &images, (1, 64, 64, 3)).unwrap();
            vec![
                ("pool", f.pool),
                ("spatial", f.spatial),
                ("logits", f.logits),
            ]
        })
    }

    fn resnet(&self) -> Outputs {
        let be = &self.be;
        let net = ResNet50::load(be, &synthetic::resnet50(2016).unwrap()).unwrap();
        let x = crate::common::ops::randn(3, 2 * 3 * 64 * 64);
        self.forward(|| vec![("pool", net.forward(be, &x, 2, (64, 64)).unwrap())])
    }

    fn lpips(&self, net: LpipsNet) -> Outputs {
        let be = &self.be;
        let mut w = synthetic::formula_weights(net.expected_tensors(), 17).unwrap();
        // The heads weigh squared differences: non-negative, as trained ones are.
        for (name, (_, data)) in w.tensors.iter_mut() {
            if name.starts_with("lin") {
                data.iter_mut().for_each(|v| *v = v.abs());
            }
        }
        let model = Lpips::load(be, &w, net).unwrap();
        let images = uniform_images(5, 2, 64);
        self.forward(|| {
            let f = model.features(be, &images, (2, 64, 64, 3)).unwrap();
            vec![("features", f)]
        })
    }

    fn dinov2(&self) -> Outputs {
        let be = &self.be;
        let file = open("dinov2_tiny.weights.safetensors");
        let net = Dinov2::load(be, &file, Dinov2Config::detect(&file).unwrap()).unwrap();
        let s = PIPELINE_SIZE;
        let x = prepared(Pipeline::Dinov2Hf, &["gradient", "noise"]);
        self.forward(|| vec![("embedding", net.forward(be, &x, 2, (s, s)).unwrap())])
    }

    fn clip(&self) -> Outputs {
        let be = &self.be;
        let file = open("clip_tiny.weights.safetensors");
        let net = ClipVision::load(be, &file, ClipVisionConfig::detect(&file).unwrap()).unwrap();
        let x = prepared(Pipeline::ClipHf, &["gradient", "noise"]);
        self.forward(|| vec![("image_embeds", net.forward(be, &x, 2).unwrap())])
    }

    fn dreamsim(&self) -> Outputs {
        let be = &self.be;
        let file = open("dreamsim_tiny.weights.safetensors");
        let net = DreamSim::load(be, &file, DreamSimConfig::detect(&file).unwrap()).unwrap();
        let x = prepared(Pipeline::DreamSim, &["gradient", "noise"]);
        self.forward(|| vec![("embedding", net.embed(be, &x, 2).unwrap())])
    }

    fn toy_classifier(&self) -> Outputs {
        let be = &self.be;
        let net = ToyClassifier::load(be, &toy("toy_classifier.safetensors")).unwrap();
        let images = uniform_images(9, 4, 32);
        self.forward(|| {
            let out = net.forward(be, &images, (4, 32, 32, 3)).unwrap();
            vec![("features", out.features), ("logits", out.logits)]
        })
    }

    fn toy_sit(&self) -> Outputs {
        let be = &self.be;
        let w = toy("toy_sit.safetensors");
        let cfg = SiTConfig::from_metadata(&w).unwrap().unwrap();
        let sit = SiT::load(be, &w, cfg).unwrap();
        let io = open("toy_sit.io.safetensors");
        let (x, t, y) = (
            io.f32("x").unwrap(),
            io.f32("t").unwrap(),
            io.i64("y").unwrap(),
        );
        self.forward(|| vec![("out", sit.forward(be, &x, &t, &y).unwrap())])
    }
}

const NETS: &[Net] = &[
    net("SD-VAE decoder (tiny)", 1e-5, |r| r.vae()),
    net("FID Inception-v3", 1e-4, |r| r.inception()),
    net("ResNet-50 (MoCo v3, SimCLR)", 1e-4, |r| r.resnet()),
    net("LPIPS AlexNet", 1e-4, |r| r.lpips(LpipsNet::Alex)),
    net("LPIPS VGG16", 1e-4, |r| r.lpips(LpipsNet::Vgg)),
    net("DINOv2 (tiny)", 1e-4, |r| r.dinov2()),
    net("CLIP (tiny)", 1e-4, |r| r.clip()),
    net("DreamSim (tiny)", 1e-4, |r| r.dreamsim()),
    net("toy classifier", 1e-5, |r| r.toy_classifier()),
    net("toy SiT", 1e-5, |r| r.toy_sit()),
];

#[test]
fn cuda_every_network_matches_the_cpu() {
    let _g = cuda::shared();
    let mut precisions = Vec::new();
    for (p, tol) in [
        (Precision::Fp32, None),
        (Precision::Tf32, Some(3e-3)),
        (Precision::Bf16, Some(2e-2)),
    ] {
        let Some(gpu) = cuda::device_in(p) else {
            return;
        };
        precisions.push((p, tol, On::new(gpu, false)));
    }
    println!("| network | output | fp32 | tf32 | bf16 |");
    println!("|---|---|---|---|---|");
    let mut failures = Vec::new();
    for net in NETS {
        let t0 = Instant::now();
        let want = (net.run)(&On::new(Cpu, false));
        let mut errs = vec![vec![0.0; precisions.len()]; want.len()];
        for (j, (p, tol, gpu)) in precisions.iter().enumerate() {
            let got = (net.run)(gpu);
            let tol = tol.unwrap_or(net.fp32_tol);
            for (i, ((name, w), (_, g))) in want.iter().zip(&got).enumerate() {
                let e = rel_err(g, w);
                errs[i][j] = e;
                if e.is_nan() || e > tol {
                    failures.push(format!("{} {name} {p:?}: {e:.2e} > {tol:.0e}", net.name));
                }
            }
        }
        for ((name, _), e) in want.iter().zip(&errs) {
            println!(
                "| {} | {name} | {:.1e} | {:.1e} | {:.1e} |",
                net.name, e[0], e[1], e[2]
            );
        }
        eprintln!("{}: {:.1} s", net.name, t0.elapsed().as_secs_f64());
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The device work of each network's forward after a warm-up, from the backend's counters, in
/// tf32 and bf16: no allocation, every product on a tensor-core compute type (TF32, or bf16
/// operands; under bf16 the SiT's conditioning is on TF32), and one host synchronisation: the
/// copy of all its outputs to the host. Graphs off, so that the SiT's launches and products are
/// counted one by one (a replay is one graph launch).
#[test]
fn cuda_network_design_counters() {
    let _g = cuda::shared();
    println!("| network | precision | launches | GEMMs | allocations | host syncs | outputs | compute types |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut failures = Vec::new();
    for precision in [Precision::Tf32, Precision::Bf16] {
        let tensor_core: &[&str] = match precision {
            Precision::Tf32 => &["32F_FAST_TF32/32F"],
            _ => &["32F/16BF", "32F_FAST_TF32/32F"],
        };
        for net in NETS {
            // As jobs run it: no synchronisation after each launch.
            let options = CudaOptions {
                graphs: false,
                ..CudaOptions::new(precision)
            };
            let Ok(gpu) = Cuda::with_options(0, options) else {
                cuda::device_in(precision); // skips loudly, or fails under REQUIRE_CUDA=1
                return;
            };
            let on = On::new(gpu, true);
            let outputs = (net.run)(&on).len() as u64;
            let c = on.last.borrow().clone().expect("the CUDA backend counts");
            let n = |k: &str| c[k].as_u64().unwrap_or(0);
            let gemms = c["gemms"].as_object().cloned().unwrap_or_default();
            let total: u64 = gemms.values().filter_map(Value::as_u64).sum();
            let types: Vec<&String> = gemms
                .iter()
                .filter(|(_, v)| v.as_u64() > Some(0))
                .map(|(k, _)| k)
                .collect();
            println!(
                "| {} | {precision:?} | {} | {total} | {} | {} | {outputs} | {types:?} |",
                net.name,
                n("launches"),
                n("allocations"),
                n("host_syncs")
            );
            let what = format!("{} {precision:?}", net.name);
            if n("allocations") != 0 {
                failures.push(format!(
                    "{what}: {} allocations after warm-up",
                    n("allocations")
                ));
            }
            if total == 0 || types.iter().any(|t| !tensor_core.contains(&t.as_str())) {
                failures.push(format!(
                    "{what}: {total} products on {types:?}, not all {tensor_core:?}"
                ));
            }
            if n("host_syncs") != 1 {
                failures.push(format!(
                    "{what}: {} host syncs for {outputs} outputs (one copy to the host expected)",
                    n("host_syncs")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
