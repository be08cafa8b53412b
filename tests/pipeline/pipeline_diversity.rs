//! Diversity embeddings end to end: `sitdiv features --backbone …` and `sitdiv eval --metrics
//! diversity,vendi` on the tiny DINOv2 / CLIP / DreamSim goldens and the ResNet-50 formula weights: equal to
//! the library, independent of --batch, seeded subsets, labels carried through, bad input.

use std::path::Path;

use crate::common::{fails, golden, succeeds, tmp};
use sitdiv::backend::cpu::Cpu;
use sitdiv::io::{npy, npz};
use sitdiv::models::dinov2::{Dinov2, Dinov2Config};
use sitdiv::models::dreamsim::{DreamSim, DreamSimConfig};
use sitdiv::models::preprocess::Pipeline;
use sitdiv::rng;
use sitdiv::weights::WeightFile;

const SIDE: usize = 40;

/// Six noise images of classes [3, 3, 7, 7, 9, 9], global indices 10..16, optionally labelled.
fn batch(dir: &Path, labels: bool) -> (String, Vec<u8>) {
    let imgs: Vec<u8> = (0..6)
        .flat_map(|n| rng::uniform(31, n, 0, 0, SIDE * SIDE * 3))
        .map(|u| (256.0 * u) as u8)
        .collect();
    let mut m = vec![
        npz::Member {
            key: "arr_0".into(),
            npy: npy::encode_u8(&[6, SIDE, SIDE, 3], &imgs).unwrap(),
        },
        npz::Member {
            key: "indices".into(),
            npy: npy::encode_i64(&[6], &[10, 11, 12, 13, 14, 15]).unwrap(),
        },
    ];
    if labels {
        m.push(npz::Member {
            key: "arr_1".into(),
            npy: npy::encode_i64(&[6], &[3, 3, 7, 7, 9, 9]).unwrap(),
        });
    }
    let p = dir.join(format!("batch_{labels}.npz"));
    npz::write(&p, &m).unwrap();
    (p.display().to_string(), imgs)
}

fn arrays(p: &Path) -> (Vec<f32>, Vec<i64>, Vec<i64>) {
    let m = npz::read(p).unwrap();
    let get = |k: &str| m.iter().find(|x| x.key == k).unwrap().npy.clone();
    (
        npy::decode_f32(p, &get("embedding")).unwrap().data,
        npy::decode_i64(p, &get("indices")).unwrap().data,
        npy::decode_i64(p, &get("labels")).unwrap().data,
    )
}

#[test]
fn features_equal_the_library_and_ignore_the_batch_size() {
    let dir = tmp("div-features");
    let (b, imgs) = batch(&dir, true);
    let w = golden("dinov2_tiny.weights.safetensors");
    let (e1, e3, e8) = (dir.join("e1.npz"), dir.join("e3.npz"), dir.join("e8.npz"));
    for (out, bs) in [(&e1, "1"), (&e3, "3"), (&e8, "8")] {
        succeeds(&[
            "features",
            "--backbone",
            "dinov2-b14",
            "--weights",
            &w,
            "--images",
            &b,
            "--out",
            out.to_str().unwrap(),
            "--batch",
            bs,
        ]);
    }
    let (a, idx, labels) = arrays(&e1);
    for other in [&e3, &e8] {
        let (b, _, _) = arrays(other);
        let differ = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count();
        assert_eq!(differ, 0, "{differ} embedding values depend on --batch");
    }
    assert_eq!(idx, vec![10, 11, 12, 13, 14, 15]);
    assert_eq!(labels, vec![3, 3, 7, 7, 9, 9]);
    let file = WeightFile::open(&w).unwrap();
    let net = Dinov2::load(&Cpu, &file, Dinov2Config::detect(&file).unwrap()).unwrap();
    // One image per forward: the command's batches give the same bits.
    let want: Vec<f32> = imgs
        .chunks(SIDE * SIDE * 3)
        .flat_map(|i| {
            let x = Pipeline::Dinov2Hf.prepare(i, (SIDE, SIDE));
            net.forward(&Cpu, &x, 1, (224, 224)).unwrap()
        })
        .collect();
    assert!(a == want, "sitdiv features differs from the library");
}

