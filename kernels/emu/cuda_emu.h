// The CUDA built-ins our kernels use, for the host C++ compiler: kernels/*.cu compile unchanged
// against this header (`g++ -x c++ -include kernels/emu/cuda_emu.h`) and run in the stand-in
// driver (kernels/emu/driver.cpp) on the CPU. What it models, and checks:
// - one execution context per CUDA thread; `__syncthreads()` is a barrier over every thread of
//   the block, `__syncwarp` and the shuffles over the lanes of a warp;
// - shared memory per block, poisoned with NaN at block start, bounds-checked, and watched for
//   races: two threads touching one element between the same two barriers, at least one of them
//   writing, fail the launch naming the variable, the element and both threads; a read of an
//   element no thread wrote fails at the next barrier (or the block's end) unless a write by
//   another thread before it shows a race;
// - global memory is host memory with a guard page after each allocation (driver.cpp).
// Fast-math intrinsics (`__expf`, `__fdividef`, ...) are deliberately absent: kernels are strict fp32.
#pragma once

#include <math.h>
#include <cstddef>
#include <cstdint>
#include <cstring>

#define SITDIV_EMULATED 1

// CUDA's own half-precision types compile for the host (headers of the pinned wheels); they also
// bring uint3 and dim3. Without the headers, the types are ours and there is no fp16/bf16.
#if __has_include(<cuda_bf16.h>)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#else
struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
};
#endif

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __noinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#undef __shared__
// Shared memory goes through SITDIV_SHARED / SITDIV_DYN_SMEM (kernels/common.cuh) so that the
// emulator can give each block its own, poisoned and watched; a bare `__shared__` does not compile.
#define __shared__ static_assert(false, "declare shared memory with SITDIV_SHARED or SITDIV_DYN_SMEM");

