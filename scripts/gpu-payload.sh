#!/usr/bin/env bash
# Builds, on any machine with Rust (no GPU needed), what scripts/gpu-check.sh runs on a GPU node:
# the release binary with CUDA kernels and the test executables, into .gpu-payload/.
#   scripts/gpu-payload.sh [path/to/torch_baseline.py]
set -euo pipefail
cd "$(dirname "$0")/.."
export NVCC="${NVCC:-$(scripts/install-nvcc.sh)}"
out=.gpu-payload
rm -rf "$out" && mkdir -p "$out/tests"
cargo build --release --locked --features cuda
cp target/release/sitdiv "$out/"
git rev-parse --short HEAD >"$out/COMMIT" 2>/dev/null || true
# Test executables (one per layer, tests/<layer>/main.rs, named after the layer): cargo prints one
# JSON line per artifact; keep the test binaries.
cargo test --release --locked --features cuda --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys, shutil
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
' "$out/tests"
strip "$out/sitdiv" "$out"/tests/* 2>/dev/null || true
if [ -n "${1:-}" ]; then cp "$1" "$out/torch_baseline.py"; fi
du -sh "$out"
