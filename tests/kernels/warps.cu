// Warp-level built-ins and atomics, correct, for tests/gpu/gpu_harness.rs: the emulated device must
// give what the CUDA programming guide specifies, lane by lane.
#include "common.cuh"

// Per lane of every warp (blockDim.x a multiple of 32), eight words of out[8 · tid ..]:
// shuffle from lane 31 − lane, down by 1, up by 1, xor 5, xor 1 in segments of 8, a butterfly
// sum over the warp, the ballot of x > 0, and the warp sum by shuffle-down.
extern "C" __global__ void warp_builtins(const int* x, int* out) {
    unsigned tid = blockIdx.x * blockDim.x + threadIdx.x;
    int lane = threadIdx.x & 31;
    int v = x[tid];
    const unsigned all = 0xffffffffu;
    int* o = out + 8 * tid;
    o[0] = __shfl_sync(all, v, 31 - lane);
    o[1] = __shfl_down_sync(all, v, 1);
    o[2] = __shfl_up_sync(all, v, 1);
    o[3] = __shfl_xor_sync(all, v, 5);
    o[4] = __shfl_xor_sync(all, v, 1, 8);
    int s = v;
    for (int m = 16; m > 0; m >>= 1) s += __shfl_xor_sync(all, s, m);
    o[5] = s;
    o[6] = (int)__ballot_sync(all, v > 0);
    int d = v;
    for (int k = 16; k > 0; k >>= 1) d += __shfl_down_sync(all, d, k);
    o[7] = lane == 0 ? d : 0;
}

// Neighbours through shared memory ordered by __syncwarp alone (no __syncthreads): lane i
// writes its slot, the warp synchronises, lane i reads lane (i + 1) mod 32 of its own warp.
extern "C" __global__ void warp_neighbours(const float* x, float* y) {
    SITDIV_SHARED(float, slot, 1024);
    unsigned t = threadIdx.x;
    slot[t] = x[blockIdx.x * blockDim.x + t];
    __syncwarp();
    unsigned base = t & ~31u;
    y[blockIdx.x * blockDim.x + t] = slot[base + ((t + 1) & 31)];
}

// Every thread adds its value to one total: integer-valued floats, so any order gives one sum.
extern "C" __global__ void atomic_total(const float* x, float* total, int* count, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(total, x[i]);
    atomicAdd(count, 1);
}

// BROKEN: a shuffle of the full warp inside a branch that only half the lanes take: the other
// lanes have exited, so the shuffle waits for lanes that never come.
extern "C" __global__ void divergent_shuffle(const int* x, int* out) {
    int lane = threadIdx.x & 31;
    if (lane < 16) out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, x[threadIdx.x], 1);
}
