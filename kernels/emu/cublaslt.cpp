// A stand-in for cuBLASLt (libcublasLt.so): cublasLtMatmul and the descriptors it reads, computed
// by the GEMM core of gemm.h as NVIDIA documents it: D = epilogue(alpha·op(A)·op(B) + beta·C),
// where the epilogues with BIAS add one bias value per row of D (broadcast along the columns)
// before the activation. Matrices are column-major (CUBLASLT_ORDER_COL; other orders are
// refused), with strided batches; C may be D itself (in place, same layout) or another matrix of
// D's type and shape, whose leading dimension may then be 0 (a broadcast column). Types are
// cuBLAS's: A/B 32F with C/D 32F for every 32F compute type, A/B 16BF with C/D 16BF or 32F for
// CUBLAS_COMPUTE_32F; the scale type is 32F. A matmul is work on its stream, recorded while the
// stream captures; operands outside device memory fault (sticky CUDA_ERROR_ILLEGAL_ADDRESS).
#include <library_types.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "gemm.h"
#include "standin.h"

using namespace emu;

namespace {

// cublasLtMatmulDescAttributes_t, cublasLtMatrixLayoutAttribute_t,
// cublasLtMatmulPreferenceAttributes_t, cublasLtEpilogue_t, cublasLtOrder_t,
// cublasLtPointerMode_t (the values of CUDA 12 and 13 alike).
enum DescAttr {
    DESC_COMPUTE_TYPE = 0,
    DESC_SCALE_TYPE = 1,
    DESC_POINTER_MODE = 2,
    DESC_TRANSA = 3,
    DESC_TRANSB = 4,
    DESC_TRANSC = 5,
    DESC_EPILOGUE = 7,
    DESC_BIAS_POINTER = 8,
    DESC_BIAS_BATCH_STRIDE = 10,
    DESC_BIAS_DATA_TYPE = 26,
};
enum LayoutAttr {
    LAYOUT_TYPE = 0,
    LAYOUT_ORDER = 1,
    LAYOUT_ROWS = 2,
    LAYOUT_COLS = 3,
    LAYOUT_LD = 4,
    LAYOUT_BATCH_COUNT = 5,
    LAYOUT_STRIDED_BATCH_OFFSET = 6,
};
enum PrefAttr { PREF_MAX_WORKSPACE_BYTES = 1 };
enum Epilogue { EPI_DEFAULT = 1, EPI_RELU = 2, EPI_BIAS = 4, EPI_RELU_BIAS = 6, EPI_GELU = 32, EPI_GELU_BIAS = 36 };
enum Order { ORDER_COL = 0 };
enum LtPointerMode { LT_POINTER_HOST = 0, LT_POINTER_DEVICE = 1 };

const int kIllegalAddress = 700;  // CUDA_ERROR_ILLEGAL_ADDRESS
// Marks the algorithms cublasLtMatmulAlgoGetHeuristic returns ("SDLTALGO").
const uint64_t kAlgoMagic = 0x4f474c41544c4453ull;

struct Desc {
    int32_t compute, scale;
    int32_t pointer_mode = LT_POINTER_HOST;
    int32_t transa = OP_N, transb = OP_N, transc = OP_N;
    uint32_t epilogue = EPI_DEFAULT;
    const void* bias = nullptr;
    int64_t bias_stride = 0;  // one bias for every batch
    int32_t bias_type = -1;   // -1: D's type, the documented default
};

struct Layout {
    uint32_t type;
    uint64_t rows, cols;
    int64_t ld;
    int32_t order = ORDER_COL;
    int32_t batch = 1;
    int64_t stride = 0;
    bool operator==(const Layout& o) const {
        return type == o.type && rows == o.rows && cols == o.cols && ld == o.ld && order == o.order &&
               batch == o.batch && stride == o.stride;
    }
};

struct Pref {};

struct Algo {
    uint64_t data[8];
};

struct HeuristicResult {  // cublasLtMatmulHeuristicResult_t
    Algo algo;
    size_t workspace_size;
    int state;
    float waves;
    int reserved[4];
};

// Where attribute `attr` of `d` lives and its size, or null when the stand-in does not model it.
void* field(Desc& d, int attr, size_t* size) {
    switch (attr) {
        case DESC_COMPUTE_TYPE: *size = 4; return &d.compute;
        case DESC_SCALE_TYPE: *size = 4; return &d.scale;
        case DESC_POINTER_MODE: *size = 4; return &d.pointer_mode;
        case DESC_TRANSA: *size = 4; return &d.transa;
        case DESC_TRANSB: *size = 4; return &d.transb;
        case DESC_TRANSC: *size = 4; return &d.transc;
        case DESC_EPILOGUE: *size = 4; return &d.epilogue;
        case DESC_BIAS_POINTER: *size = sizeof(void*); return &d.bias;
        case DESC_BIAS_BATCH_STRIDE: *size = 8; return &d.bias_stride;
        case DESC_BIAS_DATA_TYPE: *size = 4; return &d.bias_type;
        default: return nullptr;
    }
}

const char* epilogue_name(uint32_t e) {
    switch (e) {
        case EPI_DEFAULT: return "DEFAULT";
        case EPI_RELU: return "RELU";
        case EPI_BIAS: return "BIAS";
        case EPI_RELU_BIAS: return "RELU_BIAS";
        case EPI_GELU: return "GELU";
        case EPI_GELU_BIAS: return "GELU_BIAS";
        default: return nullptr;
    }
}

bool has_bias(uint32_t e) { return e == EPI_BIAS || e == EPI_RELU_BIAS || e == EPI_GELU_BIAS; }

Act activation(uint32_t e) {
    return e == EPI_RELU || e == EPI_RELU_BIAS ? ACT_RELU : e == EPI_GELU || e == EPI_GELU_BIAS ? ACT_GELU : ACT_NONE;
}

// A matmul as its descriptors describe it, checked.
struct Problem {
    long m, n, k, batch;
    int bias_type;
};

std::string shape(const char* name, const Layout& l) {
    char buf[160];
    snprintf(buf, sizeof buf, "%s %llux%llu (ld %lld, %s, batch %d stride %lld)", name, (unsigned long long)l.rows,
             (unsigned long long)l.cols, (long long)l.ld, type_name(l.type), l.batch, (long long)l.stride);
    return buf;
}

// Checks what cublasLtMatmul and its heuristic check before anything runs; returns a status
// (the detail set) and fills `p`.
int check(const char* api, const Desc& d, const Layout& a, const Layout& b, const Layout& c, const Layout& dl,
          bool in_place, Problem* p) {
    const Layout* all[] = {&a, &b, &c, &dl};
    for (const Layout* l : all)
        if (l->order != ORDER_COL)
            return set_detail("%s: matrix order %d; the stand-in has CUBLASLT_ORDER_COL only", api, l->order),
                   BLAS_NOT_SUPPORTED;
    if (d.scale != CUDA_R_32F)
        return set_detail("%s: scale type %s; the stand-in has 32F", api, type_name(d.scale)), BLAS_NOT_SUPPORTED;
    if ((d.transa != OP_N && d.transa != OP_T) || (d.transb != OP_N && d.transb != OP_T))
        return set_detail("%s: transa=%d transb=%d (the stand-in has N and T)", api, d.transa, d.transb),
               BLAS_NOT_SUPPORTED;
    if (d.transc != OP_N)  // the documentation: only CUBLAS_OP_N is supported for C
        return set_detail("%s: transc=%d; C cannot be transposed", api, d.transc), BLAS_NOT_SUPPORTED;
    if (!epilogue_name(d.epilogue))
        return set_detail("%s: epilogue %u; the stand-in has DEFAULT, RELU, BIAS, RELU_BIAS, GELU and GELU_BIAS", api,
                          d.epilogue),
               BLAS_NOT_SUPPORTED;
    if (d.pointer_mode != LT_POINTER_HOST && d.pointer_mode != LT_POINTER_DEVICE)
        return set_detail("%s: pointer mode %d; the stand-in has HOST and DEVICE", api, d.pointer_mode),
               BLAS_NOT_SUPPORTED;
    long m = dl.rows, n = dl.cols;
    long k = d.transa == OP_N ? a.cols : a.rows;
    long am = d.transa == OP_N ? a.rows : a.cols;
    long bk = d.transb == OP_N ? b.rows : b.cols, bn = d.transb == OP_N ? b.cols : b.rows;
    std::string shapes = shape("A", a) + ", " + shape("B", b) + ", " + shape("C", c) + ", " + shape("D", dl) +
                         ", transa " + (d.transa == OP_N ? "N" : "T") + " transb " + (d.transb == OP_N ? "N" : "T");
    if (am != m || bk != k || bn != n || c.rows != dl.rows || c.cols != dl.cols)
        return set_detail("%s: op(A) must be m×k, op(B) k×n, C and D m×n: %s", api, shapes.c_str()),
               BLAS_INVALID_VALUE;
    bool lds = a.ld >= std::max<int64_t>(1, a.rows) && b.ld >= std::max<int64_t>(1, b.rows) &&
               dl.ld >= std::max<int64_t>(1, dl.rows) &&
               (c.ld >= std::max<int64_t>(1, c.rows) || (!in_place && c.ld == 0));
    if (!lds)
        return set_detail("%s: a leading dimension below its matrix's rows (only an out-of-place C may have 0): %s",
                          api, shapes.c_str()),
               BLAS_INVALID_VALUE;
    // The documentation does not say how unequal batch counts would combine: they must agree.
    if (a.batch < 1 || a.batch != b.batch || a.batch != c.batch || a.batch != dl.batch || a.stride < 0 ||
        b.stride < 0 || c.stride < 0 || dl.stride < 0)
        return set_detail("%s: batch counts must be equal and at least 1, strides non-negative (a stride of 0 reuses "
                          "one matrix): %s",
                          api, shapes.c_str()),
               BLAS_INVALID_VALUE;
    if (in_place && !(c == dl))
        return set_detail("%s: C is D but their layouts differ (in place needs Cdesc == Ddesc): %s", api,
                          shapes.c_str()),
               BLAS_INVALID_VALUE;
    if (c.type != dl.type)
        return set_detail("%s: C %s and D %s: C must have D's type", api, type_name(c.type), type_name(dl.type)),
               BLAS_INVALID_VALUE;
    std::string types = a.type != b.type ? std::string("A ") + type_name(a.type) + " and B " + type_name(b.type) +
                                               " differ"
                                         : check_types(a.type, dl.type, d.compute);
    if (!types.empty()) return set_detail("%s: %s", api, types.c_str()), BLAS_NOT_SUPPORTED;
    int bias_type = d.bias_type == -1 ? (int)dl.type : d.bias_type;
    if (has_bias(d.epilogue) && bias_type != CUDA_R_32F && bias_type != CUDA_R_16BF)
        return set_detail("%s: bias type %s; the stand-in has 32F and 16BF", api, type_name(bias_type)),
               BLAS_NOT_SUPPORTED;
    *p = Problem{m, n, k, a.batch, bias_type};
    return BLAS_SUCCESS;
}

// One cublasLtMatmul call, its descriptors copied: they may change or go once it returns.
struct Call {
    Desc d;
    Layout a, b, c, dl;
    Problem p;
    const void *pa, *pb, *pc;
    void* pd;
    double alpha, beta;          // host scalars, read at the call
    const float *dalpha, *dbeta;  // device scalars, read when it runs
};

const char* const kApi = "cublasLtMatmul";

// Bytes from the first to one past the last element of an operand (0 when empty).
size_t extent(const Layout& l) { return footprint(l.rows, l.cols, l.ld, l.stride, l.batch, l.type); }

// Checks that the operands lie in device memory and, when `execute`, computes the matmul.
int run(const Call& g, bool execute) {
    if (sticky()) return sticky();
    const Problem& p = g.p;
    if (p.m == 0 || p.n == 0) return 0;
    bool ok = !g.dalpha || (check_range((uint64_t)g.dalpha, 4, "cublasLtMatmul alpha") &&
                            check_range((uint64_t)g.dbeta, 4, "cublasLtMatmul beta"));
    double beta = g.dbeta && ok ? *g.dbeta : g.beta;
    auto in_memory = [&](const void* ptr, const Layout& l, const char* what) {
        return !extent(l) || check_range((uint64_t)ptr, extent(l), what);
    };
    ok = ok && in_memory(g.pa, g.a, "cublasLtMatmul operand A") && in_memory(g.pb, g.b, "cublasLtMatmul operand B") &&
         (beta == 0 || in_memory(g.pc, g.c, "cublasLtMatmul operand C")) &&
         in_memory(g.pd, g.dl, "cublasLtMatmul operand D");
    bool bias = has_bias(g.d.epilogue);
    if (ok && bias)
        ok = check_range((uint64_t)g.d.bias, footprint(p.m, 1, p.m, g.d.bias_stride, p.batch, p.bias_type),
                         "cublasLtMatmul bias");
    if (!ok) {
        set_sticky(kIllegalAddress);  // as the kernel would fault on a GPU
        return kIllegalAddress;
    }
    if (!execute) return 0;
    char key[64];
    snprintf(key, sizeof key, "%s/%s", compute_name(g.d.compute), type_name(g.a.type));
    count_gemm(key, 2.0 * p.m * p.n * p.k * p.batch);
    count_lt_matmul(epilogue_name(g.d.epilogue));
    double alpha = g.dalpha ? *g.dalpha : g.alpha;
    auto at = [](const void* base, long bi, int64_t stride, int type) {
        return static_cast<const char*>(base) + bi * stride * (long)elem_size(type);
    };
    for (long bi = 0; bi < p.batch; ++bi)
        multiply(Product{g.d.transa, g.d.transb, p.m, p.n, p.k, alpha, beta, rounding(g.d.compute),
                         Matrix{at(g.pa, bi, g.a.stride, g.a.type), (int)g.a.type, (long)g.a.ld},
                         Matrix{at(g.pb, bi, g.b.stride, g.b.type), (int)g.b.type, (long)g.b.ld},
                         Matrix{at(g.pc, bi, g.c.stride, g.c.type), (int)g.c.type, (long)g.c.ld},
                         Matrix{at(g.pd, bi, g.dl.stride, g.dl.type), (int)g.dl.type, (long)g.dl.ld},
                         bias ? at(g.d.bias, bi, g.d.bias_stride, p.bias_type) : nullptr, p.bias_type,
                         activation(g.d.epilogue)});
    return 0;
}

}  // namespace

