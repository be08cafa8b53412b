//! `sitdiv sweep …` and `sitdiv demo`: plan, run shards, status and merge of a sweep file.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::device::{on_device, DeviceArgs, SweepRun, SweepStep};
use sitdiv::pipeline::sweep::{self, demo};

#[derive(Subcommand)]
pub enum SweepAction {
    /// Check the sweep file and the weights, write plan.json and list the run configs.
    Plan {
        #[command(flatten)]
        target: SweepTarget,
        /// Shards the array will have (to print the per-shard load).
        #[arg(long, default_value_t = 1)]
        num_shards: usize,
    },
    /// Compute the units of one shard that are not done (sample → decode → features).
    Run {
        #[command(flatten)]
        target: SweepTarget,
        #[arg(long, default_value_t = 0)]
        shard_index: usize,
        #[arg(long, default_value_t = 1)]
        num_shards: usize,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Done / missing / invalid units, per run config and in all.
    Status {
        #[command(flatten)]
        target: SweepTarget,
    },
    /// Verify every unit, compute the metrics, write results/<config>.json and results.csv.
    Merge {
        #[command(flatten)]
        target: SweepTarget,
        #[command(flatten)]
        device: DeviceArgs,
    },
}

#[derive(Args)]
pub struct SweepTarget {
    /// The sweep file (TOML), e.g. sweeps/cfg.toml.
    sweep: PathBuf,
    /// Output folder (default: runs/<sweep name>).
    #[arg(long)]
    out: Option<PathBuf>,
}

impl SweepAction {
    pub fn run(self) -> Result<()> {
        match self {
            SweepAction::Plan { target, num_shards } => {
                sweep::plan(&target.sweep, target.out.as_deref(), num_shards)
            }
            SweepAction::Status { target } => sweep::status(&target.sweep, target.out.as_deref()),
            SweepAction::Run {
                target,
                shard_index,
                num_shards,
                device,
            } => {
                let step = SweepStep::Run(shard_index, num_shards);
                on_device(&device, target.with_step(step))
            }
            SweepAction::Merge { target, device } => {
                on_device(&device, target.with_step(SweepStep::Merge))
            }
        }
    }
}

impl SweepTarget {
    fn with_step(self, step: SweepStep) -> SweepRun {
        SweepRun {
            sweep: self.sweep,
            out: self.out,
            step,
        }
    }
}

/// `sitdiv demo`: runs, merges and reports `sweep`, or without it the embedded toy study, whose
/// files are first written under the output folder's `inputs/`.
pub fn demo(sweep: Option<PathBuf>, out: Option<PathBuf>, device: DeviceArgs) -> Result<()> {
    let (target, toy) = match sweep {
        Some(sweep) => (SweepTarget { sweep, out }, None),
        None => {
            let out = out.unwrap_or_else(|| PathBuf::from(demo::DEFAULT_OUT));
            let inputs = out.join("inputs");
            let target = SweepTarget {
                sweep: demo::write_toy_study(&inputs)?,
                out: Some(out),
            };
            (target, Some(inputs))
        }
    };
    on_device(&device, target.with_step(SweepStep::Demo(toy)))
}
