// The GEMM core of the stand-in cuBLAS (cublas.cpp) and cuBLASLt (cublaslt.cpp): one matrix
// product computed naively as NVIDIA documents it (column-major, op(A) m×k times op(B) k×n,
// leading dimensions, alpha and beta with beta = 0 never reading C), with the rounding the
// compute type allows: TF32 inputs keep 10 mantissa bits (cvt.rna.tf32.f32: nearest, ties away),
// bf16 inputs 7 (nearest, ties to even). Products accumulate in f64, so the only error left is
// the inputs' rounding and the final one, to D's type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace emu {

enum Status {  // cublasStatus_t
    BLAS_SUCCESS = 0,
    BLAS_NOT_INITIALIZED = 1,
    BLAS_INVALID_VALUE = 7,
    BLAS_EXECUTION_FAILED = 13,
    BLAS_NOT_SUPPORTED = 15,
};
enum Op { OP_N = 0, OP_T = 1, OP_C = 2 };
enum Compute {  // cublasComputeType_t
    COMPUTE_16F = 64,
    COMPUTE_32F = 68,
    COMPUTE_32F_PEDANTIC = 69,
    COMPUTE_64F = 70,
    COMPUTE_32F_FAST_16F = 74,
    COMPUTE_32F_FAST_16BF = 75,
    COMPUTE_32F_FAST_TF32 = 77,
};
enum Round { EXACT, TF32, BF16 };
enum Act { ACT_NONE, ACT_RELU, ACT_GELU };

Round rounding(int compute);
size_t elem_size(int type);
const char* type_name(int type);
const char* compute_name(int compute);
// Whether cuBLAS computes inputs of `ab` into outputs of `cd` with `compute` (the table of
// cublasGemmEx, which cublasLtMatmul shares for these types); "" or why not.
std::string check_types(int ab, int cd, int compute);
// Bytes from the first to one past the last element of `batch` column-major matrices.
size_t footprint(long rows, long cols, long ld, long stride, long batch, int type);

// A column-major matrix of one batch.
struct Matrix {
    const void* p;
    int type;
    long ld;
};

// One product D = act(alpha·op(A)·op(B) + beta·C + bias), bias holding one value per row.
struct Product {
    int opa, opb;
    long m, n, k;
    double alpha, beta;
    Round round;
    Matrix a, b, c, d;  // c is read only when beta != 0; d may be c
    const void* bias;   // null: no bias
    int bias_type;
    Act act;
};

// Computes `p` on the stand-in's worker threads; its operands have been checked.
void multiply(const Product& p);

}  // namespace emu