#[test]
fn eval_diversity_equals_metrics_on_the_embedding_and_subsets_are_seeded() {
    let dir = tmp("div-eval");
    let (b, _) = batch(&dir, true);
    for (backbone, weights) in [
        ("clip-b32", "clip_tiny.weights.safetensors"),
        ("dinov2-b14", "dinov2_tiny.weights.safetensors"),
    ] {
        let w = golden(weights);
        let json = dir.join(format!("{backbone}.json"));
        let fo = dir.join(format!("{backbone}.npz"));
        succeeds(&[
            "eval",
            "--samples",
            &b,
            "--metrics",
            "diversity,vendi",
            "--backbone",
            backbone,
            "--backbone-weights",
            &w,
            "--json",
            json.to_str().unwrap(),
            "--features-out",
            fo.to_str().unwrap(),
        ]);
        let e: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let emb = fo.with_extension("embedding.npz");
        let mj = dir.join(format!("{backbone}-m.json"));
        succeeds(&[
            "metrics",
            "--features",
            emb.to_str().unwrap(),
            "--metrics",
            "diversity,vendi",
            "--json",
            mj.to_str().unwrap(),
        ]);
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mj).unwrap()).unwrap();
        assert_eq!(e["diversity"], m["diversity"], "{backbone}");
        assert_eq!(e["vendi"], m["vendi"], "{backbone}");
        assert!(e["diversity"]["intra_mean"].as_f64().unwrap() > 0.0);
        assert_eq!(
            e["manifest"]["diversity_indices"],
            serde_json::json!([10, 11, 12, 13, 14, 15])
        );
        println!("{backbone}: {}", e["diversity"]);
    }
    // One per class, from a seed: three rows, one of each class, the same for the same seed.
    let w = golden("dinov2_tiny.weights.safetensors");
    let pick = |seed: &str, name: &str| {
        let out = dir.join(name);
        succeeds(&[
            "features",
            "--backbone",
            "dinov2-b14",
            "--weights",
            &w,
            "--images",
            &b,
            "--out",
            out.to_str().unwrap(),
            "--max-per-class",
            "1",
            "--subset-seed",
            seed,
        ]);
        let (_, idx, labels) = arrays(&out);
        assert_eq!(labels, vec![3, 7, 9]);
        idx
    };
    let (a, a2) = (pick("5", "s5.npz"), pick("5", "s5b.npz"));
    assert_eq!(a, a2);
    let seeds: Vec<Vec<i64>> = (0..8)
        .map(|s| pick(&s.to_string(), &format!("s{s}.npz")))
        .collect();
    assert!(
        seeds.iter().any(|s| *s != seeds[0]),
        "the seed does not change the subset"
    );
    // --max-samples after --max-per-class.
    let out = dir.join("m.npz");
    succeeds(&[
        "features",
        "--backbone",
        "dinov2-b14",
        "--weights",
        &w,
        "--images",
        &b,
        "--out",
        out.to_str().unwrap(),
        "--max-samples",
        "4",
    ]);
    assert_eq!(arrays(&out).1.len(), 4);
}

