#!/usr/bin/env bash
# Installs the pinned NVRTC 12.4 from a PyPI wheel into a virtual environment (no system toolkit,
# no GPU needed) and prints the folder holding libnvrtc.so.12. The `cuda12` build compiles its
# kernels with whatever NVRTC it finds at start-up; run its tests with
# `LD_LIBRARY_PATH=$(scripts/install-nvrtc12.sh) cargo test --features cuda12 ...`.
# The pin matters: NVRTC 12.4 emits PTX ISA 8.4, which every CUDA >= 12.4 driver loads; a newer
# NVRTC emits newer PTX that older 12.x drivers refuse.
set -euo pipefail
venv="${1:-$(cd "$(dirname "$0")/.." && pwd)/target/nvrtc12-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check nvidia-cuda-nvrtc-cu12==12.4.127 >&2
lib=$(find "$venv" -path '*nvidia/cuda_nvrtc/lib/libnvrtc.so.12' | head -n 1)
[ -n "$lib" ] || { echo "libnvrtc.so.12 not found in $venv after installing the wheel" >&2; exit 1; }
dirname "$lib"
