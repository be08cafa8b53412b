//! `sitdiv bench all`: every network of a study point on the CPU next to PyTorch on the same
//! machine. For each network, rounds alternate a sitdiv timing with a run of
//! `scripts/torch_cpu_baseline.py --net … --json`, so both sides see the same machine state; the
//! table gives the median of the rounds, their spread, and the ratio.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use super::nets::{clip, dinov2, dreamsim, lpips, random_images, resnet};
use crate::backend::cpu::Cpu;
use crate::backend::Backend;
use crate::models::inception::InceptionV3;
use crate::models::lpips::LpipsNet;
use crate::models::preprocess::PIPELINE_SIZE;
use crate::models::sit::{SiT, SiTConfig};
use crate::models::synthetic;
use crate::models::vae::{AutoencoderKL, VaeConfig};
use crate::rng;

/// What `bench all` runs.
pub struct AllBench {
    /// Rounds per network (each: one sitdiv timing, one PyTorch timing).
    pub rounds: usize,
    /// Timed calls per timing, after one untimed call.
    pub iters: usize,
    /// The Python with torch; `None` prints sitdiv's figures alone.
    pub python: Option<String>,
    pub script: PathBuf,
    /// Networks to run (script ids); empty: all.
    pub only: Vec<String>,
}

/// The networks, in table order: script id, label, batch (items per call for the diversity
/// stage: embeddings).
const NETS: [(&str, &str, usize); 11] = [
    ("sit-s2", "SiT-S/2 (256 px latents)", 8),
    ("vae", "SD-VAE decoder (256 px)", 2),
    ("inception", "FID Inception-v3 (256 px)", 4),
    ("dinov2-b14", "DINOv2-B/14 (224 px)", 8),
    ("clip-b32", "CLIP ViT-B/32 (224 px)", 8),
    ("dreamsim", "DreamSim (3 × ViT-B/16, 224 px)", 8),
    ("mocov3-r50", "ResNet-50 (MoCo v3, 224 px)", 8),
    ("dinov2-l14", "DINOv2-L/14 (224 px)", 8),
    ("lpips-alex", "LPIPS AlexNet taps (256 px)", 8),
    ("lpips-vgg", "LPIPS VGG16 taps (256 px)", 8),
    ("diversity", "all-pairs diversity (2000 × 768)", 2000),
];

/// One call of a network on its batch.
type Call = Box<dyn FnMut() -> Result<()>>;

/// The sitdiv side of network `id`: a call on `batch` inputs (formula weights of the released
/// sizes) and the items it processes.
fn subject(id: &str, batch: usize) -> Result<(Call, usize)> {
    let be = Cpu;
    let s = PIPELINE_SIZE;
    let prepared = move || rng::gaussian(4, 0, 0, 0, batch * 3 * s * s);
    let call: Call = match id {
        "sit-s2" => {
            let cfg = SiTConfig::preset("SiT-S/2", 256)?;
            let m = SiT::load(&be, &synthetic::sit(&cfg, 0), cfg.clone())?;
            let x = rng::gaussian(1, 0, 0, 0, batch * cfg.sample_len());
            let t: Vec<f32> = (0..batch)
                .map(|i| (i as f32 + 0.5) / batch as f32)
                .collect();
            let y: Vec<i64> = (0..batch as i64).collect();
            Box::new(move || m.forward(&be, &x, &t, &y).map(drop))
        }
        "vae" => {
            let w: crate::weights::source::Synthetic =
                synthetic::vae(&VaeConfig::sd(), 0).into_iter().collect();
            let m = AutoencoderKL::load(&be, &w)?;
            let z = rng::gaussian(2, 0, 0, 0, batch * 4 * 32 * 32);
            Box::new(move || m.decode(&be, &z, batch, 32, 32, None).map(drop))
        }
        "inception" => {
            let m = InceptionV3::load(&be, &synthetic::inception(0)?)?;
            let im = random_images(3, batch, 256);
            Box::new(move || m.forward_images(&be, &im, (batch, 256, 256, 3)).map(drop))
        }
        "dinov2-b14" | "dinov2-l14" => {
            let m = dinov2(&be, id == "dinov2-l14")?;
            let x = prepared();
            Box::new(move || m.forward(&be, &x, batch, (s, s)).map(drop))
        }
        "clip-b32" => {
            let m = clip(&be)?;
            let x = prepared();
            Box::new(move || m.forward(&be, &x, batch).map(drop))
        }
        "dreamsim" => {
            let m = dreamsim(&be)?;
            let x = prepared();
            Box::new(move || m.embed(&be, &x, batch).map(drop))
        }
        "mocov3-r50" => {
            let m = resnet(&be)?;
            let x = prepared();
            Box::new(move || m.forward(&be, &x, batch, (s, s)).map(drop))
        }
        "lpips-alex" | "lpips-vgg" => {
            let net = if id == "lpips-alex" {
                LpipsNet::Alex
            } else {
                LpipsNet::Vgg
            };
            let m = lpips(&be, net)?;
            let im = random_images(5, batch, 256);
            Box::new(move || m.features(&be, &im, (batch, 256, 256, 3)).map(drop))
        }
        "diversity" => {
            let x = rng::gaussian(21, 0, 0, 0, batch * 768);
            let labels: Vec<i64> = (0..batch).map(|i| (i % 100) as i64).collect();
            Box::new(move || {
                crate::metrics::diversity::cosine_diversity(&x, 768, Some(&labels)).map(drop)
            })
        }
        other => bail!("bench all: no network {other:?}"),
    };
    let items = if id == "diversity" {
        batch * (batch - 1) / 2
    } else {
        batch
    };
    Ok((call, items))
}