#[test]
fn resnet_backbones_run_through_features() {
    let dir = tmp("div-resnet");
    let (b, _) = batch(&dir, true);
    let w = dir.join("r50.safetensors");
    let t: Vec<_> = sitdiv::models::synthetic::resnet50(2016)
        .unwrap()
        .tensors
        .into_iter()
        .map(|(k, (s, d))| (k, s, d))
        .collect();
    sitdiv::weights::write_f32_safetensors(&w, &t, None).unwrap();
    for backbone in ["mocov3-r50", "simclr-r50"] {
        let out = dir.join(format!("{backbone}.npz"));
        succeeds(&[
            "features",
            "--backbone",
            backbone,
            "--weights",
            w.to_str().unwrap(),
            "--images",
            &b,
            "--out",
            out.to_str().unwrap(),
            "--batch",
            "6",
        ]);
        let (e, _, _) = arrays(&out);
        assert_eq!(e.len(), 6 * 2048);
        assert!(e.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn bad_diversity_inputs_fail_clearly() {
    let dir = tmp("div-bad");
    let (unlabelled, _) = batch(&dir, false);
    let w = golden("dinov2_tiny.weights.safetensors");
    let json = dir.join("e.json");
    let j = json.to_str().unwrap();
    fails(
        &[
            "eval",
            "--samples",
            &unlabelled,
            "--metrics",
            "diversity",
            "--backbone",
            "dinov2-b14",
            "--backbone-weights",
            &w,
            "--json",
            j,
        ],
        "need the class of every sample",
        &json,
    );
    let out = dir.join("f.npz");
    let o = out.to_str().unwrap();
    fails(
        &[
            "features",
            "--backbone",
            "dinov2-b14",
            "--weights",
            &w,
            "--images",
            &unlabelled,
            "--out",
            o,
            "--max-per-class",
            "2",
        ],
        "--max-per-class needs labels",
        &out,
    );
    fails(
        &[
            "features",
            "--backbone",
            "dinov2-b14",
            "--weights",
            &golden("clip_tiny.weights.safetensors"),
            "--images",
            &unlabelled,
            "--out",
            o,
        ],
        "not dinov2-b14 weights",
        &out,
    );
    fails(
        &[
            "eval",
            "--samples",
            &unlabelled,
            "--metrics",
            "diversity",
            "--json",
            j,
        ],
        "need a diversity backbone",
        &json,
    );
    // A metric its backbone cannot give.
    let (labelled, _) = batch(&dir, true);
    fails(
        &[
            "eval",
            "--samples",
            &labelled,
            "--metrics",
            "lpips",
            "--backbone",
            "dinov2-b14",
            "--backbone-weights",
            &w,
            "--json",
            j,
        ],
        "cannot use --backbone dinov2-b14",
        &json,
    );
    // Zero-sized images.
    let empty = dir.join("zero.npz");
    npz::write(
        &empty,
        &[npz::Member {
            key: "arr_0".into(),
            npy: npy::encode_u8(&[2, 0, 4, 3], &[]).unwrap(),
        }],
    )
    .unwrap();
    fails(
        &[
            "features",
            "--backbone",
            "dinov2-b14",
            "--weights",
            &w,
            "--images",
            empty.to_str().unwrap(),
            "--out",
            o,
        ],
        "height, width and channels of at least 1",
        &out,
    );
    fails(
        &[
            "eval",
            "--samples",
            &unlabelled,
            "--metrics",
            "fid",
            "--json",
            j,
        ],
        "need the FID Inception",
        &json,
    );
}

#[test]
fn lpips_through_features_and_eval() {
    let dir = tmp("div-lpips");
    let (b, _) = batch(&dir, true);
    let w = crate::common::lpips_alex_weights(&dir);
    let w = w.to_str().unwrap();
    let f = dir.join("lpips.npz");
    succeeds(&[
        "features",
        "--backbone",
        "lpips-alex",
        "--weights",
        w,
        "--images",
        &b,
        "--out",
        f.to_str().unwrap(),
    ]);
    let json = dir.join("e.json");
    succeeds(&[
        "eval",
        "--samples",
        &b,
        "--metrics",
        "lpips",
        "--backbone",
        "lpips-alex",
        "--backbone-weights",
        w,
        "--json",
        json.to_str().unwrap(),
    ]);
    let mj = dir.join("m.json");
    succeeds(&[
        "metrics",
        "--features",
        f.to_str().unwrap(),
        "--metrics",
        "lpips",
        "--json",
        mj.to_str().unwrap(),
    ]);
    let e: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mj).unwrap()).unwrap();
    assert_eq!(e["lpips"], m["lpips"]);
    assert!(e["lpips"]["mixed_mean"].as_f64().unwrap() > 0.0);
    assert_eq!(e["lpips"]["num_pairs"], 15);
    println!("lpips: {}", e["lpips"]);
}

#[test]
fn fd_dinov2_through_eval_equals_features_then_metrics() {
    let dir = tmp("div-fd");
    let (b, _) = batch(&dir, true);
    // The reference: six other images.
    let imgs: Vec<u8> = (0..6)
        .flat_map(|n| rng::uniform(32, n, 0, 0, SIDE * SIDE * 3))
        .map(|u| (256.0 * u) as u8)
        .collect();
    let r = dir.join("ref.npz");
    npz::write(
        &r,
        &[npz::Member {
            key: "arr_0".into(),
            npy: npy::encode_u8(&[6, SIDE, SIDE, 3], &imgs).unwrap(),
        }],
    )
    .unwrap();
    let r = r.to_str().unwrap();
    let w = golden("dinov2_release_tiny.weights.safetensors");
    let json = dir.join("e.json");
    succeeds(&[
        "eval",
        "--samples",
        &b,
        "--ref",
        r,
        "--metrics",
        "fd_dinov2",
        "--backbone",
        "dinov2-l14",
        "--backbone-weights",
        &w,
        "--json",
        json.to_str().unwrap(),
    ]);
    let (fa, fb) = (dir.join("a.npz"), dir.join("b.npz"));
    succeeds(&[
        "features",
        "--backbone",
        "dinov2-l14",
        "--weights",
        &w,
        "--images",
        &b,
        "--out",
        fa.to_str().unwrap(),
    ]);
    succeeds(&[
        "features",
        "--backbone",
        "dinov2-l14",
        "--weights",
        &w,
        "--images",
        r,
        "--out",
        fb.to_str().unwrap(),
    ]);
    let mj = dir.join("m.json");
    succeeds(&[
        "metrics",
        "--features",
        fa.to_str().unwrap(),
        "--ref-features",
        fb.to_str().unwrap(),
        "--metrics",
        "fd_dinov2",
        "--json",
        mj.to_str().unwrap(),
    ]);
    let e: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mj).unwrap()).unwrap();
    assert!(e["fd_dinov2"].as_f64().unwrap() > 0.0);
    assert_eq!(e["fd_dinov2"], m["fd_dinov2"]);
    println!("fd_dinov2 {}", e["fd_dinov2"]);
    // Each DINOv2 backbone takes its own weights format.
    let out = dir.join("x.npz");
    fails(
        &[
            "features",
            "--backbone",
            "dinov2-l14",
            "--weights",
            &golden("dinov2_tiny.weights.safetensors"),
            "--images",
            &b,
            "--out",
            out.to_str().unwrap(),
        ],
        "use dinov2-b14",
        &out,
    );
    fails(
        &[
            "features",
            "--backbone",
            "dinov2-b14",
            "--weights",
            &w,
            "--images",
            &b,
            "--out",
            out.to_str().unwrap(),
        ],
        "use dinov2-l14",
        &out,
    );
}

