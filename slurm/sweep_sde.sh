#!/usr/bin/env bash
# sweeps/sde.toml: SDE diffusion forms constant / increasing-decreasing / sigma × norms 1-4 at cfg 1.5.
#   sbatch slurm/sweep_sde.sh                  # K tasks as below; override with --array=0-(K-1)%P
# Each task runs one shard; a merge job follows (slurm/merge.sh). Logs: slurm/logs/.
#SBATCH --job-name=sitdiv-sde
#SBATCH --array=0-63%16
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --output=slurm/logs/%x_%A_%a.out
SWEEP=${SWEEP:-sweeps/sde.toml}
source "${SLURM_SUBMIT_DIR:-.}/slurm/sweep-array.sh"
