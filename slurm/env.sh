# Sourced by every sitdiv job script (slurm/*.sh): the node's software environment. Edit it for
# your cluster; variables already set in the submitting shell win (sbatch exports them).
#
#   module load cuda/12.4          # e.g., if the CUDA libraries come from environment modules
#
# The binary: built once on a login node (cargo build --release [--features cuda|cuda12]) and
# shared through the file system; GPU nodes need no Rust toolchain.
export SITDIV=${SITDIV:-target/release/sitdiv}
# cpu, cuda, cuda:N or auto; sweep_tiny.sh sets cpu.
export SITDIV_DEVICE=${SITDIV_DEVICE:-cuda}
# cuBLAS and the driver's libraries (a standard CUDA install; adjust for modules).
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
# One CPU thread per allocated core.
export RAYON_NUM_THREADS=${SLURM_CPUS_PER_TASK:-${RAYON_NUM_THREADS:-}}
[ -n "$RAYON_NUM_THREADS" ] || unset RAYON_NUM_THREADS
export RUST_LOG=${RUST_LOG:-info}

if [ ! -x "$SITDIV" ]; then
    echo "slurm/env.sh: no sitdiv binary at $SITDIV (build it with cargo build --release, or set SITDIV)" >&2
    exit 1
fi
