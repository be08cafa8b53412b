//! `sitdiv bench`: throughput of the networks on synthetic weights, printed as a table.

use std::time::Instant;

use anyhow::Result;

use crate::backend::Backend;
use crate::models::sit::{SiT, SiTConfig};
use crate::models::synthetic;
use crate::sampling::rng;

pub struct SitBench {
    pub model: String,
    pub image_size: usize,
    pub batch: usize,
    pub warmup: usize,
    pub iters: usize,
    pub precision: crate::backend::Precision,
}

/// Times `iters` forwards of a SiT on `be` after `warmup` untimed ones and prints one table row.
pub fn sit<B: Backend>(be: &B, b: &SitBench) -> Result<()> {
    let cfg = SiTConfig::preset(&b.model, b.image_size)?;
    let model = SiT::load(be, &synthetic::sit(&cfg, 0), cfg.clone())?;
    let n = b.batch;
    let x = rng::gaussian(1, 0, 0, 0, n * cfg.sample_len());
    let t: Vec<f32> = (0..n).map(|i| (i as f32 + 0.5) / n as f32).collect();
    let y: Vec<i64> = (0..n as i64).map(|i| i % cfg.num_classes as i64).collect();
    for _ in 0..b.warmup {
        model.forward(be, &x, &t, &y)?;
    }
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
    println!("| model | px | batch | device | precision | median s/forward | img/s (median) | img/s (best) | GFLOP/s (median) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {:?} | {:.4} | {:.2} | {:.2} | {:.1} |",
        b.model,
        b.image_size,
        n,
        be.name(),
        b.precision,
        median,
        n as f64 / median,
        n as f64 / best,
        2.0 * gmacs * n as f64 / median
    );
    Ok(())
}
