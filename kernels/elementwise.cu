// Residual adds and bias broadcast. CPU twin: src/backend/cpu/elementwise.rs; test: tests/ops/op_elementwise.rs.
#include "common.cuh"

extern "C" __global__ void add_f32(float* x, const float* y, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += y[i];
}

// x (B, R) += row (R)
extern "C" __global__ void add_row_f32(float* x, const float* row, int r, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += row[i % r];
}

// x (B, T, D) += gate[b] · y, gate = row b of m (B, m_stride) at column offset gate_off.
extern "C" __global__ void gated_add_f32(float* x, const float* y, const float* m, int m_stride, int gate_off,
                                         int t, int d, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long b = i / ((long long)t * d);
    x[i] += m[b * m_stride + gate_off + (int)(i % d)] * y[i];
}
