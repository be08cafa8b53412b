//! `sitdiv sample --guidance …` end to end: every method reruns, shards and changes unit size
//! byte for byte, names its batch and manifest after its parameters, and refuses bad settings.

use std::path::Path;

use super::pipeline_sample::{check_error, check_sharding, tiny_weights};
use crate::common::{scaled_tiny_weights, succeeds, tmp};
use sitdiv::io::npy;

/// The guide of the autoguidance runs: the tiny SiT with every tensor scaled by 0.8.
fn guide(dir: &Path) -> String {
    scaled_tiny_weights(dir, 0.8).display().to_string()
}

/// The method's latents for 6 samples with `--unit-size 1` equal those with units of 4 (and
/// shards and reruns agree: [`check_sharding`]).
fn check_method(name: &str, args: &[&str]) {
    check_sharding(name, args);
    let dir = tmp(&format!("units-{name}"));
    let w = tiny_weights();
    let run = |unit: &str| {
        let out = dir.join(format!("u{unit}.npy"));
        let o = out.display().to_string();
        let mut a = vec![
            "sample",
            "--weights",
            &w,
            "--num-samples",
            "6",
            "--seed",
            "3",
        ];
        a.extend(["--unit-size", unit, "--latents-out", &o]);
        a.extend(args);
        succeeds(&a);
        npy::read_f32(&out).unwrap().data
    };
    let (one, four) = (run("1"), run("4"));
    assert!(
        one.iter().all(|v| v.is_finite()),
        "{name}: non-finite latents"
    );
    assert_eq!(one, four, "{name}: the unit size moved the bits");
}

#[test]
fn every_method_is_reproducible_byte_for_byte() {
    let dir = tmp("guide-weights");
    let g = guide(&dir);
    let sde = ["--mode", "sde", "--steps", "6"];
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "apg",
            vec!["--guidance", "apg", "--cfg", "4", "--steps", "6"],
        ),
        (
            "apg-sde-interval",
            [
                &sde[..],
                &[
                    "--guidance",
                    "apg",
                    "--cfg",
                    "4",
                    "--apg-eta",
                    "0.5",
                    "--cfg-interval",
                    "0.2,0.8",
                ],
            ]
            .concat(),
        ),
        (
            "cfg-zero-star-heun",
            vec![
                "--guidance",
                "cfg-zero-star",
                "--cfg",
                "3",
                "--method",
                "heun",
                "--steps",
                "5",
                "--zero-init-steps",
                "2",
            ],
        ),
        (
            "cads-sde",
            [
                &sde[..],
                &[
                    "--guidance",
                    "cads",
                    "--cfg",
                    "3",
                    "--cads-noise-scale",
                    "0.5",
                ],
            ]
            .concat(),
        ),
        ("cads-unguided", vec!["--guidance", "cads", "--steps", "6"]),
        (
            "autoguidance",
            vec![
                "--guidance",
                "autoguidance",
                "--cfg",
                "2",
                "--guide-weights",
                &g,
                "--steps",
                "6",
            ],
        ),
    ];
    for (name, args) in &cases {
        check_method(name, args);
    }
}

#[test]
fn methods_differ_from_each_other() {
    let dir = tmp("methods-differ");
    let w = tiny_weights();
    let g = guide(&dir);
    let cases: [(&str, Vec<&str>); 5] = [
        ("cfg", vec![]),
        ("apg", vec!["--guidance", "apg"]),
        ("zero", vec!["--guidance", "cfg-zero-star"]),
        ("cads", vec!["--guidance", "cads"]),
        (
            "auto",
            vec!["--guidance", "autoguidance", "--guide-weights", &g],
        ),
    ];
    let mut seen: Vec<Vec<f32>> = Vec::new();
    for (tag, args) in &cases {
        let out = dir.join(format!("{tag}.npy"));
        let o = out.display().to_string();
        let mut a = vec![
            "sample",
            "--weights",
            &w,
            "--num-samples",
            "2",
            "--steps",
            "5",
            "--cfg",
            "3",
        ];
        a.extend(args);
        a.extend(["--latents-out", &o]);
        succeeds(&a);
        let lat = npy::read_f32(&out).unwrap().data;
        assert!(
            !seen.contains(&lat),
            "{tag}: the same latents as another method"
        );
        seen.push(lat);
    }
}

#[test]
fn batch_names_carry_the_method_and_its_parameters() {
    use sitdiv::pipeline::settings::SampleJob;
    use sitdiv::sampling::guidance::GuidanceMethod;
    let mut job = SampleJob::default();
    job.guidance.cfg = 4.0;
    let cfg = job.batch_name();
    for (m, part) in [
        (GuidanceMethod::Apg, "-apg-eta0.0-r15.0-beta-0.5"),
        (GuidanceMethod::CfgZeroStar, "-cfg-zero-star-zero1"),
        (GuidanceMethod::Cads, "-cads-tau0.6-0.9-s0.25-psi1.0"),
        (GuidanceMethod::Autoguidance, "-autoguidance-weak"),
    ] {
        job.guidance.method = m;
        job.model.guide_weights = Some("runs/weak.safetensors".into());
        let name = job.batch_name();
        assert!(name.contains(part), "{m}: {name} lacks {part}");
        assert!(!cfg.contains(part), "plain CFG's {cfg} has {part}");
    }
}

