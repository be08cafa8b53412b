//! The network-free numerics, against the upstream code and the reference tools: the samplers
//! (`sampler_golden`: every upstream ODE and SDE golden file replayed through the library;
//! `sampler_units`: Philox, noise layout, time grids, work units; `guidance_golden`: the guidance
//! methods against diffusers' guiders and upstream's sampler loop; `repa_golden`: REPA's samplers
//! against REPA's code) and the metrics (`metric_*`:
//! FID, IS, KID, PRDC, CMMD, diversity, correlation, the bootstrap and streamed feature statistics).

#[path = "../common/mod.rs"]
mod common;

mod guidance_golden;
mod metric_bootstrap;
mod metric_cmmd;
mod metric_correlation;
mod metric_diversity;
mod metric_fid;
mod metric_golden;
mod metric_stats;
mod repa_golden;
mod sampler_golden;
mod sampler_units;
