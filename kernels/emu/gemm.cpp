// The GEMM core shared by the stand-in cuBLAS and cuBLASLt; see gemm.h.
#include "gemm.h"

#include <library_types.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "standin.h"

namespace emu {
namespace {

float from_bf16(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

uint16_t bf16_of_float(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if (std::isnan(f)) return (uint16_t)((b >> 16) | 0x40);
    b += 0x7fff + ((b >> 16) & 1);  // nearest, ties to even
    return (uint16_t)(b >> 16);
}

// Nearest bf16, ties to even, of an f64 value: rounding through f32 first would turn a value
// just off a bf16 tie into the tie itself.
uint16_t bf16_of_double(double v) {
    float f = (float)v;
    uint32_t b;
    memcpy(&b, &f, 4);
    if (!std::isnan(f) && (b & 0xffff) == 0x8000 && (double)f != v)
        return (uint16_t)((b >> 16) + (std::fabs(v) > std::fabs((double)f) ? 1 : 0));
    return bf16_of_float(f);
}

float round_input(float f, Round r) {
    if (r == EXACT || !std::isfinite(f)) return f;
    uint32_t b;
    memcpy(&b, &f, 4);
    if (r == TF32) b = (b + 0x1000u) & 0xffffe000u;  // ties away from zero, on the magnitude
    else b = (uint32_t)bf16_of_float(f) << 16;
    memcpy(&f, &b, 4);
    return f;
}

double load(const void* p, int t, long i) {
    switch (t) {
        case CUDA_R_32F: return static_cast<const float*>(p)[i];
        case CUDA_R_16BF: return from_bf16(static_cast<const uint16_t*>(p)[i]);
        default: return NAN;
    }
}

void store(void* p, int t, long i, double v) {
    if (t == CUDA_R_32F) static_cast<float*>(p)[i] = (float)v;
    else static_cast<uint16_t*>(p)[i] = bf16_of_double(v);
}

double activate(double v, Act act) {
    switch (act) {
        // max(x, 0) as fmax computes it: NaN becomes 0, which cuBLASLt's ReLU does too.
        case ACT_RELU: return v > 0 ? v : 0;
        // The documentation names GELU without its formula; this is the tanh form.
        case ACT_GELU: return 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
        default: return v;
    }
}

struct Job {
    const Product* p;
    // Packed operands: op(A) as m rows of k, op(B) as n rows of k.
    std::vector<float> pa, pb;
};

const long kCols = 16;

void column_block(long jb, void* ctx) {
    Job& job = *static_cast<Job*>(ctx);
    const Product& g = *job.p;
    for (long j = jb * kCols; j < std::min(g.n, (jb + 1) * kCols); ++j) {
        const float* bj = job.pb.data() + j * g.k;
        for (long i = 0; i < g.m; ++i) {
            const float* ai = job.pa.data() + i * g.k;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            long l = 0;
            for (; l + 4 <= g.k; l += 4) {
                s0 += (double)ai[l] * bj[l];
                s1 += (double)ai[l + 1] * bj[l + 1];
                s2 += (double)ai[l + 2] * bj[l + 2];
                s3 += (double)ai[l + 3] * bj[l + 3];
            }
            for (; l < g.k; ++l) s0 += (double)ai[l] * bj[l];
            double v = g.alpha * ((s0 + s1) + (s2 + s3));
            // beta = 0: C is not read (it may hold garbage, even NaN).
            if (g.beta != 0) v += g.beta * load(g.c.p, g.c.type, i + j * g.c.ld);
            if (g.bias) v += load(g.bias, g.bias_type, i);
            store(const_cast<void*>(g.d.p), g.d.type, i + j * g.d.ld, activate(v, g.act));
        }
    }
}

}  // namespace

Round rounding(int compute) {
    return compute == COMPUTE_32F_FAST_TF32 ? TF32 : compute == COMPUTE_32F_FAST_16BF ? BF16 : EXACT;
}

size_t elem_size(int t) { return t == CUDA_R_32F ? 4 : t == CUDA_R_64F ? 8 : 2; }

const char* type_name(int t) {
    switch (t) {
        case CUDA_R_32F: return "32F";
        case CUDA_R_16BF: return "16BF";
        case CUDA_R_16F: return "16F";
        case CUDA_R_64F: return "64F";
        default: return "?";
    }
}

const char* compute_name(int c) {
    switch (c) {
        case COMPUTE_32F: return "COMPUTE_32F";
        case COMPUTE_32F_PEDANTIC: return "COMPUTE_32F_PEDANTIC";
        case COMPUTE_32F_FAST_TF32: return "COMPUTE_32F_FAST_TF32";
        case COMPUTE_32F_FAST_16BF: return "COMPUTE_32F_FAST_16BF";
        case COMPUTE_32F_FAST_16F: return "COMPUTE_32F_FAST_16F";
        case COMPUTE_16F: return "COMPUTE_16F";
        case COMPUTE_64F: return "COMPUTE_64F";
        default: return "COMPUTE_?";
    }
}

std::string check_types(int ab, int cd, int compute) {
    bool fp32 = compute == COMPUTE_32F || compute == COMPUTE_32F_PEDANTIC || compute == COMPUTE_32F_FAST_TF32 ||
                compute == COMPUTE_32F_FAST_16BF;
    bool ok = (ab == CUDA_R_32F && cd == CUDA_R_32F && fp32) ||
              (ab == CUDA_R_16BF && (cd == CUDA_R_16BF || cd == CUDA_R_32F) && compute == COMPUTE_32F);
    if (ok) return "";
    return std::string("A and B ") + type_name(ab) + ", C " + type_name(cd) + " with " + compute_name(compute) +
           " is not a combination the stand-in has";
}

size_t footprint(long rows, long cols, long ld, long stride, long batch, int type) {
    if (rows == 0 || cols == 0 || batch == 0) return 0;
    return ((size_t)(cols - 1) * ld + rows + (size_t)(batch - 1) * stride) * elem_size(type);
}

void multiply(const Product& p) {
    if (p.m == 0 || p.n == 0) return;
    Job job{&p, {}, {}};
    job.pa.assign(p.m * p.k, 0.f);
    job.pb.assign(p.n * p.k, 0.f);
    for (long i = 0; i < p.m; ++i)
        for (long l = 0; l < p.k; ++l) {
            long at = p.opa == OP_N ? i + l * p.a.ld : l + i * p.a.ld;
            job.pa[i * p.k + l] = round_input((float)load(p.a.p, p.a.type, at), p.round);
        }
    for (long j = 0; j < p.n; ++j)
        for (long l = 0; l < p.k; ++l) {
            long at = p.opb == OP_N ? l + j * p.b.ld : j + l * p.b.ld;
            job.pb[j * p.k + l] = round_input((float)load(p.b.p, p.b.type, at), p.round);
        }
    parallel_for((p.n + kCols - 1) / kCols, column_block, &job);
}

}  // namespace emu