/// Median seconds per call over `iters` timed calls after one untimed one.
fn seconds(call: &mut Call, iters: usize) -> Result<f64> {
    call()?;
    let mut t = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        let s = Instant::now();
        call()?;
        t.push(s.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// PyTorch's median seconds per call of network `id`, from the script's JSON line.
fn torch_seconds(b: &AllBench, python: &str, id: &str, batch: usize) -> Result<(f64, usize)> {
    let out = Command::new(python)
        .arg(&b.script)
        .args(["--net", id, "--json", "--warmup", "1"])
        .args([
            "--batch",
            &batch.to_string(),
            "--iters",
            &b.iters.to_string(),
        ])
        .output()
        .with_context(|| format!("running {python} {}", b.script.display()))?;
    ensure!(
        out.status.success(),
        "{} --net {id} failed:\n{}",
        b.script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("{} --net {id} printed no JSON line", b.script.display()))?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let med = v["median_s"]
        .as_f64()
        .context("no median_s in the JSON line")?;
    let items = v["items"].as_u64().context("no items in the JSON line")?;
    Ok((med, items as usize))
}

/// Median and range of a few values.
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

pub fn all(b: &AllBench) -> Result<()> {
    ensure!(
        b.rounds >= 1 && b.iters >= 1,
        "bench all: --rounds and --iters ≥ 1"
    );
    for id in &b.only {
        ensure!(
            NETS.iter().any(|(n, _, _)| n == id),
            "bench all: --only {id:?} is not one of {}",
            NETS.map(|(n, _, _)| n).join(", ")
        );
    }
    println!(
        "sitdiv on {}, {} rounds of {} timed calls per network, interleaved with PyTorch{}",
        Cpu.name(),
        b.rounds,
        b.iters,
        b.python
            .as_ref()
            .map_or(" (not run: no --python)".into(), |p| format!(
                " ({p} {})",
                b.script.display()
            ))
    );
    println!();
    println!("| network | batch | sitdiv items/s: median [range] | PyTorch items/s: median [range] | ratio: median [range] |");
    println!("|---|---|---|---|---|");
    for &(id, label, batch) in NETS
        .iter()
        .filter(|(n, _, _)| b.only.is_empty() || b.only.iter().any(|o| o == n))
    {
        let (mut call, items) = subject(id, batch)?;
        let (mut ours, mut theirs, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..b.rounds {
            let o = items as f64 / seconds(&mut call, b.iters)?;
            ours.push(o);
            if let Some(py) = &b.python {
                let (secs, their_items) = torch_seconds(b, py, id, batch)?;
                ensure!(
                    their_items == items,
                    "{id}: PyTorch timed {their_items} items per call, sitdiv {items}"
                );
                let t = items as f64 / secs;
                theirs.push(t);
                ratio.push(o / t);
            }
        }
        let fmt = |v: &[f64]| {
            if v.is_empty() {
                return "–".to_string();
            }
            let (m, lo, hi) = spread(v);
            format!("{} [{} – {}]", sig(m), sig(lo), sig(hi))
        };
        println!(
            "| {label} | {batch} | {} | {} | {} |",
            fmt(&ours),
            fmt(&theirs),
            if ratio.is_empty() {
                "–".into()
            } else {
                let (m, lo, hi) = spread(&ratio);
                format!("{m:.2}× [{lo:.2} – {hi:.2}]")
            }
        );
    }
    Ok(())
}

/// Three significant digits, in scientific notation from 10⁵ up.
fn sig(v: f64) -> String {
    if v >= 1e5 {
        format!("{v:.2e}")
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
