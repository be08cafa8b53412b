#!/usr/bin/env bash
# sweeps/tiny.toml on CPU nodes: the whole pipeline on the tiny models, minutes in all.
#   sbatch slurm/sweep_tiny.sh
#SBATCH --job-name=sitdiv-tiny
#SBATCH --array=0-3
#SBATCH --cpus-per-task=1
#SBATCH --mem=1G
#SBATCH --time=00:30:00
#SBATCH --requeue
#SBATCH --output=slurm/logs/%x_%A_%a.out
SWEEP=${SWEEP:-sweeps/tiny.toml}
SITDIV_DEVICE=${SITDIV_DEVICE:-cpu}
MERGE_SBATCH_ARGS=${MERGE_SBATCH_ARGS:---cpus-per-task=1 --mem=2G --time=00:30:00}
source "${SLURM_SUBMIT_DIR:-.}/slurm/sweep-array.sh"
