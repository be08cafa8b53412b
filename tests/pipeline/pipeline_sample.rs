//! `sitdiv sample` end to end: the flag contract against the golden files, determinism and
//! sharding, and clear errors with no output on bad input.

use std::path::Path;

use crate::common::{golden_dir, open, replay_golden_case, sitdiv, succeeds, tmp};
use sitdiv::io::npy;

pub(crate) fn tiny_weights() -> String {
    golden_dir()
        .join("sit_tiny.weights.safetensors")
        .display()
        .to_string()
}

/// Replays a golden case through the CLI and compares `sample`.
fn cli_case(file: &str, extra: &[&str], tol: f64) {
    let err = replay_golden_case(file, extra, &[]);
    println!("{file}: CLI sample rel err {err:.3e} (tolerance {tol:.0e})");
    assert!(err <= tol, "{file}: rel {err:.3e} > {tol:.0e}");
}

#[test]
fn cli_replays_golden_cases() {
    cli_case(
        "sampler_ode_euler_n10.io.safetensors",
        &["--mode", "ode", "--method", "euler", "--steps", "10"],
        1e-5,
    );
    cli_case(
        "sampler_ode_euler_n10_vp.io.safetensors",
        &[
            "--mode", "ode", "--method", "euler", "--steps", "10", "--path", "vp",
        ],
        1e-5,
    );
    cli_case(
        "sampler_ode_euler_n10_cfg4.0_interval0.3-0.7_fork.io.safetensors",
        &[
            "--steps",
            "10",
            "--cfg",
            "4.0",
            "--cfg-interval",
            "0.3,0.7",
            "--cfg-interval-mode",
            "fork",
        ],
        1e-5,
    );
    cli_case(
        "sampler_ode_euler_n10_cfg4.0_interval0.3-0.7_published.io.safetensors",
        &["--steps", "10", "--cfg", "4.0", "--cfg-interval", "0.3,0.7"],
        1e-5,
    );
    cli_case(
        "sampler_ode_heun2_n10_cfg4.0.io.safetensors",
        &["--method", "heun", "--steps", "10", "--cfg", "4"],
        1e-5,
    );
    cli_case(
        "sampler_ode_dopri5_n50_cfg1.5.io.safetensors",
        &["--method", "dopri5", "--steps", "50", "--cfg", "1.5"],
        1e-4,
    );
    cli_case(
        "sampler_sde_euler_sigma_norm1.0_mean_cfg4.0.io.safetensors",
        &[
            "--mode", "sde", "--method", "euler", "--steps", "10", "--cfg", "4.0",
        ],
        2e-5,
    );
    cli_case(
        "sampler_sde_euler_SBDM_norm1.0_mean.io.safetensors",
        &[
            "--mode",
            "sde",
            "--steps",
            "10",
            "--diffusion-form",
            "SBDM",
            "--sample-eps",
            "1e-3",
        ],
        2e-5,
    );
    cli_case(
        "sampler_sde_heun_sigma_norm1.0_tweedie.io.safetensors",
        &[
            "--mode",
            "sde",
            "--method",
            "heun",
            "--steps",
            "10",
            "--last-step",
            "tweedie",
        ],
        2e-5,
    );
    cli_case(
        "sampler_sde_euler_sigma_norm1.0_none.io.safetensors",
        &["--mode", "sde", "--steps", "10", "--last-step", "none"],
        2e-5,
    );
}

fn data_bytes(p: &Path) -> Vec<u8> {
    let a = npy::read_f32(p).unwrap();
    bytemuck::cast_slice(&a.data).to_vec()
}

/// 8 samples as one shard equal two shards concatenated, and a rerun is byte-identical.
pub(crate) fn check_sharding(name: &str, sampler: &[&str]) {
    let dir = tmp(name);
    let w = tiny_weights();
    let p = |f: &str| dir.join(f).display().to_string();
    let base = [
        "sample",
        "--weights",
        &w,
        "--num-samples",
        "8",
        "--unit-size",
        "4",
        "--seed",
        "7",
    ];
    let run = |out: &str, shard: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend(sampler);
        a.extend(shard);
        a.extend(["--latents-out", out]);
        succeeds(&a);
    };
    let (all, again, s0, s1) = (p("all.npy"), p("again.npy"), p("s0.npy"), p("s1.npy"));
    run(&all, &[]);
    run(&again, &[]);
    run(&s0, &["--shard-index", "0", "--num-shards", "2"]);
    run(&s1, &["--shard-index", "1", "--num-shards", "2"]);
    let bytes = |s: &str| std::fs::read(s).unwrap();
    assert_eq!(
        bytes(&all),
        bytes(&again),
        "{name}: rerun is not byte-identical"
    );
    let mut cat = data_bytes(Path::new(&s0));
    cat.extend(data_bytes(Path::new(&s1)));
    assert_eq!(
        data_bytes(Path::new(&all)),
        cat,
        "{name}: shards differ from the single run"
    );
    assert_eq!(npy::read_f32(Path::new(&all)).unwrap().shape, [8, 4, 8, 8]);
}

