// A stand-in for cuBLAS (libcublas.so), the calls sitdiv makes: GEMMs computed by the core of
// gemm.h, with the argument checks cuBLAS makes (CUBLAS_STATUS_INVALID_VALUE for a leading
// dimension below its minimum), strided batches and batches given as arrays of pointers (which
// live in device memory and are read when the GEMM runs). A GEMM is work on the handle's stream:
// recorded while the stream captures. Operands must lie inside device allocations; one that
// does not faults like a kernel would on a GPU (sticky CUDA_ERROR_ILLEGAL_ADDRESS).
#include <library_types.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "gemm.h"
#include "standin.h"

using namespace emu;

namespace {

enum Math { DEFAULT_MATH = 0, TF32_TENSOR_OP_MATH = 3 };
enum PointerMode { POINTER_HOST = 0, POINTER_DEVICE = 1 };

struct Handle {
    void* stream = nullptr;
    int math = DEFAULT_MATH;
    int pointer_mode = POINTER_HOST;
};

const int kIllegalAddress = 700;  // CUDA_ERROR_ILLEGAL_ADDRESS

// One GEMM call: op(A) m×k, op(B) k×n, C m×n, `batch` times.
struct Call {
    const char* api;
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
    bool arrays;  // a, b and c are arrays of `batch` pointers in device memory
    int compute;
    // Host scalars are read at the call; device ones (CUBLAS_POINTER_MODE_DEVICE) when it runs.
    double alpha, beta;
    const void *dalpha, *dbeta;
};

size_t scalar_size(int compute) { return compute == COMPUTE_64F ? 8 : 4; }

double scalar(const void* p, int compute) {
    if (compute == COMPUTE_64F) return *static_cast<const double*>(p);
    return *static_cast<const float*>(p);
}

// The checks cuBLAS makes before it launches anything.
int validate(const Call& g) {
    if (sticky()) return BLAS_EXECUTION_FAILED;
    if (g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0)
        return set_detail("%s: negative size m=%ld n=%ld k=%ld batch=%ld", g.api, g.m, g.n, g.k, g.batch),
               BLAS_INVALID_VALUE;
    if ((g.opa != OP_N && g.opa != OP_T) || (g.opb != OP_N && g.opb != OP_T))
        return set_detail("%s: transa=%d transb=%d (the stand-in has N and T)", g.api, g.opa, g.opb),
               BLAS_NOT_SUPPORTED;
    long lda_min = std::max(1L, g.opa == OP_N ? g.m : g.k);
    long ldb_min = std::max(1L, g.opb == OP_N ? g.k : g.n);
    long ldc_min = std::max(1L, g.m);
    if (g.lda < lda_min || g.ldb < ldb_min || g.ldc < ldc_min)
        return set_detail("%s: lda=%ld ldb=%ld ldc=%ld below their minimum %ld, %ld, %ld (m=%ld n=%ld k=%ld, "
                          "transa=%s transb=%s)",
                          g.api, g.lda, g.ldb, g.ldc, lda_min, ldb_min, ldc_min, g.m, g.n, g.k,
                          g.opa == OP_N ? "N" : "T", g.opb == OP_N ? "N" : "T"),
               BLAS_INVALID_VALUE;
    std::string types = g.atype != g.btype ? std::string("A ") + type_name(g.atype) + " and B " + type_name(g.btype) +
                                                 " differ"
                                           : check_types(g.atype, g.ctype, g.compute);
    if (!types.empty()) return set_detail("%s: %s", g.api, types.c_str()), BLAS_NOT_SUPPORTED;
    return BLAS_SUCCESS;
}

// The operands of batch `bi`.
void operands(const Call& g, long bi, const void** a, const void** b, void** c) {
    if (g.arrays) {
        *a = static_cast<const void* const*>(g.a)[bi];
        *b = static_cast<const void* const*>(g.b)[bi];
        *c = static_cast<void* const*>(g.c)[bi];
    } else {
        *a = static_cast<const char*>(g.a) + bi * g.sa * elem_size(g.atype);
        *b = static_cast<const char*>(g.b) + bi * g.sb * elem_size(g.btype);
        *c = static_cast<char*>(g.c) + bi * g.sc * elem_size(g.ctype);
    }
}

// Checks that the operands lie in device memory and, when `execute`, computes the GEMM. The
// pointers of an array batch are device memory that earlier work may write: they are read (and
// their matrices checked) only when it runs.
int run(const Call& g, bool execute) {
    if (sticky()) return sticky();
    if (g.m == 0 || g.n == 0 || g.batch == 0) return 0;
    std::string what = std::string(g.api) + " operand ";
    long ar = g.opa == OP_N ? g.m : g.k, ac = g.opa == OP_N ? g.k : g.m;
    long br = g.opb == OP_N ? g.k : g.n, bc = g.opb == OP_N ? g.n : g.k;
    auto in_memory = [&](const void* a, const void* b, const void* c, long stride_a, long stride_b, long stride_c,
                         long batch) {
        size_t fa = footprint(ar, ac, g.lda, stride_a, batch, g.atype);
        size_t fb = footprint(br, bc, g.ldb, stride_b, batch, g.btype);
        return (!fa || check_range((uint64_t)a, fa, (what + "A").c_str())) &&
               (!fb || check_range((uint64_t)b, fb, (what + "B").c_str())) &&
               check_range((uint64_t)c, footprint(g.m, g.n, g.ldc, stride_c, batch, g.ctype), (what + "C").c_str());
    };
    size_t ss = scalar_size(g.compute);
    bool ok = (!g.dalpha || (check_range((uint64_t)g.dalpha, ss, (std::string(g.api) + " alpha").c_str()) &&
                             check_range((uint64_t)g.dbeta, ss, (std::string(g.api) + " beta").c_str())));
    if (ok && g.arrays) {
        size_t bytes = g.batch * sizeof(void*);
        ok = check_range((uint64_t)g.a, bytes, (what + "array A").c_str()) &&
             check_range((uint64_t)g.b, bytes, (what + "array B").c_str()) &&
             check_range((uint64_t)g.c, bytes, (what + "array C").c_str());
        for (long bi = 0; ok && execute && bi < g.batch; ++bi) {
            const void *a, *b;
            void* c;
            operands(g, bi, &a, &b, &c);
            ok = in_memory(a, b, c, 0, 0, 0, 1);
        }
    } else if (ok) {
        ok = in_memory(g.a, g.b, g.c, g.sa, g.sb, g.sc, g.batch);
    }
    if (!ok) {
        set_sticky(kIllegalAddress);  // as the kernel would fault on a GPU
        return kIllegalAddress;
    }
    if (!execute) return 0;
    char key[64];
    snprintf(key, sizeof key, "%s/%s", compute_name(g.compute), type_name(g.atype));
    count_gemm(key, 2.0 * g.m * g.n * g.k * g.batch);
    double alpha = g.dalpha ? scalar(g.dalpha, g.compute) : g.alpha;
    double beta = g.dbeta ? scalar(g.dbeta, g.compute) : g.beta;
    for (long bi = 0; bi < g.batch; ++bi) {
        const void *a, *b;
        void* c;
        operands(g, bi, &a, &b, &c);
        multiply(Product{g.opa, g.opb, g.m, g.n, g.k, alpha, beta, rounding(g.compute), Matrix{a, g.atype, g.lda},
                         Matrix{b, g.btype, g.ldb}, Matrix{c, g.ctype, g.ldc}, Matrix{c, g.ctype, g.ldc}, nullptr, 0,
                         ACT_NONE});
    }
    return 0;
}

// Validates `g` and submits it to the handle's stream.
int gemm(const Handle* h, Call g, const void* alpha, const void* beta) {
    if (h->pointer_mode == POINTER_DEVICE) {
        g.dalpha = alpha;
        g.dbeta = beta;
    } else {
        g.alpha = scalar(alpha, g.compute);
        g.beta = scalar(beta, g.compute);
    }
    if (int s = validate(g)) return s;
    int r = submit(h->stream, g.api, [g](bool execute) { return run(g, execute); });
    return r ? BLAS_EXECUTION_FAILED : BLAS_SUCCESS;
}

}  // namespace

