// Max and average pooling over NCHW maps, and channel concatenation as copies into one buffer.
// CPU twin: src/backend/cpu/pool.rs; test: tests/ops/op_pool.rs.
#include "common.cuh"

// F.max_pool2d / F.avg_pool2d(count_include_pad=False) over (NC, H, W) → (NC, Ho, Wo), one thread
// per output. The window is visited row-major as the CPU twin does, so the bits are its bits: the
// average sums in f32 and divides once, the maximum lets NaN win.
extern "C" __global__ void pool2d_f32(const float* x, float* y, int h, int w, int ho, int wo, int kh, int kw,
                                      int stride, int ph, int pw, int is_max, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long plane = (long long)ho * wo;
    long long nc = i / plane;
    int q = (int)(i % plane);
    int oy = q / wo, ox = q % wo;
    // The window's rows r0..r1 and columns c0..c1 inside the map.
    int r0 = oy * stride - ph, r1 = oy * stride + kh - ph;
    int c0 = ox * stride - pw, c1 = ox * stride + kw - pw;
    r0 = r0 < 0 ? 0 : r0;
    c0 = c0 < 0 ? 0 : c0;
    r1 = r1 > h ? h : r1;
    c1 = c1 > w ? w : c1;
    const float* xp = x + nc * h * w;
    float acc = is_max ? -SITDIV_INF : 0.f;
    for (int iy = r0; iy < r1; ++iy)
        for (int ix = c0; ix < c1; ++ix) {
            float v = xp[iy * w + ix];
            if (is_max) {
                if (v > acc || v != v) acc = v;
            } else {
                acc += v;
            }
        }
    y[i] = is_max ? acc : acc / (float)((r1 - r0) * (c1 - c0));
}

// One part of torch.cat(parts, dim=1): src (N, Ci, HW) into channels at..at+Ci of dst (N, C, HW).
extern "C" __global__ void copy_channels_f32(const float* src, float* dst, long long part, long long whole,
                                             long long at, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[(i / part) * whole + at + i % part] = src[i];
}