#[test]
fn sharding_and_reruns_are_byte_identical() {
    check_sharding("ode-euler", &["--steps", "6"]);
    check_sharding(
        "ode-dopri5-cfg",
        &["--method", "dopri5", "--steps", "5", "--cfg", "1.5"],
    );
    check_sharding(
        "sde-euler-cfg",
        &["--mode", "sde", "--steps", "6", "--cfg", "4.0"],
    );
    check_sharding(
        "sde-heun",
        &["--mode", "sde", "--method", "heun", "--steps", "5"],
    );
}

/// Runs a failing command: non-zero exit, stderr mentions every `needles`, no output file.
pub(crate) fn check_error(name: &str, args: &[&str], needles: &[&str]) {
    let dir = tmp(&format!("err-{name}"));
    let out = dir.join("x.npy");
    let o = out.display().to_string();
    let mut a = args.to_vec();
    a.extend(["--latents-out", o.as_str()]);
    let r = sitdiv(&a);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "{name}: expected failure");
    for n in needles {
        assert!(err.contains(n), "{name}: stderr lacks {n:?}:\n{err}");
    }
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "{name}: left files behind: {left:?}");
    println!("{name}: {}", err.trim());
}

/// A copy of the tiny weights with `edit` applied to its (name, shape, data) list.
fn edited_weights(
    dir: &Path,
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>),
) -> String {
    let f = open("sit_tiny.weights.safetensors");
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = f
        .names()
        .map(|n| {
            (
                n.to_string(),
                f.info(n).unwrap().shape.clone(),
                f.f32(n).unwrap(),
            )
        })
        .collect();
    edit(&mut t);
    let meta = f
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let p = dir.join("w.safetensors");
    sitdiv::weights::write_f32_safetensors(&p, &t, Some(meta)).unwrap();
    p.display().to_string()
}

