//! `sitdiv sweep plan|run|status|merge` on a small sweep of the tiny goldens: shards and resumes
//! give the bytes of one run, a killed task redoes only its unfinished unit, a flipped byte is
//! found and redone, merge refuses missing units and names them; the shipped sweep files expand
//! to the study's grids.

use std::path::{Path, PathBuf};

use crate::common::{golden, repo, run_sweep_shards, sitdiv, succeeds, sweep_results, tmp};
use sitdiv::pipeline::sweep::spec::Sweep;

/// Two run configs (cfg 1 and 2, ODE Euler 4 steps) × 2 classes × 2 samples, units of 2.
fn small_sweep(dir: &Path) -> PathBuf {
    let p = dir.join("small.toml");
    std::fs::write(&p, small_sweep_text()).unwrap();
    p
}

fn small_sweep_text() -> String {
    crate::common::small_sweep_toml(
        "small",
        &repo().join("sweeps/tiny-reference.npz"),
        r#""fid", "is""#,
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn completed_lines(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("completed.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

/// One `sweep run` over every unit, merged: the bytes every other way must give.
fn clean_run(dir: &Path, sweep: &Path) -> PathBuf {
    let out = dir.join("clean");
    succeeds(&["sweep", "run", s(sweep), "--out", s(&out)]);
    succeeds(&["sweep", "merge", s(sweep), "--out", s(&out)]);
    out
}

#[test]
fn shards_resumes_and_faults_give_the_bytes_of_one_run() {
    let dir = tmp("sweep-shards");
    let sweep = small_sweep(&dir);
    let plan = succeeds(&[
        "sweep",
        "plan",
        s(&sweep),
        "--out",
        s(&dir.join("p")),
        "--num-shards",
        "3",
    ]);
    assert!(
        plan.contains("2 run configs") && plan.contains("4 work units"),
        "{plan}"
    );
    let clean = clean_run(&dir, &sweep);
    let want = sweep_results(&clean);
    let csv = String::from_utf8_lossy(&want[0].1).into_owned();
    println!("{csv}");
    assert!(csv.lines().count() > 10 && csv.contains(",fid,all,value,"));
    // Every number has its bootstrap interval.
    assert!(
        csv.lines().skip(1).all(|l| !l.ends_with(",,,")),
        "a row lacks its interval"
    );
    assert!(csv.contains("dinov2-b14,diversity,intra,mean,"));
    let status = succeeds(&["sweep", "status", s(&sweep), "--out", s(&clean)]);
    assert!(status.contains("4/4 units done (100.0 %)"), "{status}");

    // Three shards, shard 1 run twice at once: the same bytes.
    let sharded = dir.join("sharded");
    let twin = |i: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sitdiv"))
            .args([
                "sweep",
                "run",
                s(&sweep),
                "--out",
                s(&sharded),
                "--shard-index",
                i,
                "--num-shards",
                "3",
            ])
            .output()
            .unwrap()
    };
    let both = std::thread::scope(|sc| {
        let a = sc.spawn(|| twin("1"));
        let b = sc.spawn(|| twin("1"));
        [a.join().unwrap(), b.join().unwrap()]
    });
    assert!(
        both.iter().all(|o| o.status.success()),
        "two tasks on one shard failed"
    );
    run_sweep_shards(&sweep, &sharded, &["0", "2"], "3");
    succeeds(&["sweep", "merge", s(&sweep), "--out", s(&sharded)]);
    assert!(
        sweep_results(&sharded) == want,
        "3 shards differ from one run"
    );

    // A task killed while writing its second unit: half a temporary file, no unit file; the
    // rerun computes only the unfinished units, each unit completes exactly once.
    let faulty = dir.join("faulty");
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_sitdiv"))
        .args(["sweep", "run", s(&sweep), "--out", s(&faulty)])
        .env("SITDIV_FAULT_AFTER_UNITS", "1")
        .output()
        .unwrap();
    assert!(!r.status.success(), "the fault hook did not fire");
    assert_eq!(completed_lines(&faulty).len(), 1);
    let status = succeeds(&["sweep", "status", s(&sweep), "--out", s(&faulty)]);
    assert!(status.contains("1/4 units done (25.0 %)"), "{status}");
    assert!(
        status.contains("temporary file(s) of interrupted writes"),
        "{status}"
    );
    succeeds(&["sweep", "run", s(&sweep), "--out", s(&faulty)]);
    let mut done = completed_lines(&faulty);
    done.sort();
    let n = done.len();
    done.dedup();
    assert_eq!((n, done.len()), (4, 4), "a unit was computed twice or lost");
    succeeds(&["sweep", "merge", s(&sweep), "--out", s(&faulty)]);
    assert!(
        sweep_results(&faulty) == want,
        "the resumed run differs from one run"
    );

    // A flipped byte: status and merge name the unit; run redoes it alone.
    let unit = std::fs::read_dir(clean.join("units/ode-euler-4-cfg2-k2-seed0"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "npz"))
        .unwrap();
    let mut bytes = std::fs::read(&unit).unwrap();
    let k = bytes.len() / 2;
    bytes[k] ^= 0x40;
    std::fs::write(&unit, &bytes).unwrap();
    let status = succeeds(&["sweep", "status", s(&sweep), "--out", s(&clean)]);
    assert!(
        status.contains("3/4 units done") && status.contains("checksum mismatch"),
        "{status}"
    );
    let r = sitdiv(&["sweep", "merge", s(&sweep), "--out", s(&clean)]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains(unit.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
    let before = completed_lines(&clean).len();
    succeeds(&["sweep", "run", s(&sweep), "--out", s(&clean)]);
    assert_eq!(
        completed_lines(&clean).len(),
        before + 1,
        "more than the bad unit was redone"
    );
    succeeds(&["sweep", "merge", s(&sweep), "--out", s(&clean)]);
    assert!(sweep_results(&clean) == want, "the repaired run differs");
}

#[test]
fn merge_refuses_missing_units_and_mixed_precisions() {
    let dir = tmp("sweep-missing");
    let sweep = small_sweep(&dir);
    let out = dir.join("half");
    succeeds(&[
        "sweep",
        "run",
        s(&sweep),
        "--out",
        s(&out),
        "--shard-index",
        "0",
        "--num-shards",
        "2",
    ]);
    let status = succeeds(&["sweep", "status", s(&sweep), "--out", s(&out)]);
    println!("{status}");
    assert!(
        status.contains("2/4 units done (50.0 %), 2 missing"),
        "{status}"
    );
    let r = sitdiv(&["sweep", "merge", s(&sweep), "--out", s(&out)]);
    let err = String::from_utf8_lossy(&r.stderr);
    println!("{err}");
    assert!(!r.status.success());
    assert!(err.contains("2 of 4 units are not done"), "{err}");
    assert!(
        err.contains("ode-euler-4-cfg2-k2-seed0/c0-00000000-00000002.npz (missing)"),
        "{err}"
    );
    assert!(!out.join("results.csv").exists() && !out.join("results").exists());

    // Units embedded in different precisions (a shard run with another --eval-precision) are
    // not merged; units all in tf32 merge on the CPU with an fp32 reference and a warning.
    succeeds(&[
        "sweep",
        "run",
        s(&sweep),
        "--out",
        s(&out),
        "--shard-index",
        "1",
        "--num-shards",
        "2",
    ]);
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(out.join("units"))
        .unwrap()
        .flat_map(|c| std::fs::read_dir(c.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .filter(|f| f.to_string_lossy().ends_with(".manifest.json"))
        .collect();
    manifests.sort();
    assert_eq!(manifests.len(), 4, "{manifests:?}");
    let set_eval_precision = |m: &Path| {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(m).unwrap()).unwrap();
        assert_eq!(v["eval_precision"], "fp32", "{}", m.display());
        v["eval_precision"] = "tf32".into();
        std::fs::write(m, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    };
    set_eval_precision(&manifests[3]);
    let r = sitdiv(&["sweep", "merge", s(&sweep), "--out", s(&out)]);
    let err = String::from_utf8_lossy(&r.stderr);
    println!("{err}");
    assert!(!r.status.success());
    assert!(
        err.contains("units embedded in different precisions cannot be merged")
            && err.contains("(fp32)")
            && err.contains("(tf32)"),
        "{err}"
    );
    assert!(!out.join("results.csv").exists());
    manifests[..3].iter().for_each(|m| set_eval_precision(m));
    let r = sitdiv(&["sweep", "merge", s(&sweep), "--out", s(&out)]);
    let err = String::from_utf8_lossy(&r.stderr);
    println!("{err}");
    assert!(r.status.success(), "{err}");
    assert!(
        err.contains("the units' features were computed in tf32")
            && err.contains("computes the reference's in fp32"),
        "{err}"
    );
}

#[test]
fn bad_sweep_files_fail_clearly() {
    let dir = tmp("sweep-bad");
    let good = std::fs::read_to_string(small_sweep(&dir)).unwrap();
    for (edit, needle) in [
        (
            ("unit_size = 2", "unit_sise = 2"),
            "run.unit_sise (line 12, column 1): unknown field `unit_sise`",
        ),
        // A value of the wrong type: its key path, line and column.
        (
            ("cfg = [1.0, 2.0]", "cfg = [1.0, \"2\"]"),
            "grid[0].cfg[1] (line 18, column 13): invalid type: string \"2\", expected f64",
        ),
        (
            ("unit_size = 2", "unit_size = \"2\""),
            "run.unit_size (line 12, column 13): invalid type: string \"2\"",
        ),
        (("\"ode-euler\"", "\"ode-rk4\""), "(line 19): grid 1: sampler \"ode-rk4\""),
        (
            ("[\"fid\", \"is\"]", "[\"fid\", \"diversity\"]"),
            "(line 8): [evaluation] metrics: diversity belongs to a backbone",
        ),
        (("sit_tiny.weights", "sit_tiny.missing"), "(line 3): [model] weights: cannot open weights file"),
        (
            ("classes = [0, 1]", "classes = [0, 11]"),
            "(line 15): [defaults] classes: class 11 is outside 0..10",
        ),
        (
            ("cfg = [1.0, 2.0]", "cfg = [0.5]"),
            "(line 18): run config ode-euler-4-cfg0.5-k2-seed0: cfg = 0.5: the guidance scale must be ≥ 1",
        ),
        (
            ("steps = [4]", "steps = [1]"),
            "(line 14): run config ode-euler-1-cfg1-k2-seed0: steps = 1: the time grid needs at least 2 points",
        ),
        (
            (
                "sampler = [\"ode-euler\"]",
                "sampler = [\"sde-euler\"]\nlast_step_size = [1.5]",
            ),
            "(line 20): run config sde-euler-4-sigma-norm1-mean1.5-cfg1-k2-seed0: last_step_size = 1.5: expected a value in [0, 1)",
        ),
    ] {
        let p = dir.join("bad.toml");
        std::fs::write(&p, good.replace(edit.0, edit.1)).unwrap();
        let out = dir.join("bad-out");
        let r = sitdiv(&["sweep", "run", s(&p), "--out", s(&out)]);
        let err = String::from_utf8_lossy(&r.stderr);
        println!("{}: {}", edit.1, err.trim());
        assert!(!r.status.success(), "{} accepted", edit.1);
        assert!(
            err.contains(needle) && (err.contains("bad.toml") || err.contains("missing")),
            "{}: {err}",
            edit.1
        );
        assert!(!out.join("units").exists(), "{}: units written", edit.1);
        // Settings from a sweep file are named by their keys, never by command-line flags.
        assert!(!err.contains("--"), "{}: names a flag: {err}", edit.1);
    }
}

/// `sitdiv sample` and `sweep run` share one unit route: a sweep's unit file is, byte for byte,
/// the image batch `sample` writes with the same settings.
#[test]
fn a_sweep_unit_is_the_image_batch_of_sample() {
    let dir = tmp("sweep-unit-vs-sample");
    let (w, v) = (
        golden("sit_tiny.weights.safetensors"),
        golden("vae_tiny.weights.safetensors"),
    );
    let sweep = dir.join("one.toml");
    std::fs::write(
        &sweep,
        format!(
            r#"name = "one"
[model]
weights = "{w}"
vae = "{v}"
[evaluation]
[run]
unit_size = 3
keep_images = true
[defaults]
steps = [6]
classes = [4]
samples_per_class = [3]
seed = [7]
[[grid]]
cfg = [2.0]
sampler = ["sde-euler"]
cfg_interval = [[0.2, 0.8]]
interval_mode = ["fork"]
"#
        ),
    )
    .unwrap();
    let out = dir.join("sweep");
    succeeds(&["sweep", "run", s(&sweep), "--out", s(&out)]);
    let unit = out
        .join("units/sde-euler-6-sigma-norm1-mean0.04-cfg2-int0.2-0.8-fork-k3-seed7")
        .join("c4-00000000-00000003.npz");
    let batch = dir.join("sample");
    succeeds(&[
        "sample",
        "--weights",
        &w,
        "--vae",
        &v,
        "--out",
        s(&batch),
        "--classes",
        "4",
        "--samples-per-class",
        "3",
        "--unit-size",
        "3",
        "--steps",
        "6",
        "--seed",
        "7",
        "--mode",
        "sde",
        "--method",
        "euler",
        "--cfg",
        "2",
        "--cfg-interval",
        "0.2,0.8",
        "--cfg-interval-mode",
        "fork",
    ]);
    let npz: Vec<PathBuf> = std::fs::read_dir(&batch)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "npz"))
        .collect();
    assert_eq!(npz.len(), 1, "{npz:?}");
    let (a, b) = (
        std::fs::read(&unit).unwrap(),
        std::fs::read(&npz[0]).unwrap(),
    );
    println!(
        "unit file {} bytes, sample batch {} bytes",
        a.len(),
        b.len()
    );
    assert!(a == b, "{} and {} differ", unit.display(), npz[0].display());
}

/// Units of 4 over 3 classes × 2 samples span classes ([0, 4) holds classes 0 and 1); the
/// merged results (FID, IS, intra- and inter-class diversity, Vendi) are those of units of 2,
/// one class each, to the byte.
#[test]
fn units_spanning_classes_give_the_per_class_results() {
    let dir = tmp("sweep-units-span-classes");
    let mut outs = Vec::new();
    for unit in [2, 4] {
        let text = small_sweep_text()
            .replace("classes = [0, 1]", "classes = [0, 1, 2]")
            .replace("unit_size = 2", &format!("unit_size = {unit}"));
        let sweep = dir.join(format!("units{unit}.toml"));
        std::fs::write(&sweep, text).unwrap();
        let out = dir.join(format!("units{unit}"));
        succeeds(&["sweep", "run", s(&sweep), "--out", s(&out)]);
        succeeds(&["sweep", "merge", s(&sweep), "--out", s(&out)]);
        let units: Vec<String> = std::fs::read_dir(out.join("units/ode-euler-4-cfg2-k2-seed0"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".npz"))
            .collect();
        println!("unit_size {unit}: {units:?}");
        outs.push((units.len(), std::fs::read(out.join("results.csv")).unwrap()));
    }
    assert_eq!((outs[0].0, outs[1].0), (3, 2), "units of 2 and of 4");
    assert!(
        outs[0].1 == outs[1].1,
        "results.csv differs between unit sizes"
    );
}

#[test]
fn shipped_sweeps_expand_to_the_study_grids() {
    for (file, configs) in [
        ("cfg", 10),
        ("sde", 12),
        ("interval", 41),
        ("samples", 40),
        ("tiny", 12),
        ("repa", 3),
    ] {
        let sw = Sweep::load(&repo().join(format!("sweeps/{file}.toml"))).unwrap();
        let ids: Vec<&str> = sw.configs.iter().map(|c| c.id.as_str()).collect();
        println!(
            "{file}: {} run configs, e.g. {}",
            ids.len(),
            ids[ids.len() - 1]
        );
        assert_eq!(ids.len(), configs, "{file}");
    }
    // tiny covers every plot kind: guidance scales, ODE and SDE, two forms and norms, an
    // interval in both semantics, two sample counts.
    let t = Sweep::load(&repo().join("sweeps/tiny.toml")).unwrap();
    let has =
        |f: &dyn Fn(&sitdiv::pipeline::sweep::spec::RunConfig) -> bool| t.configs.iter().any(f);
    assert!(has(&|c| c.method.mode() == "ode") && has(&|c| c.method.mode() == "sde"));
    assert!(has(&|c| c.cfg == 4.0) && has(&|c| c.cfg == 1.0));
    assert!(
        has(&|c| c.diffusion_norm == Some(2.0))
            && has(&|c| c
                .diffusion_form
                .is_some_and(|f| format!("{f:?}") == "Constant"))
    );
    assert!(has(&|c| c
        .interval_mode
        .is_some_and(|m| format!("{m:?}") == "Fork")));
    assert!(has(&|c| c.samples_per_class == 4));
}
