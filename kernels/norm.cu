// LayerNorm without affine parameters, fused with the adaLN modulate.
// CPU twin: src/backend/cpu/norm.rs; test: tests/op_norm.rs.
#include "common.cuh"

// Mean and 1/sqrt(var + eps) of one row, by the whole block: two passes (mean, then the centred
// sum of squares), each a fixed-order tree.
__device__ __forceinline__ void row_stats(const float* xr, int d, float eps, smem_ptr<float> scratch, float* mean, float* rstd) {
    float s = 0.f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) s += xr[i];
    float m = block_sum(s, scratch) / d;
    float q = 0.f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float c = xr[i] - m;
        q += c * c;
    }
    *mean = m;
    *rstd = rsqrtf(block_sum(q, scratch) / d + eps);
}

// y[r] = (x[r] − mean) / sqrt(var + eps) over D features; one block per row.
extern "C" __global__ void layer_norm_f32(const float* x, float* y, int rows, int d, float eps) {
    SITDIV_SHARED(float, scratch, SITDIV_BLOCK);
    int r = blockIdx.x;
    if (r >= rows) return;
    const float* xr = x + (size_t)r * d;
    float mean, rstd;
    row_stats(xr, d, eps, scratch, &mean, &rstd);
    for (int i = threadIdx.x; i < d; i += blockDim.x) y[(size_t)r * d + i] = (xr[i] - mean) * rstd;
}

// Fused LayerNorm + modulate: y = LN(x) · (1 + scale[b]) + shift[b], x (B, T, D); shift and scale
// are rows of (B, stride) matrices at the given column offsets.
extern "C" __global__ void layer_norm_modulate_f32(const float* x, float* y, const float* shift, int shift_stride,
                                                   int shift_off, const float* scale, int scale_stride, int scale_off,
                                                   int t, int d, float eps) {
    SITDIV_SHARED(float, scratch, SITDIV_BLOCK);
    long long r = blockIdx.x;
    long long b = r / t;
    const float* xr = x + r * d;
    const float* sh = shift + b * shift_stride + shift_off;
    const float* sc = scale + b * scale_stride + scale_off;
    float mean, rstd;
    row_stats(xr, d, eps, scratch, &mean, &rstd);
    for (int i = threadIdx.x; i < d; i += blockDim.x) y[r * d + i] = ((xr[i] - mean) * rstd) * (1.f + sc[i]) + sh[i];
}

// In place: x = x · (1 + scale[b]) + shift[b], x (B, T, D).
extern "C" __global__ void modulate_f32(float* x, const float* shift, int shift_stride, int shift_off,
                                        const float* scale, int scale_stride, int scale_off, int t, int d,
                                        long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int j = (int)(i % d);
    long long b = i / ((long long)t * d);
    x[i] = x[i] * (1.f + scale[b * scale_stride + scale_off + j]) + shift[b * shift_stride + shift_off + j];
}
