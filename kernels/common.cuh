// Shared helpers of the sitdiv kernels. Strict fp32: no fast-math intrinsics; every reduction has
// a fixed order (no atomics), so the same input gives the same bits on every run.
#pragma once

#define SITDIV_BLOCK 256

// GEMM operands are stored in f32 or bf16 (`--precision bf16`); everything else is f32. bf16 is
// kept as its bits here (NVRTC has no cuda_bf16.h), rounded to nearest even as __float2bfloat16
// rounds, NaN kept quiet.
typedef unsigned short bf16;
__device__ __forceinline__ bf16 to_bf16(float v) {
    unsigned u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}
// TF32 as cvt.rna.tf32.f32 rounds: 10 mantissa bits, nearest with ties away from zero (on the
// magnitude bits); ±∞ and NaN kept.
__device__ __forceinline__ float to_tf32(float v) {
    unsigned u = __float_as_uint(v);
    if ((u & 0x7f800000u) == 0x7f800000u) return v;
    return __uint_as_float((u + 0x1000u) & 0xffffe000u);
}
__device__ __forceinline__ void store(float* y, long long i, float v) { y[i] = v; }
__device__ __forceinline__ void store(bf16* y, long long i, float v) { y[i] = to_bf16(v); }

// Shared memory is declared through these, and passed as `smem_ptr<T>`, so that the same source
// runs on the emulated device (kernels/emu/cuda_emu.h), where every block gets its own, poisoned
// and race-checked copy. On the device they are plain CUDA.
#ifndef SITDIV_EMULATED
template <class T>
using smem_ptr = T*;
#define SITDIV_SHARED(T, name, n) __shared__ T name[n]
#define SITDIV_DYN_SMEM(T, name) extern __shared__ T name[]
#endif

// +∞ without <cmath>: NVRTC has no system headers, so INFINITY is not defined there.
#define SITDIV_INF __int_as_float(0x7f800000)

// Deterministic block-wide sum (or max) of one value per thread: a fixed shared-memory tree.
// `scratch` holds blockDim.x values; blockDim.x must be a power of two. Every thread gets the
// result. The sum comes in f32 and f64 (GroupNorm's statistics).
template <class T>
__device__ __forceinline__ T block_sum(T v, smem_ptr<T> scratch) {
    scratch[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) scratch[threadIdx.x] += scratch[threadIdx.x + s];
        __syncthreads();
    }
    T r = scratch[0];
    __syncthreads();
    return r;
}

__device__ __forceinline__ float block_max(float v, smem_ptr<float> scratch) {
    scratch[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) scratch[threadIdx.x] = fmaxf(scratch[threadIdx.x], scratch[threadIdx.x + s]);
        __syncthreads();
    }
    float r = scratch[0];
    __syncthreads();
    return r;
}
