#!/usr/bin/env bash
# Runs any command on the emulated GPU: kernels/*.cu compiled for the CPU behind a stand-in CUDA
# driver, cuBLAS, cuBLASLt and NVTX (kernels/emu/), which cudarc loads instead of the real libraries.
#   scripts/emulated-gpu.sh target/release/sitdiv sample --device cuda ...
#   scripts/emulated-gpu.sh cargo test --features cuda --test ops -- backend_ops::
#   scripts/emulated-gpu.sh            (only builds the stand-ins)
# The stand-ins are (re)built into target/emulated-gpu/ when a source is newer, with the host
# C++ compiler and the headers of the pinned CUDA wheels (scripts/install-nvcc.sh). Settings the
# stand-in reads: SITDIV_STANDIN_SM (80|90), SITDIV_STANDIN_DRIVER (e.g. 12040),
# SITDIV_STANDIN_THREADS, SITDIV_STANDIN_COUNTS=FILE (counters as JSON at exit).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${SITDIV_STANDIN_DIR:-$root/target/emulated-gpu}"
lib="$out/libsitdiv-standin.so"
cxx="${CXX:-g++}"

sources=("$root"/kernels/*.cu "$root"/kernels/*.cuh "$root"/kernels/emu/* "$root"/tests/kernels/*.cu "$0")
stale=0
if [ ! -f "$lib" ]; then
    stale=1
else
    for s in "${sources[@]}"; do
        if [ "$s" -nt "$lib" ]; then stale=1; break; fi
    done
fi

if [ "$stale" = 1 ]; then
    nvcc="${NVCC:-$("$root/scripts/install-nvcc.sh")}"
    inc="$(cd "$(dirname "$nvcc")/../include" && pwd)"
    [ -f "$inc/cuda.h" ] || { echo "emulated-gpu: no cuda.h next to $nvcc" >&2; exit 1; }
    mkdir -p "$out/gen" "$out/ptx"
    objs=()
    flags=(-std=c++17 -O2 -g -fPIC -ffp-contract=off -fno-fast-math -ftls-model=initial-exec -U_FORTIFY_SOURCE -Wall -Wno-unused-function -Wno-sign-compare
           -I"$root/kernels" -I"$inc")
    # One translation unit per kernel file: the file itself, then a registrar per __global__ function.
    for cu in "$root"/kernels/*.cu "$root"/tests/kernels/*.cu; do
        [ -f "$cu" ] || continue
        stem="$(basename "$cu" .cu)"
        gen="$out/gen/$stem.cpp"
        {
            echo "#include \"emu/cuda_emu.h\""
            echo "#include \"$cu\""
            echo "#include \"emu/standin.h\""
            grep -ho 'extern "C" __global__ void [A-Za-z0-9_]*' "$cu" | awk '{print $5}' |
                while read -r k; do echo "static emu::Registrar reg_$k(\"$k\", &$k);"; done
        } >"$gen"
        "$cxx" "${flags[@]}" -c "$gen" -o "$out/gen/$stem.o"
        objs+=("$out/gen/$stem.o")
    done
    for src in "$root"/kernels/emu/*.cpp; do
        stem="$(basename "$src" .cpp)"
        "$cxx" "${flags[@]}" -c "$src" -o "$out/gen/emu-$stem.o"
        objs+=("$out/gen/emu-$stem.o")
    done
    "$cxx" -shared -Wl,-soname,libcuda.so.1 -o "$lib.tmp" "${objs[@]}" -lpthread
    mv "$lib.tmp" "$lib"
    # cudarc opens each library by name; one file answers for all four.
    for name in libcuda.so libcuda.so.1 libcublas.so libcublas.so.12 libcublas.so.13 \
                libcublasLt.so libcublasLt.so.12 libcublasLt.so.13 libnvToolsExt.so libnvToolsExt.so.1; do
        ln -sf libsitdiv-standin.so "$out/$name"
    done
    # PTX of the test kernels (deliberately broken ones among them), for tests/gpu/gpu_harness.rs.
    for cu in "$root"/tests/kernels/*.cu; do
        [ -f "$cu" ] || continue
        "$nvcc" --ptx -std=c++17 -O3 -arch=compute_80 -I"$root/kernels" -o "$out/ptx/$(basename "$cu" .cu).ptx" "$cu"
    done
    echo "emulated-gpu: built $lib" >&2
fi

[ "$#" -gt 0 ] || exit 0
export SITDIV_STANDIN="$out"
export LD_LIBRARY_PATH="$out${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$@"
