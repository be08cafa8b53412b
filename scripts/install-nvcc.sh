#!/usr/bin/env bash
# Installs the pinned CUDA 13.0 nvcc from PyPI wheels into a virtual environment (no system
# toolkit, no GPU needed) and prints the path of nvcc. Used by .ci/run; run it by hand before
# `NVCC=$(scripts/install-nvcc.sh) cargo build --release --features cuda`.
# These pins emit PTX ISA 9.0, which CUDA 13.0 drivers load; unpinned wheels emit newer PTX.
set -euo pipefail
venv="${1:-$(cd "$(dirname "$0")/.." && pwd)/target/nvcc-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 >&2
nvcc=$(find "$venv" -path '*nvidia/cu13/bin/nvcc' -type f | head -n 1)
[ -n "$nvcc" ] || { echo "nvcc not found in $venv after installing the wheels" >&2; exit 1; }
echo "$nvcc"