extern "C" {

int cublasCreate_v2(void** handle) {
    *handle = new Handle();
    return BLAS_SUCCESS;
}
int cublasDestroy_v2(void* handle) {
    delete static_cast<Handle*>(handle);
    return BLAS_SUCCESS;
}
int cublasSetStream_v2(void* handle, void* stream) {
    static_cast<Handle*>(handle)->stream = stream;
    return BLAS_SUCCESS;
}
int cublasGetStream_v2(void* handle, void** stream) {
    *stream = static_cast<Handle*>(handle)->stream;
    return BLAS_SUCCESS;
}
int cublasSetMathMode(void* handle, int mode) {
    static_cast<Handle*>(handle)->math = mode;
    return BLAS_SUCCESS;
}
int cublasGetMathMode(void* handle, int* mode) {
    *mode = static_cast<Handle*>(handle)->math;
    return BLAS_SUCCESS;
}
int cublasSetPointerMode_v2(void* handle, int mode) {
    static_cast<Handle*>(handle)->pointer_mode = mode;
    return BLAS_SUCCESS;
}
int cublasGetPointerMode_v2(void* handle, int* mode) {
    *mode = static_cast<Handle*>(handle)->pointer_mode;
    return BLAS_SUCCESS;
}
int cublasSetWorkspace_v2(void*, void*, size_t) { return BLAS_SUCCESS; }
int cublasGetVersion_v2(void*, int* v) {
    *v = 130000;
    return BLAS_SUCCESS;
}
const char* cublasGetStatusName(int s) {
    switch (s) {
        case BLAS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case BLAS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case BLAS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case BLAS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case BLAS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
        default: return "CUBLAS_STATUS_UNKNOWN";
    }
}
const char* cublasGetStatusString(int s) { return cublasGetStatusName(s); }

int cublasGemmStridedBatchedEx(void* handle, int transa, int transb, int m, int n, int k, const void* alpha,
                               const void* A, int atype, int lda, long long sa, const void* B, int btype, int ldb,
                               long long sb, const void* beta, void* C, int ctype, int ldc, long long sc, int batch,
                               int compute, int /*algo*/) {
    return gemm(static_cast<Handle*>(handle),
                Call{"cublasGemmStridedBatchedEx", transa, transb, m, n, k, A, atype, lda, sa, B, btype, ldb, sb, C,
                     ctype, ldc, sc, batch, false, compute, 0, 0, nullptr, nullptr},
                alpha, beta);
}

int cublasGemmEx(void* handle, int transa, int transb, int m, int n, int k, const void* alpha, const void* A,
                 int atype, int lda, const void* B, int btype, int ldb, const void* beta, void* C, int ctype, int ldc,
                 int compute, int /*algo*/) {
    return gemm(static_cast<Handle*>(handle),
                Call{"cublasGemmEx", transa, transb, m, n, k, A, atype, lda, 0, B, btype, ldb, 0, C, ctype, ldc, 0, 1,
                     false, compute, 0, 0, nullptr, nullptr},
                alpha, beta);
}

int cublasGemmBatchedEx(void* handle, int transa, int transb, int m, int n, int k, const void* alpha,
                        const void* const* A, int atype, int lda, const void* const* B, int btype, int ldb,
                        const void* beta, void* const* C, int ctype, int ldc, int batch, int compute, int /*algo*/) {
    return gemm(static_cast<Handle*>(handle),
                Call{"cublasGemmBatchedEx", transa, transb, m, n, k, A, atype, lda, 0, B, btype, ldb, 0, (void*)C,
                     ctype, ldc, 0, batch, true, compute, 0, 0, nullptr, nullptr},
                alpha, beta);
}

int cublasSgemmStridedBatched(void* handle, int transa, int transb, int m, int n, int k, const float* alpha,
                              const float* A, int lda, long long sa, const float* B, int ldb, long long sb,
                              const float* beta, float* C, int ldc, long long sc, int batch) {
    Handle* h = static_cast<Handle*>(handle);
    int compute = h->math == TF32_TENSOR_OP_MATH ? COMPUTE_32F_FAST_TF32 : COMPUTE_32F;
    return gemm(h,
                Call{"cublasSgemmStridedBatched", transa, transb, m, n, k, A, CUDA_R_32F, lda, sa, B, CUDA_R_32F, ldb,
                     sb, C, CUDA_R_32F, ldc, sc, batch, false, compute, 0, 0, nullptr, nullptr},
                alpha, beta);
}

int cublasSgemm_v2(void* handle, int transa, int transb, int m, int n, int k, const float* alpha, const float* A,
                   int lda, const float* B, int ldb, const float* beta, float* C, int ldc) {
    return cublasSgemmStridedBatched(handle, transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

}  // extern "C"
