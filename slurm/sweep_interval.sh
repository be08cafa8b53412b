#!/usr/bin/env bash
# sweeps/interval.toml: cfg 1.5-3.0 × the study's five guidance intervals, published and fork semantics.
#   sbatch slurm/sweep_interval.sh                  # K tasks as below; override with --array=0-(K-1)%P
# Each task runs one shard; a merge job follows (slurm/merge.sh). Logs: slurm/logs/.
#SBATCH --job-name=sitdiv-interval
#SBATCH --array=0-63%16
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --output=slurm/logs/%x_%A_%a.out
SWEEP=${SWEEP:-sweeps/interval.toml}
source "${SLURM_SUBMIT_DIR:-.}/slurm/sweep-array.sh"
