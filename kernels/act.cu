// Activations. CPU twin: src/backend/cpu/act.rs; test: tests/ops/op_act.rs.
#include "common.cuh"

extern "C" __global__ void silu_f32(const float* x, float* y, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] / (1.f + expf(-x[i]));
}

// GELU, tanh approximation, PyTorch's operation order.
extern "C" __global__ void gelu_tanh_f32(float* x, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float beta = 0.7978845608028654f;  // sqrt(2) * 2/sqrt(pi) * 0.5
    const float kappa = 0.044715f;
    float v = x[i];
    float inner = beta * (v + kappa * (v * v * v));
    x[i] = 0.5f * v * (1.f + tanhf(inner));
}

// Exact GELU, 0.5·x·(1 + erf(x/√2)), in double as the CPU twin computes it, rounded once to f32.
extern "C" __global__ void gelu_erf_f32(float* x, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    double v = (double)x[i];
    x[i] = (float)(0.5 * v * (1.0 + erf(v * 0.70710678118654752440)));
}

// CLIP's quick_gelu: x·sigmoid(1.702·x), in f32 as PyTorch evaluates it.
extern "C" __global__ void quick_gelu_f32(float* x, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    x[i] = v * (1.f / (1.f + expf(-(1.702f * v))));
}

// ReLU: negatives to 0; NaN is not below 0 and stays NaN, as torch.relu.
extern "C" __global__ void relu_f32(float* x, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && x[i] < 0.f) x[i] = 0.f;
}

// A GEMM operand in bf16 (round to nearest even).
extern "C" __global__ void cast_bf16(const float* x, bf16* y, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = to_bf16(x[i]);
}

// The left operand of a 3xTF32 product: each row of k values becomes [hi | hi | lo] (3k values),
// hi = tf32(v), lo = tf32(v − hi), so that one TF32 product over 3k with a right operand stored
// as [hi | lo | hi] sums hi·hi + hi·lo + lo·hi, fp32's accuracy on tensor cores (what it drops,
// lo·lo and lo's own rounding, is about 2⁻²² of v·w).
extern "C" __global__ void split_tf32(const float* x, float* y, long long n, int k) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long r = i / k, j = i % k;
    float v = x[i], hi = to_tf32(v);
    // ±∞ and NaN are all hi (v − hi would be NaN for ∞).
    float lo = (__float_as_uint(hi) & 0x7f800000u) == 0x7f800000u ? 0.f : to_tf32(v - hi);
    float* row = y + r * 3 * k;
    row[j] = hi;
    row[k + j] = hi;
    row[2 * k + j] = lo;
}
