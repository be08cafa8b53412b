//! Every network of the study on the GPU against the CPU backend, in each precision: fp32 within
//! the network's golden tolerance, tf32 ≤ 3e-3 and bf16 ≤ 2e-2 relative error on its outputs
//! (max |gpu − cpu| / max |cpu| per output). Prints the table of worst errors. SiT has its own
//! test (model_sit.rs).
#![cfg(any(feature = "cuda", feature = "cuda12"))]

use std::time::Instant;

use crate::common::{self, cuda, formula_image, open, rel_err, uniform_images};
use sitdiv::backend::cpu::Cpu;
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

struct On<B: Backend>(B);

impl<B: Backend> Runner for On<B> {
    fn vae(&self) -> Outputs {
        let be = &self.0;
        let vae = AutoencoderKL::load(be, &open("vae_tiny.weights.safetensors")).unwrap();
        let z = open("vae_tiny.io.safetensors").f32("z").unwrap();
        vec![("decoded", vae.decode(be, &z, 2, 8, 8, None).unwrap())]
    }

    fn inception(&self) -> Outputs {
        let be = &self.0;
        let net = InceptionV3::load(be, &synthetic::inception(2015).unwrap()).unwrap();
        let f = net
            .forward_images(be, &uniform_images(256, 1, 64), (1, 64, 64, 3))
            .unwrap();
        vec![
            ("pool", f.pool),
            ("spatial", f.spatial),
            ("logits", f.logits),
        ]
    }

    fn resnet(&self) -> Outputs {
        let be = &self.0;
        let net = ResNet50::load(be, &synthetic::resnet50(2016).unwrap()).unwrap();
        let x = crate::common::ops::randn(3, 2 * 3 * 64 * 64);
        vec![("pool", net.forward(be, &x, 2, (64, 64)).unwrap())]
    }

    fn lpips(&self, net: LpipsNet) -> Outputs {
        let be = &self.0;
        let mut w = synthetic::formula_weights(net.expected_tensors(), 17).unwrap();
        // The heads weigh squared differences: non-negative, as trained ones are.
        for (name, (_, data)) in w.tensors.iter_mut() {
            if name.starts_with("lin") {
                data.iter_mut().for_each(|v| *v = v.abs());
            }
        }
        let model = Lpips::load(be, &w, net).unwrap();
        let images = uniform_images(5, 2, 64);
        vec![(
            "features",
            model.features(be, &images, (2, 64, 64, 3)).unwrap(),
        )]
    }

    fn dinov2(&self) -> Outputs {
        let be = &self.0;
        let file = open("dinov2_tiny.weights.safetensors");
        let net = Dinov2::load(be, &file, Dinov2Config::detect(&file).unwrap()).unwrap();
        let s = PIPELINE_SIZE;
        let x = prepared(Pipeline::Dinov2Hf, &["gradient", "noise"]);
        vec![("embedding", net.forward(be, &x, 2, (s, s)).unwrap())]
    }

    fn clip(&self) -> Outputs {
        let be = &self.0;
        let file = open("clip_tiny.weights.safetensors");
        let net = ClipVision::load(be, &file, ClipVisionConfig::detect(&file).unwrap()).unwrap();
        let x = prepared(Pipeline::ClipHf, &["gradient", "noise"]);
        vec![("image_embeds", net.forward(be, &x, 2).unwrap())]
    }

    fn dreamsim(&self) -> Outputs {
        let be = &self.0;
        let file = open("dreamsim_tiny.weights.safetensors");
        let net = DreamSim::load(be, &file, DreamSimConfig::detect(&file).unwrap()).unwrap();
        let x = prepared(Pipeline::DreamSim, &["gradient", "noise"]);
        vec![("embedding", net.embed(be, &x, 2).unwrap())]
    }

    fn toy_classifier(&self) -> Outputs {
        let be = &self.0;
        let net = ToyClassifier::load(be, &toy("toy_classifier.safetensors")).unwrap();
        let out = net
            .forward(be, &uniform_images(9, 4, 32), (4, 32, 32, 3))
            .unwrap();
        vec![("features", out.features), ("logits", out.logits)]
    }

    fn toy_sit(&self) -> Outputs {
        let be = &self.0;
        let w = toy("toy_sit.safetensors");
        let cfg = SiTConfig::from_metadata(&w).unwrap().unwrap();
        let sit = SiT::load(be, &w, cfg).unwrap();
        let io = open("toy_sit.io.safetensors");
        let out = sit
            .forward(
                be,
                &io.f32("x").unwrap(),
                &io.f32("t").unwrap(),
                &io.i64("y").unwrap(),
            )
            .unwrap();
        vec![("out", out)]
    }
}

const NETS: &[Net] = &[
    Net {
        name: "SD-VAE decoder (tiny)",
        fp32_tol: 1e-5,
        run: |r| r.vae(),
    },
    Net {
        name: "FID Inception-v3",
        fp32_tol: 1e-4,
        run: |r| r.inception(),
    },
    Net {
        name: "ResNet-50 (MoCo v3, SimCLR)",
        fp32_tol: 1e-4,
        run: |r| r.resnet(),
    },
    Net {
        name: "LPIPS AlexNet",
        fp32_tol: 1e-4,
        run: |r| r.lpips(LpipsNet::Alex),
    },
    Net {
        name: "LPIPS VGG16",
        fp32_tol: 1e-4,
        run: |r| r.lpips(LpipsNet::Vgg),
    },
    Net {
        name: "DINOv2 (tiny)",
        fp32_tol: 1e-4,
        run: |r| r.dinov2(),
    },
    Net {
        name: "CLIP (tiny)",
        fp32_tol: 1e-4,
        run: |r| r.clip(),
    },
    Net {
        name: "DreamSim (tiny)",
        fp32_tol: 1e-4,
        run: |r| r.dreamsim(),
    },
    Net {
        name: "toy classifier",
        fp32_tol: 1e-5,
        run: |r| r.toy_classifier(),
    },
    Net {
        name: "toy SiT",
        fp32_tol: 1e-5,
        run: |r| r.toy_sit(),
    },
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
        precisions.push((p, tol, On(gpu)));
    }
    println!("| network | output | fp32 | tf32 | bf16 |");
    println!("|---|---|---|---|---|");
    let mut failures = Vec::new();
    for net in NETS {
        let t0 = Instant::now();
        let want = (net.run)(&On(Cpu));
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
