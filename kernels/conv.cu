// Convolution as im2col into the arena plus one tensor-core GEMM per chunk of images (the GEMM is
// cuBLASLt's, src/backend/cuda/conv.rs), the per-channel bias the GEMM accumulates onto, and
// nearest upsampling. CPU twin: src/backend/cpu/conv.rs; test: tests/ops/op_conv.rs.
#include "common.cuh"

// cols (N, Ci·kh·kw, Ho·Wo) of x (N, Ci, H, W), rows ordered (c, ky, kx) like the weight, zero
// where the window reads padding, in the GEMM's operand type. One thread per element of cols:
// consecutive threads write consecutive output pixels.
template <class T>
__device__ void im2col(const float* x, T* cols, int c, int h, int w, int kh, int kw, int stride, int ph, int pw,
                       int ho, int wo, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long hw = (long long)ho * wo;
    int p = (int)(i % hw);
    long long r = i / hw;  // (image, c, ky, kx)
    int kx = (int)(r % kw);
    r /= kw;
    int ky = (int)(r % kh);
    r /= kh;
    int ci = (int)(r % c);
    long long img = r / c;
    int iy = (p / wo) * stride + ky - ph;
    int ix = (p % wo) * stride + kx - pw;
    float v = 0.f;
    if (iy >= 0 && iy < h && ix >= 0 && ix < w) v = x[((img * c + ci) * h + iy) * w + ix];
    store(cols, i, v);
}

extern "C" __global__ void im2col_f32(const float* x, float* cols, int c, int h, int w, int kh, int kw, int stride,
                                      int ph, int pw, int ho, int wo, long long n) {
    im2col(x, cols, c, h, w, kh, kw, stride, ph, pw, ho, wo, n);
}

extern "C" __global__ void im2col_bf16(const float* x, bf16* cols, int c, int h, int w, int kh, int kw, int stride,
                                       int ph, int pw, int ho, int wo, long long n) {
    im2col(x, cols, c, h, w, kh, kw, stride, ph, pw, ho, wo, n);
}

// y (N, Co, HW) = bias[co] everywhere: the C the convolution's GEMM adds its product to, as the
// CPU twin starts each output at its bias.
extern "C" __global__ void fill_bias_f32(float* y, const float* bias, int co, long long hw, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = bias[(i / hw) % co];
}

// Nearest 2× upsampling: (NC, H, W) → (NC, 2H, 2W). One thread per output element.
extern "C" __global__ void upsample_nearest2x_f32(const float* x, float* y, int h, int w, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int w2 = 2 * w;
    long long plane = (long long)4 * h * w;
    long long nc = i / plane;
    int q = (int)(i % plane);
    int oy = q / w2, ox = q % w2;
    y[i] = x[(nc * h + oy / 2) * w + ox / 2];
}
