# The body of the sweep array jobs, sourced by slurm/sweep_*.sh after their #SBATCH lines.
# Array task i of n runs shard i of n (`sitdiv sweep run --shard-index i --num-shards n`); the
# first task to start submits the merge job, chained with --dependency=afterok on the array.
#
# Inputs (environment): SWEEP (the sweep file), OUT (default runs/<file stem>),
# MERGE_SBATCH_ARGS (extra sbatch options for the merge job), SITDIV_NO_MERGE=1 (submit none).
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$PWD}"
source slurm/env.sh
: "${SWEEP:?set SWEEP to the sweep file (the sweep_*.sh scripts do)}"
OUT=${OUT:-runs/$(basename "$SWEEP" .toml)}
: "${SLURM_ARRAY_TASK_ID:?submit this as an array job: sbatch slurm/sweep_<name>.sh}"
first=${SLURM_ARRAY_TASK_MIN:-0}
count=${SLURM_ARRAY_TASK_COUNT:-1}
if [ $(( ${SLURM_ARRAY_TASK_MAX:-0} - first + 1 )) -ne "$count" ]; then
    echo "sweep-array.sh: the array must be a contiguous range (e.g. --array=0-63%16), got ids $first..${SLURM_ARRAY_TASK_MAX:-?} for $count tasks" >&2
    exit 2
fi
shard=$(( SLURM_ARRAY_TASK_ID - first ))
echo "sitdiv sweep $SWEEP: shard $shard of $count (job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname), restart ${SLURM_RESTART_COUNT:-0})"

mkdir -p "$OUT"
# mkdir is atomic: exactly one task (over requeues too) submits the merge.
if [ -z "${SITDIV_NO_MERGE:-}" ] && mkdir "$OUT/.merge-job" 2>/dev/null; then
    # shellcheck disable=SC2086
    sbatch --parsable --dependency="afterok:${SLURM_ARRAY_JOB_ID}" --kill-on-invalid-dep=yes \
        --export="ALL,SWEEP=$SWEEP,OUT=$OUT" ${MERGE_SBATCH_ARGS:-} slurm/merge.sh > "$OUT/.merge-job/id"
    echo "submitted merge job $(cat "$OUT/.merge-job/id"), after array job ${SLURM_ARRAY_JOB_ID}"
fi

"$SITDIV" sweep run "$SWEEP" --out "$OUT" --shard-index "$shard" --num-shards "$count" --device "$SITDIV_DEVICE"
