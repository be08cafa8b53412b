#!/usr/bin/env bash
# Merges a finished sweep: verifies every unit, computes the metrics, writes
# $OUT/results/<config>.json and $OUT/results.csv. Submitted by the array's first task; after a
# failed task has been requeued and finished, submit it yourself:
#   sbatch --export=ALL,SWEEP=sweeps/cfg.toml slurm/merge.sh
#SBATCH --job-name=sitdiv-merge
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=02:00:00
#SBATCH --output=slurm/logs/%x_%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$PWD}"
source slurm/env.sh
: "${SWEEP:?set SWEEP to the sweep file}"
OUT=${OUT:-runs/$(basename "$SWEEP" .toml)}
"$SITDIV" sweep status "$SWEEP" --out "$OUT"
"$SITDIV" sweep merge "$SWEEP" --out "$OUT" --device "$SITDIV_DEVICE"
