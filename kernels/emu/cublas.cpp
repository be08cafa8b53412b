// A stand-in for cuBLAS (libcublas.so), the calls sitdiv makes: GEMMs computed naively as
// NVIDIA documents them (column-major, op(A) m×k times op(B) k×n, leading dimensions, strided
// batches, alpha and beta with beta = 0 never reading C), with the argument checks cuBLAS makes
// (CUBLAS_STATUS_INVALID_VALUE for a leading dimension below its minimum) and the rounding the
// compute type allows: TF32 inputs keep 10 mantissa bits (cvt.rna.tf32.f32: nearest, ties away),
// bf16 inputs 7 (nearest, ties to even). Products accumulate in f64, so the only error left is
// the inputs' rounding and the final one. Operands must lie inside device allocations; one
// that does not faults like a kernel would on a GPU (sticky CUDA_ERROR_ILLEGAL_ADDRESS).
#include <library_types.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "standin.h"

namespace {

enum Status {
    SUCCESS = 0,
    NOT_INITIALIZED = 1,
    INVALID_VALUE = 7,
    EXECUTION_FAILED = 13,
    NOT_SUPPORTED = 15,
};
enum Op { OP_N = 0, OP_T = 1, OP_C = 2 };
enum Compute {
    COMPUTE_16F = 64,
    COMPUTE_32F = 68,
    COMPUTE_32F_PEDANTIC = 69,
    COMPUTE_64F = 70,
    COMPUTE_32F_FAST_16F = 74,
    COMPUTE_32F_FAST_16BF = 75,
    COMPUTE_32F_FAST_TF32 = 77,
};
enum Math { DEFAULT_MATH = 0, TF32_TENSOR_OP_MATH = 3 };
enum PointerMode { POINTER_HOST = 0, POINTER_DEVICE = 1 };

struct Handle {
    void* stream = nullptr;
    int math = DEFAULT_MATH;
    int pointer_mode = POINTER_HOST;
};

enum Round { EXACT, TF32, BF16 };

float from_bf16(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

uint16_t to_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if (std::isnan(f)) return (uint16_t)((b >> 16) | 0x40);
    b += 0x7fff + ((b >> 16) & 1);  // nearest, ties to even
    return (uint16_t)(b >> 16);
}

float round_input(float f, Round r) {
    if (r == EXACT || !std::isfinite(f)) return f;
    uint32_t b;
    memcpy(&b, &f, 4);
    if (r == TF32) b = (b + 0x1000u) & 0xffffe000u;  // ties away from zero, on the magnitude
    else b = (uint32_t)to_bf16(f) << 16;
    memcpy(&f, &b, 4);
    return f;
}

size_t elem_size(int t) { return t == CUDA_R_32F ? 4 : t == CUDA_R_64F ? 8 : 2; }

float load(const void* p, int t, long i) {
    switch (t) {
        case CUDA_R_32F: return static_cast<const float*>(p)[i];
        case CUDA_R_16BF: return from_bf16(static_cast<const uint16_t*>(p)[i]);
        default: return NAN;
    }
}

void store(void* p, int t, long i, double v) {
    if (t == CUDA_R_32F) static_cast<float*>(p)[i] = (float)v;
    else static_cast<uint16_t*>(p)[i] = to_bf16((float)v);
}

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

struct Gemm {
    int opa, opb;
    long m, n, k;
    const void* a;
    int atype;
    long lda, sa;
    const void* b;
    int btype;
    long ldb, sb;
    void* c;
    int ctype;
    long ldc, sc;
    long batch;
    double alpha, beta;
    Round round;
    // Packed operands of one batch: op(A) as m rows of k, op(B) as n rows of k.
    std::vector<float> pa, pb;
    long batch_index;
};

void column_block(long jb, void* p) {
    Gemm& g = *static_cast<Gemm*>(p);
    const long cols = 16;
    void* c = static_cast<char*>(g.c) + g.batch_index * g.sc * elem_size(g.ctype);
    for (long j = jb * cols; j < std::min(g.n, (jb + 1) * cols); ++j) {
        const float* bj = g.pb.data() + j * g.k;
        for (long i = 0; i < g.m; ++i) {
            const float* ai = g.pa.data() + i * g.k;
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
            long at = i + j * g.ldc;
            // beta = 0: C is not read (it may hold garbage, even NaN).
            if (g.beta != 0) v += g.beta * load(c, g.ctype, at);
            store(c, g.ctype, at, v);
        }
    }
}

int run_gemm(Gemm& g, int compute, const char* api) {
    if (emu::sticky()) return EXECUTION_FAILED;
    if (g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0)
        return emu::set_detail("%s: negative size m=%ld n=%ld k=%ld batch=%ld", api, g.m, g.n, g.k, g.batch),
               INVALID_VALUE;
    if ((g.opa != OP_N && g.opa != OP_T) || (g.opb != OP_N && g.opb != OP_T))
        return emu::set_detail("%s: transa=%d transb=%d (the stand-in has N and T)", api, g.opa, g.opb), NOT_SUPPORTED;
    long lda_min = std::max(1L, g.opa == OP_N ? g.m : g.k);
    long ldb_min = std::max(1L, g.opb == OP_N ? g.k : g.n);
    long ldc_min = std::max(1L, g.m);
    if (g.lda < lda_min || g.ldb < ldb_min || g.ldc < ldc_min)
        return emu::set_detail("%s: lda=%ld ldb=%ld ldc=%ld below their minimum %ld, %ld, %ld (m=%ld n=%ld k=%ld, "
                               "transa=%s transb=%s)",
                               api, g.lda, g.ldb, g.ldc, lda_min, ldb_min, ldc_min, g.m, g.n, g.k,
                               g.opa == OP_N ? "N" : "T", g.opb == OP_N ? "N" : "T"),
               INVALID_VALUE;
    bool ok_types = (g.atype == CUDA_R_32F && g.btype == CUDA_R_32F && g.ctype == CUDA_R_32F) ||
                    (compute == COMPUTE_32F && g.atype == CUDA_R_16BF && g.btype == CUDA_R_16BF &&
                     (g.ctype == CUDA_R_16BF || g.ctype == CUDA_R_32F));
    if (!ok_types || (compute != COMPUTE_32F && compute != COMPUTE_32F_PEDANTIC && compute != COMPUTE_32F_FAST_TF32 &&
                      compute != COMPUTE_32F_FAST_16BF))
        return emu::set_detail("%s: A %s, B %s, C %s with %s is not a combination the stand-in has", api,
                               type_name(g.atype), type_name(g.btype), type_name(g.ctype), compute_name(compute)),
               NOT_SUPPORTED;
    if (g.m == 0 || g.n == 0 || g.batch == 0) return SUCCESS;
    // Footprints: the last element of each operand of the last batch must lie in one allocation.
    auto footprint = [](long rows, long cols, long ld, long stride, long batch, size_t es) -> size_t {
        if (rows == 0 || cols == 0) return 0;
        return ((size_t)(cols - 1) * ld + rows + (size_t)(batch - 1) * stride) * es;
    };
    size_t fa = footprint(g.opa == OP_N ? g.m : g.k, g.opa == OP_N ? g.k : g.m, g.lda, g.sa, g.batch, elem_size(g.atype));
    size_t fb = footprint(g.opb == OP_N ? g.k : g.n, g.opb == OP_N ? g.n : g.k, g.ldb, g.sb, g.batch, elem_size(g.btype));
    size_t fc = footprint(g.m, g.n, g.ldc, g.sc, g.batch, elem_size(g.ctype));
    std::string what = std::string(api) + " operand ";
    if ((fa && !emu::check_range((uint64_t)g.a, fa, (what + "A").c_str())) ||
        (fb && !emu::check_range((uint64_t)g.b, fb, (what + "B").c_str())) ||
        !emu::check_range((uint64_t)g.c, fc, (what + "C").c_str())) {
        emu::set_sticky(700);  // CUDA_ERROR_ILLEGAL_ADDRESS, as the kernel would fault on a GPU
        return EXECUTION_FAILED;
    }
    char key[64];
    snprintf(key, sizeof key, "%s/%s", compute_name(compute), type_name(g.atype));
    emu::count_gemm(key, 2.0 * g.m * g.n * g.k * g.batch);
    g.pa.assign(g.m * g.k, 0.f);
    g.pb.assign(g.n * g.k, 0.f);
    for (long bi = 0; bi < g.batch; ++bi) {
        for (long i = 0; i < g.m; ++i)
            for (long l = 0; l < g.k; ++l) {
                long at = bi * g.sa + (g.opa == OP_N ? i + l * g.lda : l + i * g.lda);
                g.pa[i * g.k + l] = round_input(load(g.a, g.atype, at), g.round);
            }
        for (long j = 0; j < g.n; ++j)
            for (long l = 0; l < g.k; ++l) {
                long at = bi * g.sb + (g.opb == OP_N ? l + j * g.ldb : j + l * g.ldb);
                g.pb[j * g.k + l] = round_input(load(g.b, g.btype, at), g.round);
            }
        g.batch_index = bi;
        emu::parallel_for((g.n + 15) / 16, column_block, &g);
    }
    return SUCCESS;
}

double scalar(const Handle* h, const void* p, int compute) {
    (void)h;  // host and device pointers are both host memory here
    if (compute == COMPUTE_64F) return *static_cast<const double*>(p);
    return *static_cast<const float*>(p);
}

Round rounding(int compute) {
    return compute == COMPUTE_32F_FAST_TF32 ? TF32 : compute == COMPUTE_32F_FAST_16BF ? BF16 : EXACT;
}

}  // namespace