#[test]
fn bad_guidance_settings_fail_clearly() {
    let w = tiny_weights();
    let base = [
        "sample",
        "--weights",
        w.as_str(),
        "--num-samples",
        "2",
        "--steps",
        "4",
    ];
    let with = |extra: &[&'static str]| -> Vec<&str> { [&base[..], extra].concat() };
    check_error(
        "apg at scale 1",
        &with(&["--guidance", "apg"]),
        &["--guidance apg", "--cfg"],
    );
    check_error(
        "another method's parameter",
        &with(&["--guidance", "cads", "--apg-eta", "1"]),
        &["--apg-eta", "--guidance apg"],
    );
    check_error(
        "autoguidance without a guide",
        &with(&["--guidance", "autoguidance", "--cfg", "2"]),
        &["--guide-weights"],
    );
    check_error(
        "a guide without autoguidance",
        &with(&["--cfg", "2", "--guide-weights", "g.safetensors"]),
        &["--guide-weights", "autoguidance"],
    );
    check_error(
        "CADS times out of order",
        &with(&[
            "--guidance",
            "cads",
            "--cads-tau1",
            "0.9",
            "--cads-tau2",
            "0.5",
        ]),
        &["--cads-tau1 0.9", "τ₁ ≤ τ₂"],
    );
    check_error(
        "APG momentum out of range",
        &with(&["--guidance", "apg", "--cfg", "2", "--apg-momentum", "1.5"]),
        &["--apg-momentum 1.5"],
    );
    check_error(
        "unknown method",
        &with(&["--guidance", "pag"]),
        &["pag", "apg"],
    );
}

/// A sweep with a guidance axis: each method crosses only its own parameters, unguided points
/// collapse to plain sampling (CADS excepted), and a unit of each method is byte for byte the
/// image batch `sitdiv sample` writes with the same flags.
#[test]
fn a_guidance_axis_sweeps_like_sample() {
    use sitdiv::pipeline::sweep::spec::Sweep;
    let dir = tmp("guidance-sweep");
    let (w, v) = (
        tiny_weights(),
        crate::common::golden("vae_tiny.weights.safetensors"),
    );
    let g = guide(&dir);
    let sweep = dir.join("g.toml");
    let text = |guide_line: &str| {
        format!(
            r#"name = "g"
[model]
weights = "{w}"
vae = "{v}"
{guide_line}
[evaluation]
[run]
unit_size = 3
keep_images = true
[defaults]
steps = [4]
classes = [4]
samples_per_class = [3]
seed = [7]
[[grid]]
cfg = [1.0, 2.0]
sampler = ["ode-euler"]
guidance = ["cfg", "apg", "cads", "autoguidance"]
apg_eta = [0.0, 0.5]
"#
        )
    };
    std::fs::write(&sweep, text("")).unwrap();
    let err = Sweep::load(&sweep).unwrap_err();
    assert!(format!("{err:#}").contains("guide_weights"), "{err:#}");
    std::fs::write(&sweep, text(&format!("guide_weights = \"{g}\""))).unwrap();
    let ids: Vec<String> = Sweep::load(&sweep)
        .unwrap()
        .configs
        .iter()
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(
        ids,
        [
            "ode-euler-4-cfg1-k3-seed7",
            "ode-euler-4-cfg1-cads-tau0.6-0.9-s0.25-psi1-k3-seed7",
            "ode-euler-4-cfg2-k3-seed7",
            "ode-euler-4-cfg2-apg-eta0-r15-beta-0.5-k3-seed7",
            "ode-euler-4-cfg2-apg-eta0.5-r15-beta-0.5-k3-seed7",
            "ode-euler-4-cfg2-cads-tau0.6-0.9-s0.25-psi1-k3-seed7",
            "ode-euler-4-cfg2-autoguidance-k3-seed7",
        ]
    );
    let out = dir.join("sweep");
    let s = |p: &Path| p.display().to_string();
    succeeds(&["sweep", "run", &s(&sweep), "--out", &s(&out)]);
    for (id, flags) in [
        (
            "ode-euler-4-cfg2-apg-eta0.5-r15-beta-0.5-k3-seed7",
            vec!["--cfg", "2", "--guidance", "apg", "--apg-eta", "0.5"],
        ),
        (
            "ode-euler-4-cfg1-cads-tau0.6-0.9-s0.25-psi1-k3-seed7",
            vec!["--guidance", "cads"],
        ),
        (
            "ode-euler-4-cfg2-autoguidance-k3-seed7",
            vec![
                "--cfg",
                "2",
                "--guidance",
                "autoguidance",
                "--guide-weights",
                &g,
            ],
        ),
    ] {
        let batch = dir.join(format!("sample-{id}"));
        let mut a = vec![
            "sample",
            "--weights",
            &w,
            "--vae",
            &v,
            "--classes",
            "4",
            "--samples-per-class",
            "3",
            "--unit-size",
            "3",
            "--steps",
            "4",
            "--seed",
            "7",
        ];
        let b = s(&batch);
        a.extend(["--out", &b]);
        a.extend(flags);
        succeeds(&a);
        let npz: Vec<_> = std::fs::read_dir(&batch)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "npz"))
            .collect();
        assert_eq!(npz.len(), 1, "{npz:?}");
        let unit = out.join("units").join(id).join("c4-00000000-00000003.npz");
        assert!(
            std::fs::read(&unit).unwrap() == std::fs::read(&npz[0]).unwrap(),
            "{id}: the sweep unit differs from sample's batch {}",
            npz[0].display()
        );
    }
}
