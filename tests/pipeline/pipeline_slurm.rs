//! `sweeps/tiny.toml` through a real single-node SLURM (scripts/slurm-local.sh) and the same
//! `slurm/` scripts a cluster runs: a 4-task array with its chained merge job gives the bytes of
//! one `sitdiv sweep run`; an array task killed mid-unit and requeued ends in the same bytes, with
//! every unit completed exactly once.
//!
//! Needs root and the Debian packages slurmctld, slurmd, slurm-client and munge (`.ci/run`
//! installs them); without them the test is skipped with a message, and fails when
//! `REQUIRE_SLURM=1`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{repo, sweep_results, tmp};

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("cannot run a command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The local SLURM, stopped again when dropped (even if the test fails).
struct Slurm;

impl Slurm {
    fn start() -> Slurm {
        sh(Command::new(repo().join("scripts/slurm-local.sh")).arg("start"));
        Slurm
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/slurm-local.sh"))
            .arg("stop")
            .status();
    }
}

fn available() -> Result<(), String> {
    let has = |c: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Err("not root".into());
    }
    for c in ["sbatch", "slurmctld", "slurmd", "munged"] {
        if !has(c) {
            return Err(format!(
                "no {c} (apt-get install slurmctld slurmd slurm-client munge)"
            ));
        }
    }
    Ok(())
}

/// sbatch from the repository root with the test's binary, CPU device and log folder.
fn sbatch(args: &[&str], out: &Path, logs: &Path, extra_env: &[(&str, &str)]) -> String {
    let mut c = Command::new("sbatch");
    c.current_dir(repo())
        .arg("--parsable")
        .arg(format!("--output={}/%x_%A_%a.out", logs.display()))
        .args(args)
        .env("SITDIV", env!("CARGO_BIN_EXE_sitdiv"))
        .env("SITDIV_DEVICE", "cpu")
        .env("OUT", out)
        .env(
            "MERGE_SBATCH_ARGS",
            format!(
                "--cpus-per-task=1 --mem=2G --output={}/%x_%j.out",
                logs.display()
            ),
        );
    for (k, v) in extra_env {
        c.env(k, v);
    }
    sh(&mut c)
}

/// Waits until no job is queued or running (bounded).
fn wait_idle(limit: Duration) {
    let t0 = Instant::now();
    loop {
        let q = sh(Command::new("squeue").args(["-h", "-o", "%i %T %r"]));
        if q.is_empty() {
            return;
        }
        assert!(
            t0.elapsed() < limit,
            "jobs still queued after {limit:?}:\n{q}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The jobcomp records of an array job's tasks: (task id, state).
fn task_states(array: &str) -> Vec<(String, String)> {
    let log = std::fs::read_to_string("/var/log/slurm/jobcomp.log").unwrap_or_default();
    log.lines()
        .filter(|l| l.contains(&format!("ArrayJobId={array} ")))
        .map(|l| {
            let field = |k: &str| {
                l.split(' ')
                    .find_map(|f| f.strip_prefix(k))
                    .unwrap_or("")
                    .to_string()
            };
            (field("ArrayTaskId="), field("JobState="))
        })
        .collect()
}

#[test]
fn tiny_sweep_through_real_sbatch_arrays() {
    if let Err(why) = available() {
        assert!(
            std::env::var("REQUIRE_SLURM").as_deref() != Ok("1"),
            "REQUIRE_SLURM=1 but SLURM cannot run here: {why}"
        );
        eprintln!("SKIPPED tiny_sweep_through_real_sbatch_arrays: {why}");
        return;
    }
    let dir = tmp("slurm");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let _slurm = Slurm::start();
    let t0 = Instant::now();

    // 1. A 4-task array; its first task chains the merge job.
    let clean = dir.join("array");
    let job = sbatch(&["--array=0-3", "slurm/sweep_tiny.sh"], &clean, &logs, &[]);
    wait_idle(Duration::from_secs(900));
    let states = task_states(&job);
    println!(
        "array {job}: {states:?} ({:.0} s)",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(states.len(), 4, "{states:?}");
    assert!(states.iter().all(|(_, s)| s == "COMPLETED"), "{states:?}");
    assert!(
        clean.join("results.csv").exists(),
        "the chained merge job wrote no results"
    );

    // 2. The same sweep in one process.
    let single = dir.join("single");
    let bin = env!("CARGO_BIN_EXE_sitdiv");
    let sweep = repo().join("sweeps/tiny.toml");
    for cmd in ["run", "merge"] {
        sh(Command::new(bin)
            .args(["sweep", cmd])
            .arg(&sweep)
            .arg("--out")
            .arg(&single));
    }
    let want = sweep_results(&single);
    assert_eq!(want.len(), 13, "results.csv and 12 run configs");
    assert!(
        sweep_results(&clean) == want,
        "the 4-task array differs from one run"
    );
    println!(
        "4-task array = single run: {} files byte for byte",
        want.len()
    );

    // 3. Task 2 killed while writing its second unit, then requeued.
    let faulty = dir.join("fault");
    let marker = dir.join("fault-fired");
    let m = marker.display().to_string();
    let job = sbatch(
        &["--array=0-3", "slurm/sweep_tiny.sh"],
        &faulty,
        &logs,
        &[
            ("SITDIV_FAULT_AFTER_UNITS", "1"),
            ("SITDIV_FAULT_SHARD", "2"),
            ("SITDIV_FAULT_MARKER", &m),
        ],
    );
    wait_idle(Duration::from_secs(900));
    let states = task_states(&job);
    println!("array {job} with a fault: {states:?}");
    assert!(marker.exists(), "the fault hook did not fire");
    assert!(
        states.iter().any(|(t, s)| t == "2" && s == "FAILED"),
        "{states:?}"
    );
    assert!(
        !faulty.join("results.csv").exists(),
        "merged despite a failed task"
    );
    let status = sh(Command::new(bin)
        .args(["sweep", "status"])
        .arg(&sweep)
        .arg("--out")
        .arg(&faulty));
    assert!(!status.contains("(100.0 %)"), "{status}");
    sh(Command::new("scontrol").args(["requeue", &format!("{job}_2")]));
    // A requeued job waits two minutes before it may start; let it go now.
    sh(Command::new("scontrol").args(["update", &format!("JobId={job}_2"), "StartTime=now"]));
    wait_idle(Duration::from_secs(900));
    let status = sh(Command::new(bin)
        .args(["sweep", "status"])
        .arg(&sweep)
        .arg("--out")
        .arg(&faulty));
    println!("{status}");
    assert!(status.contains("units done (100.0 %)"), "{status}");
    let log = std::fs::read_to_string(faulty.join("completed.log")).unwrap();
    let mut units: Vec<&str> = log.lines().map(|l| l.split(' ').next().unwrap()).collect();
    let n = units.len();
    units.sort_unstable();
    units.dedup();
    assert_eq!(
        (n, units.len()),
        (39, 39),
        "every one of the 39 units completed exactly once"
    );
    // The chained merge died with the failed task; merge now, through the same script.
    sbatch(
        &["--wait", "--cpus-per-task=1", "--mem=2G", "slurm/merge.sh"],
        &faulty,
        &logs,
        &[("SWEEP", "sweeps/tiny.toml")],
    );
    assert!(
        sweep_results(&faulty) == want,
        "the requeued array differs from one run"
    );
    println!(
        "killed and requeued array = single run; SLURM part took {:.0} s",
        t0.elapsed().as_secs_f64()
    );
}