extern "C" {

int cublasCreate_v2(void** handle) {
    *handle = new Handle();
    return SUCCESS;
}
int cublasDestroy_v2(void* handle) {
    delete static_cast<Handle*>(handle);
    return SUCCESS;
}
int cublasSetStream_v2(void* handle, void* stream) {
    static_cast<Handle*>(handle)->stream = stream;
    return SUCCESS;
}
int cublasGetStream_v2(void* handle, void** stream) {
    *stream = static_cast<Handle*>(handle)->stream;
    return SUCCESS;
}
int cublasSetMathMode(void* handle, int mode) {
    static_cast<Handle*>(handle)->math = mode;
    return SUCCESS;
}
int cublasGetMathMode(void* handle, int* mode) {
    *mode = static_cast<Handle*>(handle)->math;
    return SUCCESS;
}
int cublasSetPointerMode_v2(void* handle, int mode) {
    static_cast<Handle*>(handle)->pointer_mode = mode;
    return SUCCESS;
}
int cublasGetPointerMode_v2(void* handle, int* mode) {
    *mode = static_cast<Handle*>(handle)->pointer_mode;
    return SUCCESS;
}
int cublasSetWorkspace_v2(void*, void*, size_t) { return SUCCESS; }
int cublasGetVersion_v2(void*, int* v) {
    *v = 130000;
    return SUCCESS;
}
const char* cublasGetStatusName(int s) {
    switch (s) {
        case SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
        default: return "CUBLAS_STATUS_UNKNOWN";
    }
}
const char* cublasGetStatusString(int s) { return cublasGetStatusName(s); }

int cublasGemmStridedBatchedEx(void* handle, int transa, int transb, int m, int n, int k, const void* alpha,
                               const void* A, int atype, int lda, long long sa, const void* B, int btype, int ldb,
                               long long sb, const void* beta, void* C, int ctype, int ldc, long long sc, int batch,
                               int compute, int /*algo*/) {
    Handle* h = static_cast<Handle*>(handle);
    Gemm g{transa, transb, m, n, k, A, atype, lda, sa, B, btype, ldb, sb, C, ctype, ldc, sc, batch,
           scalar(h, alpha, compute), scalar(h, beta, compute), rounding(compute), {}, {}, 0};
    return run_gemm(g, compute, "cublasGemmStridedBatchedEx");
}

int cublasGemmEx(void* handle, int transa, int transb, int m, int n, int k, const void* alpha, const void* A,
                 int atype, int lda, const void* B, int btype, int ldb, const void* beta, void* C, int ctype, int ldc,
                 int compute, int /*algo*/) {
    Handle* h = static_cast<Handle*>(handle);
    Gemm g{transa, transb, m, n, k, A, atype, lda, 0, B, btype, ldb, 0, C, ctype, ldc, 0, 1,
           scalar(h, alpha, compute), scalar(h, beta, compute), rounding(compute), {}, {}, 0};
    return run_gemm(g, compute, "cublasGemmEx");
}

int cublasSgemmStridedBatched(void* handle, int transa, int transb, int m, int n, int k, const float* alpha,
                              const float* A, int lda, long long sa, const float* B, int ldb, long long sb,
                              const float* beta, float* C, int ldc, long long sc, int batch) {
    Handle* h = static_cast<Handle*>(handle);
    int compute = h->math == TF32_TENSOR_OP_MATH ? COMPUTE_32F_FAST_TF32 : COMPUTE_32F;
    Gemm g{transa, transb, m, n, k, A, CUDA_R_32F, lda, sa, B, CUDA_R_32F, ldb, sb, C, CUDA_R_32F, ldc, sc, batch,
           *alpha, *beta, rounding(compute), {}, {}, 0};
    return run_gemm(g, compute, "cublasSgemmStridedBatched");
}

int cublasSgemm_v2(void* handle, int transa, int transb, int m, int n, int k, const float* alpha, const float* A,
                   int lda, const float* B, int ldb, const float* beta, float* C, int ldc) {
    return cublasSgemmStridedBatched(handle, transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

}  // extern "C"
