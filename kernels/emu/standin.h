// Internals shared by the stand-in driver (driver.cpp), its cuBLAS and cuBLASLt (cublas.cpp,
// cublaslt.cpp, gemm.cpp), NVTX (nvtx.cpp) and the execution engine (engine.cpp). Nothing here
// is seen by the kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "cuda_emu.h"

namespace emu {

// One host-compiled kernel: its parameters as the C++ signature declares them, and a caller
// that unpacks cuLaunchKernel's argument array into them.
struct KernelEntry {
    const char* name;
    int nparams;
    const size_t* sizes;
    const bool* is_ptr;
    void* fn;
    void (*call)(void* fn, void** args);
};

void register_kernel(const KernelEntry& e);
const KernelEntry* find_kernel(const char* name);

template <class... A>
struct Caller {
    template <size_t... I>
    static void call_impl(void* fn, void** args, std::index_sequence<I...>) {
        reinterpret_cast<void (*)(A...)>(fn)(*static_cast<A*>(args[I])...);
    }
    static void call(void* fn, void** args) { call_impl(fn, args, std::index_sequence_for<A...>{}); }
    static constexpr size_t sizes[sizeof...(A) + 1] = {sizeof(A)..., 0};
    static constexpr bool is_ptr[sizeof...(A) + 1] = {std::is_pointer<A>::value..., false};
};

// Registers `f` under `name` when the stand-in library loads (see scripts/emulated-gpu.sh, which
// generates one `Registrar` per `extern "C" __global__` function).
struct Registrar {
    template <class... A>
    Registrar(const char* name, void (*f)(A...)) {
        register_kernel(KernelEntry{name, (int)sizeof...(A), Caller<A...>::sizes, Caller<A...>::is_ptr,
                                    reinterpret_cast<void*>(f), &Caller<A...>::call});
    }
};

// One launch, as the driver has checked it.
struct Launch {
    const KernelEntry* kernel;
    dim3 grid, block;
    size_t dyn_smem;       // bytes of dynamic shared memory
    size_t smem_limit;     // static + dynamic bytes the block may use
    bool syncs;            // the PTX has barriers or warp-synchronous instructions
    void** args;
};

// Runs every block of `l`; returns "" or what went wrong (a fault of the kernel).
std::string run(const Launch& l);

// Parallel for over [0, n) on the engine's worker threads (also used by the GEMMs).
void parallel_for(long n, void (*body)(long i, void* ctx), void* ctx);

// ---- the driver's state, for the libraries -------------------------------------------------
// Whether [p, p + bytes) lies inside one live allocation; otherwise sets the error detail.
bool check_range(uint64_t p, size_t bytes, const char* what);
void count_gemm(const char* compute, double flops);
void count_lt_matmul(const char* epilogue);
// A range pushed or started at `depth` ranges open (1 for the outermost).
void count_nvtx_range(const char* name, int depth);
void count_nvtx_mark();

// Work on a stream: checks its arguments and, when `execute`, does it. Returns a CUresult.
using Work = std::function<int(bool execute)>;
// Submits `work` to `stream`: runs it now, or, while the stream captures, checks it and records
// it into the capture, to run each time the graph is launched (an error then invalidates the
// capture, as in CUDA). `what` names it in messages ("kernel add_f32", "cublasLtMatmul").
int submit(void* stream, const char* what, Work work);
// Records a detailed error message (printed to stderr and kept for sitdiv_standin_last_error).
void set_detail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// Makes the context's error sticky, as a device fault does on a real GPU.
void set_sticky(int code);
int sticky();

// Guard pages: a fault address inside a guard, described (with the pointer parameters of `l`
// that point into the allocation); or "" when it is not ours.
std::string describe_fault_address(uint64_t addr, bool write, const Launch* l);

}  // namespace emu
