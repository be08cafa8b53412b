//! Every parser of outside bytes, fuzzed: safetensors headers and offsets, `.npy` and `.npz`
//! (zip members, headers, dtypes, shapes), ADM reference batches, sweep TOML and the plan it
//! expands to, unit manifests. Structure-aware mutators (a JSON header's numbers, an npy
//! header's shape, a TOML value's type, a zip's size fields) start from the golden files, with a
//! fixed seed, so a run is the same run everywhere and takes well under two minutes.
//!
//! No input may panic, take more than a second, or ask for one allocation larger than its
//! bytes justify ([`Tracking`]). A failing input is written under `target/fuzz-failures/`;
//! keep it under `tests/fuzz/regressions/` (they run first, every time).
//! `SITDIV_FUZZ_EXECS=N` scales every target's executions (N per target).

mod mutate;
mod targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The system allocator, remembering the largest single request since the last reset: a parser
/// that trusts a declared size asks for it before reading a byte.
struct Tracking;

static LARGEST: AtomicUsize = AtomicUsize::new(0);
/// Requests above this are refused (the process aborts, naming the size): the harness's own
/// limit on top of the per-input check.
const HARD_LIMIT: usize = 1 << 31;

/// The input being run (target name, file name, bytes), saved by the allocator before it
/// refuses a request above [`HARD_LIMIT`] and the process aborts.
static CURRENT: Mutex<(String, Vec<u8>)> = Mutex::new((String::new(), Vec::new()));
static SAVING: AtomicBool = AtomicBool::new(false);

fn refuse(size: usize) -> *mut u8 {
    if !SAVING.swap(true, Ordering::SeqCst) {
        if let Ok(c) = CURRENT.try_lock() {
            let dir = repo().join("target/fuzz-failures");
            let _ = std::fs::create_dir_all(&dir);
            let p = dir.join(format!("{}-abort", c.0));
            let _ = std::fs::write(&p, &c.1);
            eprintln!(
                "an allocation of {size} bytes: the input is {}",
                p.display()
            );
        }
    }
    std::ptr::null_mut()
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        if layout.size() > HARD_LIMIT {
            return refuse(layout.size());
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        if new_size > HARD_LIMIT {
            return refuse(new_size);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn golden(name: &str) -> PathBuf {
    repo().join("tests/golden").join(name)
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in 0..n (n ≥ 1).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// One fuzz target: seeds, a structure-aware mutator, and the parser run on each input.
pub struct Target {
    pub name: &'static str,
    pub seeds: Vec<Vec<u8>>,
    pub mutate: fn(&mut Rng, &[u8]) -> Vec<u8>,
    /// Parses `input` (written at `path` first, for the parsers that read files); `Err` is a
    /// clean refusal.
    pub run: fn(&Path, &[u8]) -> anyhow::Result<()>,
    pub execs: usize,
    /// The file name the input is written under (its extension matters to some parsers).
    pub file: &'static str,
}

#[derive(Default)]
struct Tally {
    execs: usize,
    accepted: usize,
    refused: usize,
    largest: usize,
    slowest: Duration,
}

/// Runs one input; a panic, a hang or an unjustified allocation is an `Err` with the reason.
fn exec(t: &Target, path: &Path, input: &[u8], tally: &mut Tally) -> Result<(), String> {
    std::fs::write(path, input).map_err(|e| format!("cannot write the input: {e}"))?;
    if let Ok(mut c) = CURRENT.lock() {
        *c = (format!("{}-{}", t.name, t.file), input.to_vec());
    }
    LARGEST.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let r = std::panic::catch_unwind(|| (t.run)(path, input));
    let took = start.elapsed();
    let largest = LARGEST.load(Ordering::Relaxed);
    tally.execs += 1;
    tally.largest = tally.largest.max(largest);
    tally.slowest = tally.slowest.max(took);
    match r {
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Err(format!("panicked: {msg}"));
        }
        Ok(Ok(())) => tally.accepted += 1,
        Ok(Err(_)) => tally.refused += 1,
    }
    // Golden files are a few MB; an input may justify buffers of its own size many times over
    // (decoded arrays, widened dtypes, the zip reader's tables), never gigabytes.
    let justified = 64 * input.len() + (64 << 20);
    if largest > justified {
        return Err(format!(
            "one allocation of {largest} bytes for an input of {} bytes",
            input.len()
        ));
    }
    if took > Duration::from_secs(1) {
        return Err(format!("took {took:?}"));
    }
    Ok(())
}

fn save_failure(t: &Target, i: usize, input: &[u8]) -> PathBuf {
    let dir = repo().join("target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let p = dir.join(format!("{}-{i}-{}", t.name, t.file));
    let _ = std::fs::write(&p, input);
    p
}

/// The kept failing inputs of `target`: `tests/fuzz/regressions/<target>-*`.
fn regressions(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = repo().join("tests/fuzz/regressions");
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{target}-")))
        })
        .map(|p| {
            let b = std::fs::read(&p).expect("a regression input");
            (p, b)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_parser_survives_its_fuzz_run() {
    let scratch = std::env::temp_dir().join(format!("sitdiv-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let scale: Option<usize> = std::env::var("SITDIV_FUZZ_EXECS")
        .ok()
        .and_then(|v| v.parse().ok());
    // The harness's own panics are reported by catch_unwind; keep stderr for the table.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let mut failures = Vec::new();
    println!("| target | executions | accepted | refused | largest allocation | slowest input |");
    println!("|---|---|---|---|---|---|");
    for (k, t) in targets::all(&scratch).into_iter().enumerate() {
        let path = scratch.join(t.file);
        let mut tally = Tally::default();
        for (p, input) in regressions(t.name) {
            if let Err(why) = exec(&t, &path, &input, &mut tally) {
                failures.push(format!("{}: regression {}: {why}", t.name, p.display()));
            }
        }
        let mut rng = Rng::new(0x5171_d1f0 + k as u64);
        for seed in &t.seeds {
            if let Err(why) = exec(&t, &path, seed, &mut tally) {
                failures.push(format!("{}: a seed: {why}", t.name));
            }
        }
        for i in 0..scale.unwrap_or(t.execs) {
            let seed = rng.pick(&t.seeds).clone();
            // A few rounds of mutation on one seed: deep enough to pass the first checks.
            let mut input = seed;
            for _ in 0..=rng.below(3) {
                input = (t.mutate)(&mut rng, &input);
            }
            if let Err(why) = exec(&t, &path, &input, &mut tally) {
                let saved = save_failure(&t, i, &input);
                failures.push(format!(
                    "{}: input {i} ({}): {why}",
                    t.name,
                    saved.display()
                ));
            }
        }
        println!(
            "| {} | {} | {} | {} | {:.1} MB | {:.0} ms |",
            t.name,
            tally.execs,
            tally.accepted,
            tally.refused,
            tally.largest as f64 / 1e6,
            tally.slowest.as_secs_f64() * 1e3
        );
    }
    let _ = std::panic::take_hook();
    let _ = std::fs::remove_dir_all(&scratch);
    println!("fuzz run: {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} failing input(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
