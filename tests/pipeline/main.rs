//! The command-line pipeline, end to end through the binary: sample (with every guidance method), decode, features, eval,
//! metrics, sweeps (locally and through SLURM), the report, and the toy study's data and demo.

#[path = "../common/mod.rs"]
mod common;

mod pipeline_cmmd;
mod pipeline_diversity;
mod pipeline_eval;
mod pipeline_guidance;
mod pipeline_images;
mod pipeline_metrics;
mod pipeline_sample;
mod pipeline_slurm;
mod pipeline_sweep;
mod pipeline_valloss;
mod report_plot;
mod report_tiny;
mod toy_data;
mod toy_demo;
