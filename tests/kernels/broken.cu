// Kernels broken on purpose, for tests/gpu/gpu_harness.rs: each must be caught by the emulated
// device (or by the launch table) with a message that names the fault. `reverse_via_smem` is the
// one correct kernel, launched with bad and good launch configurations.
#include "common.cuh"

// BROKEN: a block sum (blockDim.x = 64, one block) without the __syncthreads() between writing
// `partial` and the first step of the tree, so a thread reads a slot that another thread may not
// have written yet. On a GPU this usually works by luck of scheduling; it is a race.
extern "C" __global__ void racy_block_sum(const float* x, float* out) {
    SITDIV_SHARED(float, partial, 64);
    unsigned t = threadIdx.x;
    partial[t] = x[t];
    // missing: __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) partial[t] += partial[t + s];
        __syncthreads();
    }
    if (t == 0) out[0] = partial[0];
}

// BROKEN: only the first half of `tile` is filled (a bound of 32 where 64 was meant), yet every
// thread reads its mirror slot after the barrier: threads 0..31 read shared memory no thread wrote.
extern "C" __global__ void half_filled_tile(float* out) {
    SITDIV_SHARED(float, tile, 64);
    unsigned t = threadIdx.x;
    if (t < 32) tile[t] = (float)t;
    __syncthreads();
    out[t] = tile[63 - t];
}

// BROKEN: an off-by-one bound (`<=` for `<`): the thread with i == n writes y[n], one element past
// the end of the buffer.
extern "C" __global__ void write_past_end(float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = (float)i;
}

// Correct in itself, BROKEN against its launch table row: the test's Rust `Sig` lists two
// parameters (y, x) while the kernel takes three, as after a parameter was added here only.
extern "C" __global__ void three_params(float* y, const float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i];
}

// Correct: y = x reversed, through n floats of dynamic shared memory (n = dynamic bytes / 4), one
// block of any size. Used for the launch limits: too many threads per block, and more than 48 KiB
// of dynamic shared memory with and without the opt-in attribute.
extern "C" __global__ void reverse_via_smem(const float* x, float* y, int n) {
    SITDIV_DYN_SMEM(float, buf);
    for (int i = threadIdx.x; i < n; i += blockDim.x) buf[i] = x[i];
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = buf[n - 1 - i];
}
