// The softmax of attention, between its two products (cuBLAS batched GEMMs on tensor cores:
// S = Q·Kᵀ/√Dh, then O = P·V, src/backend/cuda/attention.rs). CPU twin:
// src/backend/cpu/attention.rs; test: tests/ops/op_attention.rs.
//
// One warp per row: each lane walks its columns in a fixed order, and the warp combines them with
// a fixed butterfly, so the same input gives the same bits on every run.
#include "common.cuh"

#define SOFTMAX_ROWS_PER_BLOCK 8

template <class T>
__device__ void softmax_rows(const float* s, T* p, long long rows, int n) {
    long long row = (long long)blockIdx.x * SOFTMAX_ROWS_PER_BLOCK + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    // Whole warps leave together, so the shuffles below never wait for an exited lane.
    if (row >= rows) return;
    const float* sr = s + row * n;
    float mx = -SITDIV_INF;
    for (int j = lane; j < n; j += 32) mx = fmaxf(mx, sr[j]);
    for (int m = 16; m > 0; m >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, m));
    float sum = 0.f;
    for (int j = lane; j < n; j += 32) sum += expf(sr[j] - mx);
    for (int m = 16; m > 0; m >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, m);
    float inv = 1.f / sum;
    for (int j = lane; j < n; j += 32) store(p, row * n + j, expf(sr[j] - mx) * inv);
}

// In place (p == s) for f32 operands: each lane rewrites only the elements it read.
extern "C" __global__ void softmax_rows_f32(const float* s, float* p, long long rows, int n) {
    softmax_rows(s, p, rows, n);
}

extern "C" __global__ void softmax_rows_bf16(const float* s, bf16* p, long long rows, int n) {
    softmax_rows(s, p, rows, n);
}