#[test]
fn dreamsim_runs_through_features_and_refuses_other_weights() {
    let dir = tmp("div-dreamsim");
    let (b, imgs) = batch(&dir, true);
    let w = golden("dreamsim_tiny.weights.safetensors");
    let out = dir.join("dreamsim.npz");
    let o = out.to_str().unwrap();
    succeeds(&[
        "features",
        "--backbone",
        "dreamsim",
        "--weights",
        &w,
        "--images",
        &b,
        "--out",
        o,
        "--batch",
        "4",
    ]);
    let (e, _, labels) = arrays(&out);
    assert_eq!(labels, vec![3, 3, 7, 7, 9, 9]);
    let file = WeightFile::open(&w).unwrap();
    let net = DreamSim::load(&Cpu, &file, DreamSimConfig::detect(&file).unwrap()).unwrap();
    let want: Vec<f32> = imgs
        .chunks(SIDE * SIDE * 3)
        .flat_map(|i| {
            let x = Pipeline::DreamSim.prepare(i, (SIDE, SIDE));
            net.embed(&Cpu, &x, 1).unwrap()
        })
        .collect();
    assert!(e == want, "sitdiv features differs from the library");
    std::fs::remove_file(&out).unwrap();
    for (backbone, weights, needle) in [
        (
            "dreamsim",
            "dinov2_tiny.weights.safetensors",
            "not dreamsim weights",
        ),
        (
            "clip-b32",
            "dreamsim_tiny.weights.safetensors",
            "not clip-b32 weights",
        ),
    ] {
        fails(
            &[
                "features",
                "--backbone",
                backbone,
                "--weights",
                &golden(weights),
                "--images",
                &b,
                "--out",
                o,
            ],
            needle,
            &out,
        );
    }
}
