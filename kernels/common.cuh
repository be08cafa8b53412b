// Shared helpers of the sitdiv kernels. Strict fp32: no fast-math intrinsics; every reduction has
// a fixed order (no atomics), so the same input gives the same bits on every run.
#pragma once

#define SITDIV_BLOCK 256

// Deterministic block-wide sum (or max) of one value per thread: a fixed shared-memory tree.
// `scratch` holds blockDim.x floats; blockDim.x must be a power of two. Every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    scratch[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) scratch[threadIdx.x] += scratch[threadIdx.x + s];
        __syncthreads();
    }
    float r = scratch[0];
    __syncthreads();
    return r;
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
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
