#!/usr/bin/env bash
# GPU checks on one node, in a few minutes, with the payload of scripts/gpu-payload.sh (no Rust
# toolchain needed here): CUDA-vs-CPU op parity, the SiT golden cases and the determinism checks
# through the CLI on the GPU, then the benchmark table next to the PyTorch baseline on the same card.
#   LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH scripts/gpu-check.sh [payload-dir]
set -uo pipefail
cd "$(dirname "$0")/.."
payload="${1:-.gpu-payload}"
bin="$payload/sitdiv"
export REQUIRE_CUDA="${REQUIRE_CUDA:-1}" SITDIV_BIN="$bin" SITDIV_GOLDEN_DIR="$PWD/tests/golden" RUST_BACKTRACE=1
fail=0
step() { echo; echo "== $*"; }

step "device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi unavailable"
"$bin" --version

step "CUDA ops vs CPU (strict fp32, max|a-r|/max|r| <= 1e-5): the op table, then each family"
"$payload/tests/backend_ops" --test-threads=1 --nocapture 2>&1 | tail -n 40
"$payload/tests/backend_ops" --test-threads=1 >/dev/null 2>&1 || { echo "FAILED: backend_ops"; fail=1; }
for t in "$payload"/tests/op_*; do
    "$t" cuda --test-threads=1 --nocapture 2>&1 | grep -E "^test |SKIPPED|panicked|rel " || true
    "$t" cuda --test-threads=1 >/dev/null 2>&1 || { echo "FAILED: $t"; fail=1; }
done

step "SiT golden forward on the GPU; jobs refuse ops the backend lacks"
for t in model_sit pipeline_gpu; do
    "$payload/tests/$t" cuda --test-threads=1 --nocapture 2>&1 | grep -E "^test |worst|SKIPPED|panicked" || true
    "$payload/tests/$t" cuda --test-threads=1 >/dev/null 2>&1 || { echo "FAILED: $t"; fail=1; }
done

step "SiT golden cases and determinism through the CLI on the GPU"
SITDIV_TEST_DEVICE=cuda "$payload/tests/pipeline_sample" --test-threads=1 --nocapture 2>&1 |
    grep -E "^test |rel err|panicked|SKIPPED" || true
SITDIV_TEST_DEVICE=cuda "$payload/tests/pipeline_sample" --test-threads=1 >/dev/null 2>&1 || { echo "FAILED: pipeline_sample on cuda"; fail=1; }

step "benchmark: sitdiv (SiT-XL/2, batch 256, 256 px)"
for p in fp32 tf32; do
    timeout 300 "$bin" bench sit --model SiT-XL/2 --batch 256 --warmup 1 --iters 3 --device cuda --precision "$p" 2>/dev/null | tail -n 1
done
if [ -f "$payload/torch_baseline.py" ]; then
    step "benchmark: PyTorch on the same card"
    timeout 600 python3 "$payload/torch_baseline.py" --quick || echo "torch baseline failed"
fi
echo
[ "$fail" = 0 ] && echo "gpu-check: all checks passed" || echo "gpu-check: FAILURES above"
exit "$fail"
