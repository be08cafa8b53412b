//! `sitdiv bench`: throughput of the networks on synthetic weights, printed as a table. SiT and
//! the metrics here; the VAE, the Inception and the diversity backbones in nets.rs; every network
//! next to PyTorch in all.rs.

mod all;
mod nets;

pub use all::{all, AllBench};
pub use nets::{backbones, inception, vae, valloss, NetBench};

use std::time::Instant;

use anyhow::Result;

use crate::backend::Backend;
use crate::models::sit::{SiT, SiTConfig};
use crate::models::synthetic;
use crate::rng;

pub struct SitBench {
    pub model: String,
    pub image_size: usize,
    pub batch: usize,
    pub warmup: usize,
    pub iters: usize,
    pub precision: crate::backend::Precision,
}

/// Dense peak TFLOP/s of a card for a precision (vendor data sheets, SXM parts), when known.
fn peak_tflops(device: &str, precision: crate::backend::Precision) -> Option<f64> {
    use crate::backend::Precision::*;
    let (fp32, tf32, bf16) = if device.contains("H100") || device.contains("H200") {
        (66.9, 494.7, 989.4)
    } else if device.contains("A100") {
        (19.5, 156.0, 312.0)
    } else if device.contains("L40S") {
        (91.6, 183.0, 362.0)
    } else {
        return None;
    };
    Some(match precision {
        Fp32 => fp32,
        Tf32 => tf32,
        Bf16 => bf16,
    })
}

/// Times `iters` forwards of a SiT on `be` after `warmup` untimed ones and prints one table row,
/// then what one forward after the warm-up asked of the device, when the backend counts it.
pub fn sit<B: Backend>(be: &B, b: &SitBench) -> Result<()> {
    let cfg = SiTConfig::preset(&b.model, b.image_size)?;
    let model = SiT::load(be, &synthetic::sit(&cfg, 0), cfg.clone())?;
    let n = b.batch;
    let x = rng::gaussian(1, 0, 0, 0, n * cfg.sample_len());
    let t: Vec<f32> = (0..n).map(|i| (i as f32 + 0.5) / n as f32).collect();
    let y: Vec<i64> = (0..n as i64).map(|i| i % cfg.num_classes as i64).collect();
    for _ in 0..b.warmup.max(1) {
        model.forward(be, &x, &t, &y)?;
    }
    let before = be.counters();
    model.forward(be, &x, &t, &y)?;
    let per_forward = before.zip(be.counters()).map(|(a, b)| nets::delta(&a, &b));
    let mut times = Vec::with_capacity(b.iters);
    for _ in 0..b.iters.max(1) {
        let s = Instant::now();
        model.forward(be, &x, &t, &y)?;
        times.push(s.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    let best = times[0];
    let gmacs = cfg.macs_per_image() / 1e9;
    let tflops = 2.0 * gmacs * n as f64 / median / 1e3;
    let peak = peak_tflops(&be.name(), b.precision)
        .map_or("-".to_string(), |p| format!("{:.1} %", 100.0 * tflops / p));
    println!("| model | px | batch | device | precision | median s/forward | img/s (median) | img/s (best) | TFLOP/s (median) | % of peak |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {:?} | {:.4} | {:.2} | {:.2} | {:.2} | {} |",
        b.model,
        b.image_size,
        n,
        be.name(),
        b.precision,
        median,
        n as f64 / median,
        n as f64 / best,
        tflops,
        peak
    );
    if let Some(c) = per_forward {
        let num = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0) as u64;
        println!();
        println!("| per forward after warm-up | launches | graph launches | GEMMs by compute type | allocations | host syncs |");
        println!("|---|---|---|---|---|---|");
        println!(
            "| counted by sitdiv | {} | {} | {} | {} | {} |",
            num(&c["launches"]),
            num(&c["graph_launches"]),
            c["gemms"],
            num(&c["allocations"]),
            num(&c["host_syncs"])
        );
        let s = &c["standin"];
        if s.is_object() {
            println!(
                "| seen by the emulated device's driver | {} | {} | {} | {} | {} |",
                num(&s["launches"]),
                num(&s["graph_launches"]),
                s["gemms_by_compute"],
                num(&s["allocations"]),
                num(&s["host_syncs"])
            );
        }
    }
    Ok(())
}

/// Times the Fréchet distance of two random full-rank d×d covariances.
pub fn fid(d: usize) -> Result<()> {
    use crate::metrics::fid::frechet_distance;
    use faer::Mat;
    let spd = |seed: u64| {
        let a = rng::gaussian(seed, 0, 0, 0, d * d);
        let a = Mat::<f64>::from_fn(d, d, |i, j| a[i * d + j] as f64);
        let mut s = Mat::<f64>::zeros(d, d);
        faer::linalg::matmul::matmul(
            s.as_mut(),
            faer::Accum::Replace,
            a.as_ref(),
            a.transpose(),
            1.0 / d as f64,
            faer::Par::rayon(0),
        );
        s
    };
    let (s1, s2) = (spd(11), spd(12));
    let mu1: Vec<f64> = rng::gaussian(13, 0, 0, 0, d)
        .iter()
        .map(|&v| v as f64)
        .collect();
    let mu2: Vec<f64> = rng::gaussian(14, 0, 0, 0, d)
        .iter()
        .map(|&v| v as f64)
        .collect();
    let t = Instant::now();
    let v = frechet_distance(&mu1, s1.as_ref(), &mu2, s2.as_ref())?;
    let secs = t.elapsed().as_secs_f64();
    println!("| metric | dim | threads | seconds | value |");
    println!("|---|---|---|---|---|");
    println!(
        "| Fréchet distance (eigendecomposition route) | {d} | {} | {secs:.2} | {v:.6} |",
        rayon::current_num_threads()
    );
    Ok(())
}

/// The distance stage of the diversity metrics on random labelled embeddings: all pairs of `n`
/// rows of width `dim` (cosine diversity, intra/inter/mixed) and the Vendi score; then the
/// backbones on `images` images (0 skips them).
pub fn diversity(n: usize, dim: usize, classes: usize, images: usize) -> Result<()> {
    use crate::metrics::diversity::{cosine_diversity, vendi_by_class};
    anyhow::ensure!(
        n >= 2 && dim >= 1 && classes >= 1,
        "bench diversity: n ≥ 2, dim ≥ 1, classes ≥ 1"
    );
    let x = rng::gaussian(21, 0, 0, 0, n * dim);
    let labels: Vec<i64> = (0..n).map(|i| (i % classes) as i64).collect();
    let pairs = (n * (n - 1) / 2) as f64;
    let t = Instant::now();
    let d = cosine_diversity(&x, dim, Some(&labels))?;
    let secs_div = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (v, _) = vendi_by_class(&x, dim, &labels)?;
    let secs_vendi = t.elapsed().as_secs_f64();
    println!("| stage | n | dim | classes | threads | seconds | pairs/s | value |");
    println!("|---|---|---|---|---|---|---|---|");
    let threads = rayon::current_num_threads();
    println!(
        "| cosine diversity (intra/inter/mixed, f64) | {n} | {dim} | {classes} | {threads} | {secs_div:.3} | {:.3e} | mixed {:.6} |",
        pairs / secs_div,
        d.mixed_mean.unwrap_or(f64::NAN)
    );
    println!(
        "| Vendi (all + per class, f64) | {n} | {dim} | {classes} | {threads} | {secs_vendi:.3} | – | {v:.4} |"
    );
    if images > 0 {
        println!();
        nets::diversity_backbones(images)?;
    }
    Ok(())
}
