#!/usr/bin/env bash
# sweeps/cfg.toml: guidance scale 1.0-3.0 × ODE Euler-250 / SDE Euler-Maruyama-250 (sigma, norm 1).
#   sbatch slurm/sweep_cfg.sh                  # K tasks as below; override with --array=0-(K-1)%P
# Each task runs one shard; a merge job follows (slurm/merge.sh). Logs: slurm/logs/.
#SBATCH --job-name=sitdiv-cfg
#SBATCH --array=0-63%16
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --output=slurm/logs/%x_%A_%a.out
SWEEP=${SWEEP:-sweeps/cfg.toml}
source "${SLURM_SUBMIT_DIR:-.}/slurm/sweep-array.sh"
