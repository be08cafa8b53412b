//! Work units, sharding and atomic output files. The only module that writes outputs.

pub mod backbone;
pub mod decode;
pub mod decoder;
pub mod embed;
pub mod evaluate;
pub mod features;
pub mod grid;
pub mod guidance_settings;
pub mod inputs;
pub mod inspect;
pub mod origin;
pub mod progress;
pub mod sample;
pub mod settings;
pub mod sweep;
pub mod synth;
pub mod unit;
pub mod valloss;
pub mod velocity;

use anyhow::{bail, Result};

/// A fixed batch of consecutive global sample indices `[start, end)`. Everything that couples
/// samples (GEMM shapes, dopri5's batch-wide error norm, guidance's doubled batch) stays inside one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Unit {
    pub index: usize,
    pub start: usize,
    pub end: usize,
}

impl Unit {
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// All units of a run of `num_samples` samples cut into units of `unit_size`.
pub fn units(num_samples: usize, unit_size: usize) -> Vec<Unit> {
    (0..num_samples.div_ceil(unit_size))
        .map(|u| Unit {
            index: u,
            start: u * unit_size,
            end: ((u + 1) * unit_size).min(num_samples),
        })
        .collect()
}

/// The units of shard `shard_index` out of `num_shards`: a contiguous block of units, so the
/// shards' outputs concatenated in shard order are the run's samples in global order.
pub fn shard_units(
    num_samples: usize,
    unit_size: usize,
    shard_index: usize,
    num_shards: usize,
) -> Result<Vec<Unit>> {
    if unit_size == 0 {
        bail!("--unit-size must be at least 1");
    }
    if num_shards == 0 || shard_index >= num_shards {
        bail!("--shard-index {shard_index} must be below --num-shards {num_shards}");
    }
    let all = units(num_samples, unit_size);
    let k = all.len();
    let (lo, hi) = (
        k * shard_index / num_shards,
        k * (shard_index + 1) / num_shards,
    );
    Ok(all[lo..hi].to_vec())
}
