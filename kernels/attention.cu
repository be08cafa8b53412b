// Multi-head softmax attention over a fused qkv tensor (timm Attention core).
// CPU twin: src/backend/cpu/attention.rs; test: tests/op_attention.rs.
//
// One block per (query row and image, head): grid (B·T, H), so the batch is not bound by
// gridDim.z's 65 535. The scores of the row live in shared memory (T floats),
// the softmax uses fixed-order block reductions, and each output feature is a sequential sum over
// keys, so results are deterministic. A tiled online-softmax variant belongs in kernels/dev/ until
// it is measured faster on a GPU.
#include "common.cuh"

extern "C" __global__ void attention_f32(const float* qkv, float* out, int t, int heads, int dh, float scale) {
    SITDIV_DYN_SMEM(float, smem);  // scores[t], q[dh], scratch[blockDim.x]
    smem_ptr<float> scores = smem;
    smem_ptr<float> q = scores + t;
    smem_ptr<float> scratch = q + dh;
    int i = blockIdx.x % t, h = blockIdx.y;
    long long b = blockIdx.x / t;
    int d = heads * dh;
    const float* base = qkv + (size_t)b * t * 3 * d;
    for (int e = threadIdx.x; e < dh; e += blockDim.x) q[e] = base[(size_t)i * 3 * d + h * dh + e];
    __syncthreads();
    float local_max = -SITDIV_INF;
    for (int j = threadIdx.x; j < t; j += blockDim.x) {
        const float* k = base + (size_t)j * 3 * d + d + h * dh;
        float s = 0.f;
        for (int e = 0; e < dh; ++e) s += q[e] * k[e];
        s *= scale;
        scores[j] = s;
        local_max = fmaxf(local_max, s);
    }
    float mx = block_max(local_max, scratch);
    float local_sum = 0.f;
    for (int j = threadIdx.x; j < t; j += blockDim.x) {
        float p = expf(scores[j] - mx);
        scores[j] = p;
        local_sum += p;
    }
    float inv = 1.f / block_sum(local_sum, scratch);
    for (int e = threadIdx.x; e < dh; e += blockDim.x) {
        const float* v = base + 2 * d + h * dh + e;
        float acc = 0.f;
        for (int j = 0; j < t; ++j) acc += scores[j] * v[(size_t)j * 3 * d];
        out[((size_t)b * t + i) * d + h * dh + e] = acc * inv;
    }
}
