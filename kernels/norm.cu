// LayerNorm without affine parameters, fused with the adaLN modulate and the gated residual.
// CPU twin: src/backend/cpu/norm.rs; test: tests/ops/op_norm.rs.
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

// y = LN(x[r]) · (1 + scale) + shift over one row, written in the next GEMM's input type.
template <class T>
__device__ __forceinline__ void modulated_row(const float* xr, T* y, long long r, const float* sh, const float* sc,
                                              int d, float eps, smem_ptr<float> scratch) {
    float mean, rstd;
    row_stats(xr, d, eps, scratch, &mean, &rstd);
    for (int i = threadIdx.x; i < d; i += blockDim.x) store(y, r * d + i, ((xr[i] - mean) * rstd) * (1.f + sc[i]) + sh[i]);
}

// Fused LayerNorm + modulate: y = LN(x) · (1 + scale[b]) + shift[b], x (B, T, D); shift and scale
// are rows of (B, stride) matrices at the given column offsets. One block per row.
template <class T>
__device__ void layer_norm_modulate(const float* x, T* y, const float* shift, int shift_stride, int shift_off,
                                    const float* scale, int scale_stride, int scale_off, int t, int d, float eps) {
    SITDIV_SHARED(float, scratch, SITDIV_BLOCK);
    long long r = blockIdx.x;
    long long b = r / t;
    modulated_row(x + r * d, y, r, shift + b * shift_stride + shift_off, scale + b * scale_stride + scale_off, d, eps,
                  scratch);
}

extern "C" __global__ void layer_norm_modulate_f32(const float* x, float* y, const float* shift, int shift_stride,
                                                   int shift_off, const float* scale, int scale_stride, int scale_off,
                                                   int t, int d, float eps) {
    layer_norm_modulate(x, y, shift, shift_stride, shift_off, scale, scale_stride, scale_off, t, d, eps);
}

extern "C" __global__ void layer_norm_modulate_bf16(const float* x, bf16* y, const float* shift, int shift_stride,
                                                    int shift_off, const float* scale, int scale_stride, int scale_off,
                                                    int t, int d, float eps) {
    layer_norm_modulate(x, y, shift, shift_stride, shift_off, scale, scale_stride, scale_off, t, d, eps);
}

// The end of one adaLN branch and the start of the next in one pass over the row:
// x[r] += gate[b] ⊙ y[r] (the residual), then out[r] = LN(x[r]) · (1 + scale[b]) + shift[b].
// Each thread reads back only the elements it updated, so no barrier is needed between.
template <class T>
__device__ void gated_add_layer_norm_modulate(float* x, const float* y, const float* gate, int gate_stride,
                                              int gate_off, const float* shift, int shift_stride, int shift_off,
                                              const float* scale, int scale_stride, int scale_off, T* out, int t,
                                              int d, float eps) {
    SITDIV_SHARED(float, scratch, SITDIV_BLOCK);
    long long r = blockIdx.x;
    long long b = r / t;
    float* xr = x + r * d;
    const float* yr = y + r * d;
    const float* g = gate + b * gate_stride + gate_off;
    for (int i = threadIdx.x; i < d; i += blockDim.x) xr[i] += g[i] * yr[i];
    modulated_row(xr, out, r, shift + b * shift_stride + shift_off, scale + b * scale_stride + scale_off, d, eps,
                  scratch);
}

extern "C" __global__ void gated_add_layer_norm_modulate_f32(float* x, const float* y, const float* gate,
                                                             int gate_stride, int gate_off, const float* shift,
                                                             int shift_stride, int shift_off, const float* scale,
                                                             int scale_stride, int scale_off, float* out, int t, int d,
                                                             float eps) {
    gated_add_layer_norm_modulate(x, y, gate, gate_stride, gate_off, shift, shift_stride, shift_off, scale,
                                  scale_stride, scale_off, out, t, d, eps);
}

extern "C" __global__ void gated_add_layer_norm_modulate_bf16(float* x, const float* y, const float* gate,
                                                              int gate_stride, int gate_off, const float* shift,
                                                              int shift_stride, int shift_off, const float* scale,
                                                              int scale_stride, int scale_off, bf16* out, int t, int d,
                                                              float eps) {
    gated_add_layer_norm_modulate(x, y, gate, gate_stride, gate_off, shift, shift_stride, shift_off, scale,
                                  scale_stride, scale_off, out, t, d, eps);
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

// F.layer_norm with affine parameters: y[r] = LN(x[r]) · gamma + beta; one block per row.
extern "C" __global__ void layer_norm_affine_f32(const float* x, float* y, const float* gamma, const float* beta,
                                                 int rows, int d, float eps) {
    SITDIV_SHARED(float, scratch, SITDIV_BLOCK);
    int r = blockIdx.x;
    if (r >= rows) return;
    const float* xr = x + (size_t)r * d;
    float mean, rstd;
    row_stats(xr, d, eps, scratch, &mean, &rstd);
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        y[(size_t)r * d + i] = ((xr[i] - mean) * rstd) * gamma[i] + beta[i];
}

// F.group_norm over x (N, C, HW), then SiLU when `silu`: one block per (image, group), whose
// C/G channels are contiguous. Mean and biased variance in double (two passes), the affine and
// the SiLU in f32.
extern "C" __global__ void group_norm_f32(const float* x, float* y, const float* gamma, const float* beta, int c,
                                          int hw, int groups, float eps, int silu) {
    SITDIV_SHARED(double, scratch, SITDIV_BLOCK);
    int cg = c / groups;
    long long len = (long long)cg * hw;
    long long ng = blockIdx.x;
    int g = (int)(ng % groups);
    const float* xg = x + ng * len;
    float* yg = y + ng * len;
    double s = 0.0;
    for (long long i = threadIdx.x; i < len; i += blockDim.x) s += (double)xg[i];
    double mean = block_sum(s, scratch) / (double)len;
    double q = 0.0;
    for (long long i = threadIdx.x; i < len; i += blockDim.x) {
        double d = (double)xg[i] - mean;
        q += d * d;
    }
    double rstd = 1.0 / sqrt(block_sum(q, scratch) / (double)len + (double)eps);
    for (long long i = threadIdx.x; i < len; i += blockDim.x) {
        int ch = g * cg + (int)(i / hw);
        float z = (float)(((double)xg[i] - mean) * rstd) * gamma[ch] + beta[ch];
        yg[i] = silu ? z / (1.f + expf(-z)) : z;
    }
}