#[test]
fn bad_input_fails_clearly_without_output() {
    let dir = tmp("bad-inputs");
    let base = |w: &str| -> Vec<String> {
        [
            "sample",
            "--weights",
            w,
            "--num-samples",
            "2",
            "--steps",
            "3",
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |name: &str, args: Vec<String>, needles: &[&str]| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        check_error(name, &a, needles);
    };

    let missing = edited_weights(&dir.join("m"), |t| {
        t.retain(|(n, _, _)| n != "blocks.1.mlp.fc2.bias")
    });
    run(
        "missing tensor",
        base(&missing),
        &[
            "missing tensor blocks.1.mlp.fc2.bias",
            "expected shape [64]",
        ],
    );

    let shaped = edited_weights(&dir.join("s"), |t| {
        let e = t
            .iter_mut()
            .find(|(n, _, _)| n == "blocks.0.attn.qkv.weight")
            .unwrap();
        e.1 = vec![64, 192];
    });
    run(
        "wrong shape",
        base(&shaped),
        &[
            "blocks.0.attn.qkv.weight",
            "wrong shape, expected [192, 64], found [64, 192]",
        ],
    );

    let bytes = std::fs::read(golden_dir().join("sit_tiny.weights.safetensors")).unwrap();
    let cut = dir.join("truncated.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    run(
        "truncated",
        base(&cut.display().to_string()),
        &["truncated.safetensors", "file truncated, its bytes end at"],
    );

    let text = dir.join("notes.safetensors");
    std::fs::write(&text, "these are not weights\n").unwrap();
    run(
        "not safetensors",
        base(&text.display().to_string()),
        &["is not a safetensors file"],
    );

    let w = tiny_weights();
    let z = dir.join("z.npy");
    npy::write_f32(&z, &[2, 4, 4, 4], &[0.0; 128]).unwrap();
    let mut a = base(&w);
    a.extend(["--init-noise".into(), z.display().to_string()]);
    run(
        "noise shape",
        a,
        &[
            "z.npy",
            "init noise has shape [2, 4, 4, 4], expected (N, 4, 8, 8)",
        ],
    );

    let mut a = base(&w);
    a.extend(["--mode", "sde", "--replay-noise"].map(String::from));
    a.push(z.display().to_string());
    run(
        "replay shape",
        a,
        &["replay noise has shape [2, 4, 4, 4], expected (2, 2, 4, 8, 8)"],
    );

    run(
        "unknown model",
        [
            "sample",
            "--synthetic",
            "--model",
            "SiT-H/3",
            "--num-samples",
            "1",
        ]
        .map(String::from)
        .to_vec(),
        &["unknown model \"SiT-H/3\"", "SiT-XL/2"],
    );

    let mut a = base(&w);
    a.extend(["--mode", "sde", "--diffusion-form", "SBDM"].map(String::from));
    run("SBDM at t0 = 0", a, &["SBDM", "--sample-eps"]);

    let mut a = base(&w);
    a.extend(["--mode", "sde", "--method", "dopri5"].map(String::from));
    run("dopri5 SDE", a, &["--method dopri5 is not an SDE method"]);

    let mut a = base(&w);
    a.extend(["--cfg", "0.5"].map(String::from));
    run("cfg below 1", a, &["--cfg 0.5"]);

    let mut a = base(&w);
    a.extend(["--mode", "sde", "--method", "heun", "--last-step", "none"].map(String::from));
    run("heun to t = 1", a, &["--last-step none", "divides by zero"]);

    let mut a = base(&w);
    a.extend(["--prediction", "noise", "--sample-eps", "0"].map(String::from));
    run(
        "noise prediction at t = 0",
        a,
        &["--prediction noise", "needs t0 > 0"],
    );

    let mut a = base(&w);
    a.extend(["--model", "SiT-Bogus/2"].map(String::from));
    run(
        "unknown model with weights",
        a,
        &["unknown model \"SiT-Bogus/2\""],
    );

    let mut a = base(&w);
    a.extend(["--shard-index", "2", "--num-shards", "2"].map(String::from));
    run(
        "shard index",
        a,
        &["--shard-index 2 must be below --num-shards 2"],
    );
}

#[test]
fn gpu_request_without_gpu_fails_clearly_and_auto_falls_back() {
    #[cfg(any(feature = "cuda", feature = "cuda12"))]
    if sitdiv::backend::cuda::driver_present() {
        eprintln!("SKIPPED: a CUDA driver is present; this test covers machines without one");
        return;
    }
    let args = [
        "sample",
        "--synthetic",
        "--model",
        "SiT-S/8",
        "--num-samples",
        "1",
        "--steps",
        "2",
        "--device",
    ];
    #[cfg(any(feature = "cuda", feature = "cuda12"))]
    let needle = "no CUDA driver found";
    #[cfg(not(any(feature = "cuda", feature = "cuda12")))]
    let needle = "built without CUDA";
    let mut a = args.to_vec();
    a.push("cuda");
    check_error("device cuda", &a, &[needle, "--device cpu"]);
    let dir = tmp("auto");
    let out = dir.join("x.npy");
    let o = out.display().to_string();
    let mut a = args.to_vec();
    a.extend(["auto", "--latents-out", &o]);
    succeeds(&a);
    assert_eq!(npy::read_f32(&out).unwrap().shape, [1, 4, 32, 32]);
}

/// `sitdiv synth-weights` writes files the commands load as released checkpoints: a SiT preset
/// (its config in the metadata, so `sample` needs no --model) and a backbone; the same seed
/// gives the same bytes; an unknown network is refused.
#[test]
fn synthetic_weights_files_run_through_the_commands() {
    let dir = tmp("synth-weights");
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    for (net, file) in [
        ("SiT-S/8", "sit.safetensors"),
        ("resnet50", "r50.safetensors"),
    ] {
        succeeds(&["synth-weights", "--net", net, "--out", &p(file)]);
    }
    succeeds(&[
        "synth-weights",
        "--net",
        "SiT-S/8",
        "--out",
        &p("again.safetensors"),
    ]);
    assert!(
        std::fs::read(p("sit.safetensors")).unwrap()
            == std::fs::read(p("again.safetensors")).unwrap(),
        "the same seed gave other bytes"
    );
    let z = p("z.npy");
    succeeds(&[
        "sample",
        "--weights",
        &p("sit.safetensors"),
        "--num-samples",
        "2",
        "--steps",
        "2",
        "--latents-out",
        &z,
    ]);
    assert_eq!(npy::read_f32(Path::new(&z)).unwrap().shape, [2, 4, 32, 32]);
    let images = dir.join("b.npz");
    sitdiv::io::npz::write(
        &images,
        &[sitdiv::io::npz::Member {
            key: "arr_0".into(),
            npy: npy::encode_u8(&[2, 32, 32, 3], &[90; 2 * 32 * 32 * 3]).unwrap(),
        }],
    )
    .unwrap();
    succeeds(&[
        "features",
        "--backbone",
        "mocov3-r50",
        "--weights",
        &p("r50.safetensors"),
        "--images",
        images.to_str().unwrap(),
        "--out",
        &p("f.npz"),
    ]);
    let o = sitdiv(&[
        "synth-weights",
        "--net",
        "bogus",
        "--out",
        &p("bogus.safetensors"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "--net bogus accepted");
    assert!(
        err.contains("--net bogus: expected one of SiT-{XL,L,B,S}/{2,4,8}"),
        "{err}"
    );
    assert!(!dir.join("bogus.safetensors").exists());
}
