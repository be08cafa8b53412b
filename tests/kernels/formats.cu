// Conversions through CUDA's own __nv_bfloat16 and __half: the same header functions on the
// device and, through kernels/emu/cuda_emu.h, on the emulated device (tests/gpu/gpu_harness.rs
// compares both with the `half` crate's round-to-nearest-even).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common.cuh"

// y[i] = (float)(bf16)x[i], z[i] = (float)(half)x[i].
extern "C" __global__ void round_to_halves(const float* x, float* y, float* z, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    y[i] = __bfloat162float(__float2bfloat16(x[i]));
    z[i] = __half2float(__float2half(x[i]));
}