extern "C" {

int cublasLtCreate(void** handle) {
    if (!handle) return set_detail("cublasLtCreate: null handle pointer"), BLAS_INVALID_VALUE;
    *handle = new int(0);
    return BLAS_SUCCESS;
}
int cublasLtDestroy(void* handle) {
    if (!handle) return BLAS_NOT_INITIALIZED;
    delete static_cast<int*>(handle);
    return BLAS_SUCCESS;
}
size_t cublasLtGetVersion() { return 130000; }

int cublasLtMatmulDescCreate(void** desc, int compute, int scale) {
    if (!desc) return set_detail("cublasLtMatmulDescCreate: null descriptor pointer"), BLAS_INVALID_VALUE;
    Desc* d = new Desc();
    d->compute = compute;
    d->scale = scale;
    *desc = d;
    return BLAS_SUCCESS;
}
int cublasLtMatmulDescDestroy(void* desc) {
    delete static_cast<Desc*>(desc);
    return BLAS_SUCCESS;
}
int cublasLtMatmulDescSetAttribute(void* desc, int attr, const void* buf, size_t bytes) {
    size_t size = 0;
    void* f = desc ? field(*static_cast<Desc*>(desc), attr, &size) : nullptr;
    if (desc && !f)
        return set_detail("cublasLtMatmulDescSetAttribute: the stand-in does not model attribute %d", attr),
               BLAS_NOT_SUPPORTED;
    if (!desc || !buf || bytes != size)
        return set_detail("cublasLtMatmulDescSetAttribute: attribute %d takes %zu bytes, got %zu%s", attr, size, bytes,
                          buf ? "" : " from a null buffer"),
               BLAS_INVALID_VALUE;
    memcpy(f, buf, size);
    return BLAS_SUCCESS;
}
// With `bytes` 0, tells in `written` the size the attribute needs, as documented.
int cublasLtMatmulDescGetAttribute(void* desc, int attr, void* buf, size_t bytes, size_t* written) {
    size_t size = 0;
    void* f = desc ? field(*static_cast<Desc*>(desc), attr, &size) : nullptr;
    if (desc && !f)
        return set_detail("cublasLtMatmulDescGetAttribute: the stand-in does not model attribute %d", attr),
               BLAS_NOT_SUPPORTED;
    if (!desc || (bytes == 0 && !written) || (bytes != 0 && !buf) || (bytes != 0 && bytes != size))
        return set_detail("cublasLtMatmulDescGetAttribute: attribute %d has %zu bytes, asked for %zu", attr, size,
                          bytes),
               BLAS_INVALID_VALUE;
    if (bytes == 0) {
        *written = size;
        return BLAS_SUCCESS;
    }
    memcpy(buf, f, size);
    if (written) *written = size;
    return BLAS_SUCCESS;
}

int cublasLtMatrixLayoutCreate(void** layout, int type, uint64_t rows, uint64_t cols, int64_t ld) {
    if (!layout) return set_detail("cublasLtMatrixLayoutCreate: null layout pointer"), BLAS_INVALID_VALUE;
    Layout* l = new Layout();
    l->type = type;
    l->rows = rows;
    l->cols = cols;
    l->ld = ld;
    *layout = l;
    return BLAS_SUCCESS;
}
int cublasLtMatrixLayoutDestroy(void* layout) {
    delete static_cast<Layout*>(layout);
    return BLAS_SUCCESS;
}
int cublasLtMatrixLayoutSetAttribute(void* layout, int attr, const void* buf, size_t bytes) {
    if (!layout || !buf)
        return set_detail("cublasLtMatrixLayoutSetAttribute: null layout or buffer"), BLAS_INVALID_VALUE;
    Layout& l = *static_cast<Layout*>(layout);
    void* f;
    size_t size;
    switch (attr) {
        case LAYOUT_TYPE: f = &l.type, size = 4; break;
        case LAYOUT_ORDER: f = &l.order, size = 4; break;
        case LAYOUT_ROWS: f = &l.rows, size = 8; break;
        case LAYOUT_COLS: f = &l.cols, size = 8; break;
        case LAYOUT_LD: f = &l.ld, size = 8; break;
        case LAYOUT_BATCH_COUNT: f = &l.batch, size = 4; break;
        case LAYOUT_STRIDED_BATCH_OFFSET: f = &l.stride, size = 8; break;
        default:
            return set_detail("cublasLtMatrixLayoutSetAttribute: the stand-in does not model attribute %d", attr),
                   BLAS_NOT_SUPPORTED;
    }
    if (bytes != size)
        return set_detail("cublasLtMatrixLayoutSetAttribute: attribute %d takes %zu bytes, got %zu", attr, size, bytes),
               BLAS_INVALID_VALUE;
    if (attr == LAYOUT_ORDER && *static_cast<const int32_t*>(buf) != ORDER_COL)
        return set_detail("cublasLtMatrixLayoutSetAttribute: order %d; the stand-in has CUBLASLT_ORDER_COL only",
                          *static_cast<const int32_t*>(buf)),
               BLAS_NOT_SUPPORTED;
    memcpy(f, buf, size);
    return BLAS_SUCCESS;
}

int cublasLtMatmulPreferenceCreate(void** pref) {
    if (!pref) return set_detail("cublasLtMatmulPreferenceCreate: null pointer"), BLAS_INVALID_VALUE;
    *pref = new Pref();
    return BLAS_SUCCESS;
}
int cublasLtMatmulPreferenceDestroy(void* pref) {
    delete static_cast<Pref*>(pref);
    return BLAS_SUCCESS;
}
int cublasLtMatmulPreferenceSetAttribute(void* pref, int attr, const void* buf, size_t bytes) {
    if (!pref || !buf)
        return set_detail("cublasLtMatmulPreferenceSetAttribute: null preference or buffer"), BLAS_INVALID_VALUE;
    if (attr != PREF_MAX_WORKSPACE_BYTES)
        return set_detail("cublasLtMatmulPreferenceSetAttribute: the stand-in does not model attribute %d", attr),
               BLAS_NOT_SUPPORTED;
    if (bytes != 8)
        return set_detail("cublasLtMatmulPreferenceSetAttribute: MAX_WORKSPACE_BYTES takes 8 bytes, got %zu", bytes),
               BLAS_INVALID_VALUE;
    return BLAS_SUCCESS;  // any limit will do: the stand-in's one algorithm needs no workspace
}

// One algorithm for every problem the stand-in computes, needing no workspace.
int cublasLtMatmulAlgoGetHeuristic(void* handle, void* desc, void* a, void* b, void* c, void* d, void* pref,
                                   int requested, HeuristicResult* results, int* count) {
    const char* api = "cublasLtMatmulAlgoGetHeuristic";
    if (!handle) return BLAS_NOT_INITIALIZED;
    if (!desc || !a || !b || !c || !d || !pref || !results || !count)
        return set_detail("%s: a null descriptor, preference or result pointer", api), BLAS_INVALID_VALUE;
    *count = 0;
    if (requested <= 0) return set_detail("%s: %d algorithms requested", api, requested), BLAS_INVALID_VALUE;
    Problem p;
    const Desc& dd = *static_cast<Desc*>(desc);
    if (int s = check(api, dd, *static_cast<Layout*>(a), *static_cast<Layout*>(b), *static_cast<Layout*>(c),
                      *static_cast<Layout*>(d), c == d, &p))
        return s;
    memset(&results[0], 0, sizeof(HeuristicResult));
    results[0].algo.data[0] = kAlgoMagic;
    results[0].state = BLAS_SUCCESS;
    results[0].waves = 1.0f;
    *count = 1;
    return BLAS_SUCCESS;
}

int cublasLtMatmul(void* handle, void* desc, const void* alpha, const void* A, void* adesc, const void* B, void* bdesc,
                   const void* beta, const void* C, void* cdesc, void* D, void* ddesc, const Algo* algo, void*,
                   size_t, void* stream) {
    if (sticky()) return BLAS_EXECUTION_FAILED;
    if (!handle) return BLAS_NOT_INITIALIZED;
    if (!desc || !adesc || !bdesc || !cdesc || !ddesc || !alpha || !beta)
        return set_detail("%s: a null descriptor or scalar (the stand-in needs every layout)", kApi),
               BLAS_INVALID_VALUE;
    if (algo && algo->data[0] != kAlgoMagic)
        return set_detail("%s: the algorithm did not come from cublasLtMatmulAlgoGetHeuristic", kApi),
               BLAS_INVALID_VALUE;
    Call g{*static_cast<Desc*>(desc), *static_cast<Layout*>(adesc), *static_cast<Layout*>(bdesc),
           *static_cast<Layout*>(cdesc), *static_cast<Layout*>(ddesc), {}, A, B, C, D, 0, 0, nullptr, nullptr};
    bool in_place = C == D;
    if (int s = check(kApi, g.d, g.a, g.b, g.c, g.dl, in_place, &g.p)) return s;
    if (has_bias(g.d.epilogue) && !g.d.bias)
        return set_detail("%s: epilogue %s without CUBLASLT_MATMUL_DESC_BIAS_POINTER", kApi,
                          epilogue_name(g.d.epilogue)),
               BLAS_INVALID_VALUE;
    if (g.d.pointer_mode == LT_POINTER_DEVICE) {
        g.dalpha = static_cast<const float*>(alpha);
        g.dbeta = static_cast<const float*>(beta);
    } else {
        g.alpha = *static_cast<const float*>(alpha);
        g.beta = *static_cast<const float*>(beta);
    }
    // A C that overlaps D without being it would be read while D is written: undefined on a GPU.
    uint64_t c0 = (uint64_t)C, d0 = (uint64_t)D;
    size_t ce = extent(g.c), de = extent(g.dl);
    if (!in_place && (g.dbeta || g.beta != 0) && ce && de && c0 < d0 + de && d0 < c0 + ce)
        return set_detail("%s: C (%zu bytes at 0x%llx) overlaps D (%zu bytes at 0x%llx) without being it", kApi, ce,
                          (unsigned long long)c0, de, (unsigned long long)d0),
               BLAS_INVALID_VALUE;
    int r = submit(stream, kApi, [g](bool execute) { return run(g, execute); });
    return r ? BLAS_EXECUTION_FAILED : BLAS_SUCCESS;
}

}  // extern "C"