namespace emu {

struct Shared;  // the running block's shared memory (engine.cpp)

// The running CUDA thread, set by the engine at every switch between threads.
struct ThreadState {
    uint3 thread_idx;
    uint3 block_idx;
    uint3 block_dim;
    uint3 grid_dim;
    int tid;  // linear thread index within the block
};
// `__thread` (plain data, no initialiser) rather than `thread_local`: every access is then a
// direct TLS load, not a call through the initialisation wrapper.
extern __thread ThreadState cur;

// Fails the running launch with `msg` (printf-style); never returns.
[[noreturn]] void fault(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

void syncthreads();
void syncwarp(unsigned mask);
// Exchanges one 8-byte value among the lanes of `mask`: returns the value lane `src` passed.
uint64_t shuffle(unsigned mask, uint64_t v, int src);
unsigned ballot(unsigned mask, bool pred);

// Race bookkeeping of one shared element.
struct Meta {
    int32_t writer;
    uint32_t wgen;
    uint32_t wwarp;
    int32_t reader;
    uint32_t rgen;
    uint32_t rwarp;
    int32_t multi;
};
void on_read(Meta* m, const char* name, long i);
void on_write(Meta* m, const char* name, long i);

// The region of shared memory behind one declaration: `n` elements of `size` bytes.
struct Region {
    void* data;
    Meta* meta;
    long n;
    const char* name;
};
Region static_smem(const void* site, size_t size, long n, const char* name);
Region dynamic_smem(size_t size, const char* name);

template <class T>
struct smem_ref {
    T* p;
    Meta* m;
    const char* name;
    long i;
    operator T() const {
        on_read(m, name, i);
        return *p;
    }
    smem_ref& operator=(T v) {
        on_write(m, name, i);
        *p = v;
        return *this;
    }
    smem_ref& operator=(const smem_ref& o) { return *this = static_cast<T>(o); }
    smem_ref& operator+=(T v) { return *this = static_cast<T>(*this) + v; }
    smem_ref& operator-=(T v) { return *this = static_cast<T>(*this) - v; }
    smem_ref& operator*=(T v) { return *this = static_cast<T>(*this) * v; }
    smem_ref& operator/=(T v) { return *this = static_cast<T>(*this) / v; }
};

// A pointer into shared memory: indexing is bounds-checked and every access is recorded.
template <class T>
struct smem_ptr {
    Region r;
    long off;
    smem_ref<T> operator[](long i) const {
        long j = off + i;
        if (j < 0 || j >= r.n)
            fault("shared memory '%s': index %ld outside its %ld elements (thread %d)", r.name, j, r.n, cur.tid);
        return smem_ref<T>{static_cast<T*>(r.data) + j, r.meta + j, r.name, j};
    }
    smem_ref<T> operator*() const { return (*this)[0]; }
    smem_ptr operator+(long i) const { return smem_ptr{r, off + i}; }
    smem_ptr operator-(long i) const { return smem_ptr{r, off - i}; }
};

}  // namespace emu

#define threadIdx (::emu::cur.thread_idx)
#define blockIdx (::emu::cur.block_idx)
#define blockDim (::emu::cur.block_dim)
#define gridDim (::emu::cur.grid_dim)
constexpr int warpSize = 32;

template <class T>
using smem_ptr = ::emu::smem_ptr<T>;
#define SITDIV_SHARED(T, name, n) \
    ::emu::smem_ptr<T> name{::emu::static_smem(__FILE__ ":" #name, sizeof(T), (n), #name), 0}
#define SITDIV_DYN_SMEM(T, name) ::emu::smem_ptr<T> name{::emu::dynamic_smem(sizeof(T), #name), 0}

inline void __syncthreads() { ::emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::emu::syncwarp(mask); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

template <class T>
inline T emu_shfl(unsigned mask, T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffles move 4- or 8-byte values");
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    bits = ::emu::shuffle(mask, bits, src);
    T r;
    std::memcpy(&r, &bits, sizeof(T));
    return r;
}
// `width` splits the warp into segments as CUDA does; lanes outside a segment read their own value.
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    int lane = ::emu::cur.tid & 31, base = lane & ~(width - 1);
    return emu_shfl(mask, v, base + (src & (width - 1)));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    int lane = ::emu::cur.tid & 31, src = lane ^ lane_mask;
    if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
    return emu_shfl(mask, v, src);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = ::emu::cur.tid & 31, src = lane + (int)delta;
    if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
    return emu_shfl(mask, v, src);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = ::emu::cur.tid & 31, src = lane - (int)delta;
    if (src < 0 || (src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
    return emu_shfl(mask, v, src);
}
inline unsigned __ballot_sync(unsigned mask, int pred) { return ::emu::ballot(mask, pred != 0); }
inline int __any_sync(unsigned mask, int pred) { return ::emu::ballot(mask, pred != 0) != 0; }
inline int __all_sync(unsigned mask, int pred) { return (::emu::ballot(mask, pred != 0) & mask) == mask; }

// Atomics on global memory: blocks run on several host threads at once.
inline float atomicAdd(float* p, float v) {
    float old, upd;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    do {
        upd = old + v;
    } while (!__atomic_compare_exchange(p, &old, &upd, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    return old;
}
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline int atomicMax(int* p, int v) {
    int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
    }
    return old;
}
inline int atomicMin(int* p, int v) {
    int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old > v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
    }
    return old;
}
inline int atomicExch(int* p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
inline int atomicCAS(int* p, int cmp, int v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}

// Device math of the CUDA math API that the C library lacks. rsqrtf is correctly rounded here
// (the device's is within 2 ulp), so op tests compare with a tolerance, never bit for bit.
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __int_as_float(int v) {
    float f;
    std::memcpy(&f, &v, 4);
    return f;
}
inline unsigned __float_as_uint(float v) {
    unsigned u;
    std::memcpy(&u, &v, 4);
    return u;
}
inline float __uint_as_float(unsigned v) {
    float f;
    std::memcpy(&f, &v, 4);
    return f;
}
inline int __float_as_int(float v) {
    int i;
    std::memcpy(&i, &v, 4);
    return i;
}
template <class T>
inline T __ldg(const T* p) {
    return *p;
}
