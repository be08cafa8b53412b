#!/usr/bin/env bash
# sweeps/samples.toml: 1k / 5k / 10k / 50k samples at the study's ten E2 settings.
#   sbatch slurm/sweep_samples.sh                  # K tasks as below; override with --array=0-(K-1)%P
# Each task runs one shard; a merge job follows (slurm/merge.sh). Logs: slurm/logs/.
#SBATCH --job-name=sitdiv-samples
#SBATCH --array=0-127%32
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --output=slurm/logs/%x_%A_%a.out
SWEEP=${SWEEP:-sweeps/samples.toml}
source "${SLURM_SUBMIT_DIR:-.}/slurm/sweep-array.sh"
