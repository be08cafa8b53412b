// Patch (un)embedding rearrangements and embedding lookup. CPU twin: src/backend/cpu/embed.rs;
// test: tests/ops/op_embed.rs.
#include "common.cuh"

// (B, C, H, W) → (B, (H/p)(W/p), C·p·p), features (c, a, b). One thread per output element.
extern "C" __global__ void patchify_f32(const float* x, float* y, int c, int h, int w, int p, long long n) {
    long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n) return;
    int f = c * p * p;
    int gw = w / p, gh = h / p;
    int feat = (int)(o % f);
    long long tok = o / f;
    int j = (int)(tok % gw);
    int i = (int)((tok / gw) % gh);
    long long b = tok / ((long long)gw * gh);
    int ch = feat / (p * p), a = (feat / p) % p, bb = feat % p;
    y[o] = x[((b * c + ch) * h + p * i + a) * w + p * j + bb];
}

// (B, T, p·p·c_out) → (B, c_keep, H, W). One thread per output element.
extern "C" __global__ void unpatchify_f32(const float* o, float* y, int c_out, int c_keep, int h, int w, int p,
                                          long long n) {
    long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n) return;
    int col = (int)(e % w);
    int row = (int)((e / w) % h);
    int ch = (int)((e / ((long long)w * h)) % c_keep);
    long long b = e / ((long long)w * h * c_keep);
    int gh = h / p, gw = w / p;
    int i = row / p, a = row % p, j = col / p, bb = col % p;
    y[e] = o[((b * gh + i) * gw + j) * (p * p * c_out) + (a * p + bb) * c_out + ch];
}

// Rows ids[b] of a (V, D) table.
extern "C" __global__ void gather_rows_f32(const float* table, const int* ids, float* y, int d, long long n) {
    long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e < n) y[e] = table[(long long)ids[e / d] * d + e % d];
}

// Rows ids[b] of a (V, D) table, the ids given as exact integers in f32 (a device input of a
// captured forward). The caller checks every id against V.
extern "C" __global__ void gather_rows_idf_f32(const float* table, const float* ids, float* y, int d, long long n) {
    long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e < n) y[e] = table[(long long)ids[e / d] * d + e % d];
}

// x.transpose(1, 2): (B, R, C) → (B, C, R). One thread per output element.
extern "C" __global__ void transpose_f32(const float* x, float* y, int r, int c, long long n) {
    long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n) return;
    long long rc = (long long)r * c;
    long long b = o / rc;
    int q = (int)(o % rc);
    int j = q / r, k = q % r;  // y[b, j, k] = x[b, k, j]
    y[o] = x[b * rc + (long long)k * c + j];
}
