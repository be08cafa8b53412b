// A stand-in for the CUDA driver (libcuda.so.1), enough of it for cudarc and sitdiv: device
// memory is host memory, modules are our PTX (parsed for `.entry` names, `.param` lists, shared
// memory and barriers) bound to the same kernels compiled for the host, and launches run in
// engine.cpp. It checks what a GPU checks and what a GPU would only show as corrupt results:
// - launch limits of the emulated architecture (threads per block, grid y/z, dynamic shared
//   memory with and without the opt-in attribute), PTX ISA version against the driver version;
// - every copy and memset inside one allocation; pointer arguments inside live allocations;
// - out-of-bounds accesses: a guard page follows each allocation (rounded up to 256 bytes), and
//   that slack and the 256 bytes before it hold a NaN canary checked after every launch;
// - stream capture as the CUDA Programming Guide describes it ("Prohibited and Unhandled
//   Operations"): work on a capturing stream is recorded, not run, and replayed by cuGraphLaunch;
//   synchronisation, potentially unsafe calls and pageable copies fail and invalidate the capture.
// Work runs when it is submitted (one stream of execution), so streams never overlap.
// It counts launches, allocations, copies, host synchronisations, graphs, page-locked memory,
// NVTX ranges and (cublas.cpp, cublaslt.cpp) GEMMs by compute type; `SITDIV_STANDIN_COUNTS=FILE`
// writes them as JSON at exit.
//
// Settings: SITDIV_STANDIN_SM (80 or 90, default 90), SITDIV_STANDIN_DRIVER (e.g. 12040,
// default 13000), SITDIV_STANDIN_THREADS (host threads for blocks and GEMMs).
#include <cuda.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "standin.h"

namespace emu {
namespace {

const size_t kPage = 4096;
const size_t kAlign = 256;      // cuMemAlloc's alignment
const size_t kFront = 256;      // canary bytes checked before each allocation
// The canary is NaN (0xff bytes): a read in the slack of an allocation, which no guard page
// catches, yields NaN and shows in the results; a write there is found after the launch.
const unsigned char kCanary = 0xff;

struct Alloc {
    uint64_t start;
    size_t size;
    size_t span;  // size rounded up to kAlign: the guard page starts at start + span
    char* map;
    size_t map_len;
    long id;
};

struct Param {
    size_t offset, size;
};

struct Function {
    std::string name;
    std::vector<Param> params;
    size_t static_smem = 0;
    bool syncs = false;
    int max_dyn = -1;  // the opt-in attribute, when set
    const KernelEntry* host = nullptr;
};

struct Module {
    std::vector<Function*> functions;
};

struct Counts {
    long launches = 0, allocs = 0, frees = 0, htod = 0, dtoh = 0, dtod = 0, memsets = 0;
    long stream_syncs = 0, ctx_syncs = 0, event_syncs = 0, events = 0, event_records = 0, stream_waits = 0;
    long gemms = 0, lt_matmuls = 0;
    long captures = 0, captured_nodes = 0, graph_launches = 0, graph_nodes_replayed = 0;
    long pinned_allocs = 0, pinned_registrations = 0;
    long nvtx_ranges = 0, nvtx_marks = 0, nvtx_max_depth = 0;
    double htod_bytes = 0, dtoh_bytes = 0, dtod_bytes = 0, alloc_bytes = 0, gemm_flops = 0;
    size_t live_bytes = 0, peak_bytes = 0;
    std::map<std::string, long> by_kernel;
    std::map<std::string, long> gemm_by_compute;
    std::map<std::string, long> epilogues;
    std::map<std::string, long> nvtx_by_name;
};

// One recorded operation of a capture or graph.
struct Node {
    std::string what;
    Work work;
};

struct Capture {
    long id;
    CUstream stream;
    CUstreamCaptureMode mode;
    std::thread::id thread;
    bool invalid = false;
    std::string why;  // what invalidated it
    std::vector<Node> nodes;
};

// A graph and an executable graph alike: the nodes in capture order (one stream, so that order
// is a valid one to run them in).
struct Graph {
    std::shared_ptr<const std::vector<Node>> nodes;
};

struct Event {
    bool recorded = false;
    long capture = 0;  // the capture that recorded it last, or 0
};

// Page-locked host memory: from cuMemHostAlloc (`map_len` bytes mapped) or cuMemHostRegister.
struct Pinned {
    size_t size;
    size_t map_len;  // 0 when registered
};

struct State {
    std::mutex m;
    std::map<uint64_t, Alloc> allocs;  // by start
    long next_id = 1;
    Counts c;
    int sticky = 0;
    bool init = false;
    std::map<int, const char*> detail;  // the last detailed message per error code (leaked: cudarc keeps them)
    std::map<CUstream, Capture> captures;
    long next_capture = 1;
    std::map<CUevent, Event> events;
    std::map<uint64_t, Pinned> pinned;  // by start
};

State& S() {
    static State* s = new State();
    return *s;
}

int env_int(const char* name, int dflt) {
    const char* v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

int sm() { return env_int("SITDIV_STANDIN_SM", 90); }
int driver_version() { return env_int("SITDIV_STANDIN_DRIVER", 13000); }

// Shared memory a block may opt in to, per architecture (CUDA C++ Programming Guide, table 21).
size_t smem_optin() { return sm() >= 90 ? 232448 : sm() >= 80 ? 166912 : 49152; }
const size_t kSmemDefault = 49152;

// The newest PTX ISA a driver of version `v` loads (PTX ISA release notes).
int max_ptx(int v) {
    int major = v / 1000, minor = (v % 1000) / 10;
    if (major >= 13) return 90 + minor;
    if (major == 12) {
        static const int isa[] = {80, 81, 82, 83, 84, 85, 85, 86, 87, 88};
        return isa[minor < 10 ? minor : 9];
    }
    return 78;
}

const char* describe(CUresult r) {
    switch (r) {
        case CUDA_SUCCESS: return "no error";
        case CUDA_ERROR_INVALID_VALUE: return "invalid argument";
        case CUDA_ERROR_OUT_OF_MEMORY: return "out of memory";
        case CUDA_ERROR_NOT_INITIALIZED: return "initialization error";
        case CUDA_ERROR_INVALID_DEVICE: return "invalid device ordinal";
        case CUDA_ERROR_INVALID_PTX: return "a PTX JIT compilation failed";
        case CUDA_ERROR_UNSUPPORTED_PTX_VERSION: return "the provided PTX was compiled with an unsupported toolchain.";
        case CUDA_ERROR_NO_BINARY_FOR_GPU: return "no kernel image is available for execution on the device";
        case CUDA_ERROR_NOT_FOUND: return "named symbol not found";
        case CUDA_ERROR_INVALID_HANDLE: return "invalid resource handle";
        case CUDA_ERROR_ILLEGAL_ADDRESS: return "an illegal memory access was encountered";
        case CUDA_ERROR_LAUNCH_FAILED: return "unspecified launch failure";
        case CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: return "too many resources requested for launch";
        case CUDA_ERROR_NOT_SUPPORTED: return "operation not supported";
        case CUDA_ERROR_INVALID_CONTEXT: return "invalid device context";
        case CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED:
            return "part or all of the requested memory range is already mapped";
        case CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED: return "pointer does not correspond to a registered memory region";
        case CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: return "operation not permitted when stream is capturing";
        case CUDA_ERROR_STREAM_CAPTURE_INVALIDATED: return "operation failed due to a previous error during capture";
        case CUDA_ERROR_STREAM_CAPTURE_MERGE: return "operation would result in a merge of separate capture sequences";
        case CUDA_ERROR_STREAM_CAPTURE_ISOLATION: return "dependency created on uncaptured work in another stream";
        case CUDA_ERROR_CAPTURED_EVENT:
            return "operation not permitted on an event last recorded in a capturing stream";
        case CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD:
            return "attempt to terminate a thread-local capture sequence from another thread";
        default: return "unknown error";
    }
}

const char* code_name(CUresult r) {
    switch (r) {
#define N(x) \
    case x: return #x;
        N(CUDA_SUCCESS) N(CUDA_ERROR_INVALID_VALUE) N(CUDA_ERROR_OUT_OF_MEMORY) N(CUDA_ERROR_NOT_INITIALIZED)
        N(CUDA_ERROR_INVALID_DEVICE) N(CUDA_ERROR_INVALID_PTX) N(CUDA_ERROR_UNSUPPORTED_PTX_VERSION)
        N(CUDA_ERROR_NO_BINARY_FOR_GPU) N(CUDA_ERROR_NOT_FOUND) N(CUDA_ERROR_INVALID_HANDLE)
        N(CUDA_ERROR_ILLEGAL_ADDRESS) N(CUDA_ERROR_LAUNCH_FAILED) N(CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES)
        N(CUDA_ERROR_NOT_SUPPORTED) N(CUDA_ERROR_INVALID_CONTEXT) N(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED)
        N(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED) N(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED)
        N(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED) N(CUDA_ERROR_STREAM_CAPTURE_MERGE)
        N(CUDA_ERROR_STREAM_CAPTURE_ISOLATION) N(CUDA_ERROR_CAPTURED_EVENT) N(CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD)
#undef N
        default: return "CUDA_ERROR_UNKNOWN";
    }
}

// Fails with `code`, keeping `fmt` as the detail cuGetErrorString adds to the code's text.
CUresult fail(CUresult code, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
CUresult fail(CUresult code, const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    set_detail("%s", buf);
    std::string full = std::string(describe(code)) + " [stand-in: " + buf + "]";
    std::lock_guard<std::mutex> g(S().m);
    S().detail[code] = strdup(full.c_str());
    return code;
}

std::string last_detail;

const Alloc* find_alloc(uint64_t p) {
    auto& a = S().allocs;
    auto it = a.upper_bound(p);
    if (it == a.begin()) return nullptr;
    --it;
    return p < it->second.start + it->second.span + kPage ? &it->second : nullptr;
}

bool inside(uint64_t p, size_t bytes) {
    const Alloc* a = find_alloc(p);
    return a && p >= a->start && p + bytes <= a->start + a->size;
}

std::string where(uint64_t p) {
    char buf[200];
    const Alloc* a = find_alloc(p);
    if (!a) {
        snprintf(buf, sizeof buf, "0x%llx lies in no allocation", (unsigned long long)p);
    } else {
        snprintf(buf, sizeof buf, "allocation #%ld holds %zu bytes from 0x%llx", a->id, a->size,
                 (unsigned long long)a->start);
    }
    return buf;
}

// "allocation #3 (40 bytes at 0x...)": how messages name an allocation.
std::string alloc_name(const Alloc& a) {
    char buf[96];
    snprintf(buf, sizeof buf, "allocation #%ld (%zu bytes at 0x%llx)", a.id, a.size, (unsigned long long)a.start);
    return buf;
}

// Which pointer parameters of launch `l` point into `a` ("" without a launch): names the
// buffer a fault hit in the kernel's own terms.
std::string params_into(const Alloc& a, const Launch* l) {
    if (!l) return "";
    std::string list;
    int count = 0;
    for (int i = 0; i < l->kernel->nparams; ++i) {
        if (!l->kernel->is_ptr[i]) continue;
        uint64_t p;
        memcpy(&p, l->args[i], 8);
        if (p < a.start || p > a.start + a.size) continue;
        list += (count ? ", " : "") + std::to_string(i);
        count++;
    }
    if (!count) return "; no pointer parameter of the kernel points into it";
    return std::string("; kernel parameter") + (count > 1 ? "s " : " ") + list + (count > 1 ? " point" : " points") +
           " into it";
}

// The canaries around `a`; when one changed, `what` says where, as byte offsets from its start.
bool canaries_intact(const Alloc& a, std::string* what, const Launch* l = nullptr) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(a.start);
    long first = -1, last = -1;
    for (size_t i = a.size; i < a.span; ++i)
        if (p[i] != kCanary) {
            if (first < 0) first = (long)i;
            last = (long)i;
        }
    if (first >= 0) {
        if (what)
            *what = "wrote past the end of " + alloc_name(a) + ": the bytes at offsets " + std::to_string(first) +
                    " to " + std::to_string(last) + " changed (found after the launch)" + params_into(a, l);
        return false;
    }
    size_t front = std::min(kFront, (size_t)(a.start - (uint64_t)a.map - kPage));
    for (size_t i = 1; i <= front; ++i)
        if (p[-(long)i] != kCanary) {
            if (first < 0) first = -(long)i;
            last = -(long)i;
        }
    if (first >= 0) {
        if (what)
            *what = "wrote before the start of " + alloc_name(a) + ": the bytes at offsets " + std::to_string(last) +
                    " to " + std::to_string(first) + " changed (found after the launch)" + params_into(a, l);
        return false;
    }
    return true;
}

CUresult check_sticky() {
    int s = S().sticky;
    return s ? (CUresult)s : CUDA_SUCCESS;
}

#define STICKY()                          \
    do {                                  \
        if (CUresult r_ = check_sticky()) \
            return r_;                    \
    } while (0)

// ---- stream capture ----------------------------------------------------------------------------

const char* mode_name(CUstreamCaptureMode m) {
    switch (m) {
        case CU_STREAM_CAPTURE_MODE_GLOBAL: return "CU_STREAM_CAPTURE_MODE_GLOBAL";
        case CU_STREAM_CAPTURE_MODE_THREAD_LOCAL: return "CU_STREAM_CAPTURE_MODE_THREAD_LOCAL";
        default: return "CU_STREAM_CAPTURE_MODE_RELAXED";
    }
}

// The capture `s` is in, or null (S().m held).
Capture* capture_of(CUstream s) {
    auto it = S().captures.find(s);
    return it == S().captures.end() ? nullptr : &it->second;
}

// Marks `c` invalidated by the error just reported (S().m held): CUDA invalidates a capture
// sequence at any error in it and refuses its further work until cuStreamEndCapture.
void invalidate(Capture& c) {
    if (c.invalid) return;
    c.invalid = true;
    c.why = last_detail;
}

// Returns `r`, having invalidated the capture of `s` (if any) for it.
CUresult invalidating(CUstream s, CUresult r) {
    std::lock_guard<std::mutex> g(S().m);
    if (Capture* c = capture_of(s)) invalidate(*c);
    return r;
}

// Work submitted to a capture that an error invalidated.
CUresult refuse_invalidated(CUstream s, const char* what, const std::string& why) {
    return fail(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,
                "%s on stream %p: its capture was invalidated by an earlier error (%s); end it with "
                "cuStreamEndCapture",
                what, (void*)s, why.c_str());
}

// Fails `api` on stream `s` while it captures (0 when it does not), invalidating the capture.
CUresult refuse_on_capture(CUstream s, const char* api, const char* why) {
    std::unique_lock<std::mutex> g(S().m);
    Capture* c = capture_of(s);
    if (!c) return CUDA_SUCCESS;
    bool invalid = c->invalid;
    std::string earlier = c->why;
    g.unlock();
    if (invalid) return refuse_invalidated(s, api, earlier);
    fail(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "%s on stream %p, which captures: %s; the capture is invalidated", api,
         (void*)s, why);
    return invalidating(s, CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
}

// The captures that forbid this thread potentially unsafe calls (S().m held): its own not begun
// in RELAXED mode and GLOBAL ones of other threads, as cuThreadExchangeStreamCaptureMode
// describes them for a thread in the default mode (GLOBAL).
std::vector<Capture*> restricting() {
    std::vector<Capture*> out;
    for (auto& [s, c] : S().captures) {
        bool mine = c.thread == std::this_thread::get_id();
        if ((mine && c.mode != CU_STREAM_CAPTURE_MODE_RELAXED) || (!mine && c.mode == CU_STREAM_CAPTURE_MODE_GLOBAL))
            out.push_back(&c);
    }
    return out;
}

// Fails `api`, a potentially unsafe call (allocation, synchronous copy, synchronisation), while
// a capture forbids it, invalidating that capture; 0 when none does.
CUresult unsafe_during_capture(const char* api) {
    std::unique_lock<std::mutex> g(S().m);
    auto cs = restricting();
    if (cs.empty()) return CUDA_SUCCESS;
    CUstream s = cs[0]->stream;
    CUstreamCaptureMode mode = cs[0]->mode;
    g.unlock();
    fail(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
         "%s while stream %p captures (%s): CUDA forbids potentially unsafe calls during a capture and invalidates "
         "it; allocate, free, copy from pageable memory and synchronise before cuStreamBeginCapture or after "
         "cuStreamEndCapture",
         api, (void*)s, mode_name(mode));
    g.lock();
    for (Capture* c : restricting()) invalidate(*c);
    return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
}

// The live capture with id `id`, or null (S().m held).
Capture* capture_by_id(long id) {
    for (auto& [s, c] : S().captures)
        if (c.id == id) return &c;
    return nullptr;
}

// Whether the host may wait for event `e` or query it now: not while it stands for work a
// capture recorded (CUDA_ERROR_CAPTURED_EVENT), nor while a capture forbids potentially unsafe
// calls; either invalidates that capture.
CUresult event_wait_allowed(CUevent e, const char* api) {
    std::unique_lock<std::mutex> g(S().m);
    auto it = S().events.find(e);
    if (it == S().events.end()) {
        g.unlock();
        return fail(CUDA_ERROR_INVALID_HANDLE, "%s: event %p does not exist", api, (void*)e);
    }
    if (Capture* c = capture_by_id(it->second.capture)) {
        CUstream s = c->stream;
        g.unlock();
        fail(CUDA_ERROR_CAPTURED_EVENT,
             "%s: event %p was last recorded by the capture of stream %p, work that runs only when the graph is "
             "launched; the capture is invalidated",
             api, (void*)e, (void*)s);
        return invalidating(s, CUDA_ERROR_CAPTURED_EVENT);
    }
    g.unlock();
    return unsafe_during_capture(api);
}

// Whether [p, p + n) lies in one range of page-locked host memory (S().m held).
bool is_pinned(uint64_t p, size_t n) {
    auto& m = S().pinned;
    auto it = m.upper_bound(p);
    if (it == m.begin()) return false;
    --it;
    return p + n <= it->first + it->second.size;
}

// The calling thread's current context. The driver acts on it: a thread that never made one
// current (cuCtxSetCurrent, which cudarc's bind_to_thread calls) gets CUDA_ERROR_INVALID_CONTEXT
// from allocations, copies and launches, as on a GPU.
thread_local CUcontext g_current = nullptr;

CUresult need_context(const char* api) {
    if (g_current) return CUDA_SUCCESS;
    return fail(CUDA_ERROR_INVALID_CONTEXT,
                "%s: no current context on this thread (bind the context to the thread first)", api);
}

CUresult do_alloc(CUdeviceptr* out, size_t bytes, const char* api) {
    STICKY();
    if (CUresult r = need_context(api)) return r;
    if (!out) return fail(CUDA_ERROR_INVALID_VALUE, "%s: null result pointer", api);
    if (bytes == 0) return fail(CUDA_ERROR_INVALID_VALUE, "%s(0 bytes): the driver refuses empty allocations", api);
    size_t span = (bytes + kAlign - 1) / kAlign * kAlign;
    size_t data_pages = (span + kPage - 1) / kPage * kPage;
    size_t len = kPage + data_pages + kPage;
    void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return fail(CUDA_ERROR_OUT_OF_MEMORY, "%s(%zu bytes): host memory exhausted", api, bytes);
    char* map = static_cast<char*>(m);
    mprotect(map, kPage, PROT_NONE);
    mprotect(map + kPage + data_pages, kPage, PROT_NONE);
    uint64_t start = (uint64_t)(map + kPage + data_pages - span);
    // Fresh device memory is garbage on a GPU: NaN (0xff bytes) here, so that using it shows.
    memset(reinterpret_cast<void*>(start), 0xff, bytes);
    memset(reinterpret_cast<void*>(start + bytes), kCanary, span - bytes);
    size_t front = std::min(kFront, (size_t)(start - (uint64_t)map - kPage));
    memset(reinterpret_cast<void*>(start - front), kCanary, front);
    std::lock_guard<std::mutex> g(S().m);
    State& s = S();
    s.allocs[start] = Alloc{start, bytes, span, map, len, s.next_id++};
    s.c.allocs++;
    s.c.alloc_bytes += bytes;
    s.c.live_bytes += bytes;
    s.c.peak_bytes = std::max(s.c.peak_bytes, s.c.live_bytes);
    *out = start;
    return CUDA_SUCCESS;
}

CUresult do_free(CUdeviceptr p, const char* api) {
    if (p == 0) return CUDA_SUCCESS;
    std::unique_lock<std::mutex> g(S().m);
    State& s = S();
    auto it = s.allocs.find(p);
    if (it == s.allocs.end()) {
        g.unlock();
        return fail(CUDA_ERROR_INVALID_VALUE, "%s(0x%llx): not the start of a live allocation (%s)", api,
                    (unsigned long long)p, where(p).c_str());
    }
    Alloc a = it->second;
    std::string what;
    bool ok = canaries_intact(a, &what);
    s.allocs.erase(it);
    s.c.frees++;
    s.c.live_bytes -= a.size;
    munmap(a.map, a.map_len);
    g.unlock();
    // A launch that broke them has already failed the context, naming the kernel: keep that message.
    if (!ok && !check_sticky()) return fail(CUDA_ERROR_ILLEGAL_ADDRESS, "found at %s: a kernel %s", api, what.c_str());
    return check_sticky();
}

// Checks a copy and, when `execute`, makes it.
CUresult do_copy(uint64_t dst, bool dst_dev, uint64_t src, bool src_dev, size_t bytes, const char* api,
                 bool execute = true) {
    STICKY();
    if (bytes == 0) return CUDA_SUCCESS;
    {
        std::lock_guard<std::mutex> g(S().m);
        if (dst_dev && !inside(dst, bytes))
            return fail(CUDA_ERROR_INVALID_VALUE, "%s: %zu bytes to 0x%llx overrun device memory (%s)", api, bytes,
                        (unsigned long long)dst, where(dst).c_str());
        if (src_dev && !inside(src, bytes))
            return fail(CUDA_ERROR_INVALID_VALUE, "%s: %zu bytes from 0x%llx overrun device memory (%s)", api, bytes,
                        (unsigned long long)src, where(src).c_str());
        if (!execute) return CUDA_SUCCESS;
        Counts& c = S().c;
        if (dst_dev && src_dev) {
            c.dtod++;
            c.dtod_bytes += bytes;
        } else if (dst_dev) {
            c.htod++;
            c.htod_bytes += bytes;
        } else {
            c.dtoh++;
            c.dtoh_bytes += bytes;
        }
    }
    memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), bytes);
    return CUDA_SUCCESS;
}

// Checks a memset and, when `execute`, makes it.
CUresult do_memset(CUdeviceptr dst, unsigned char v, size_t n, const char* api, bool execute = true) {
    STICKY();
    if (n == 0) return CUDA_SUCCESS;
    {
        std::lock_guard<std::mutex> g(S().m);
        if (!inside(dst, n))
            return fail(CUDA_ERROR_INVALID_VALUE, "%s: %zu bytes at 0x%llx overrun device memory (%s)", api, n,
                        (unsigned long long)dst, where(dst).c_str());
        if (!execute) return CUDA_SUCCESS;
        S().c.memsets++;
    }
    memset(reinterpret_cast<void*>(dst), v, n);
    return CUDA_SUCCESS;
}

CUresult enqueue(CUstream s, const char* what, Work work) { return (CUresult)submit(s, what, std::move(work)); }

// An asynchronous copy between device and host memory on `stream`. From or to page-locked
// memory it is stream work like any other (recorded while the stream captures); pageable memory
// cannot be captured, and a copy to it returns only once done: the host waits for the stream.
CUresult host_copy(uint64_t dst, bool to_device, uint64_t src, size_t bytes, CUstream stream, const char* api) {
    if (CUresult r = need_context(api)) return r;
    uint64_t host = to_device ? src : dst;
    bool pinned;
    {
        std::lock_guard<std::mutex> g(S().m);
        pinned = is_pinned(host, bytes);
    }
    if (!pinned) {
        if (CUresult r = refuse_on_capture(stream, api,
                                           "copies to or from pageable host memory cannot be captured (allocate the "
                                           "host buffer page-locked, with cuMemHostAlloc)"))
            return r;
        if (!to_device) {
            std::lock_guard<std::mutex> g(S().m);
            S().c.stream_syncs++;
        }
        return do_copy(dst, to_device, src, !to_device, bytes, api);
    }
    return enqueue(stream, api, [=](bool execute) -> int {
        {
            std::lock_guard<std::mutex> g(S().m);
            if (!is_pinned(host, bytes))
                return fail(CUDA_ERROR_INVALID_VALUE,
                            "%s: the %zu bytes of host memory at 0x%llx are no longer page-locked (freed since the "
                            "graph was captured?)",
                            api, bytes, (unsigned long long)host);
        }
        return do_copy(dst, to_device, src, !to_device, bytes, api, execute);
    });
}

// ---- PTX ---------------------------------------------------------------------------------------

size_t type_size(const std::string& t) {
    if (t == ".u8" || t == ".s8" || t == ".b8") return 1;
    if (t == ".u16" || t == ".s16" || t == ".b16" || t == ".f16") return 2;
    if (t == ".u32" || t == ".s32" || t == ".b32" || t == ".f32") return 4;
    if (t == ".u64" || t == ".s64" || t == ".b64" || t == ".f64") return 8;
    return 0;
}

std::vector<std::string> tokens(const std::string& s) {
    std::vector<std::string> out;
    std::string cur;
    for (char ch : s) {
        if (isspace((unsigned char)ch) || ch == ',' || ch == ';') {
            if (!cur.empty()) out.push_back(cur);
            cur.clear();
        } else {
            cur += ch;
        }
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
}

// `.param .u64 name`, `.param .u64 .ptr .global .align 4 name`, `.param .align 8 .b8 name[16]`.
bool parse_param(const std::string& decl, Param* p, size_t* offset) {
    auto t = tokens(decl);
    size_t size = 0, align = 0;
    for (size_t i = 0; i < t.size(); ++i) {
        if (t[i] == ".align" && i + 1 < t.size() && !size) align = strtoul(t[i + 1].c_str(), nullptr, 10);
        else if (!size && type_size(t[i])) {
            size = type_size(t[i]);
            if (i + 1 < t.size()) {
                auto b = t.back().find('[');
                if (b != std::string::npos) size *= strtoul(t.back().c_str() + b + 1, nullptr, 10);
                else if (!align) align = size;
            }
        }
    }
    if (!size) return false;
    if (!align) align = 1;
    *offset = (*offset + align - 1) / align * align;
    *p = Param{*offset, size};
    *offset += size;
    return true;
}

bool is_ident(char c) { return isalnum((unsigned char)c) || c == '_' || c == '$' || c == '.'; }

bool mentions(const std::string& body, const std::string& sym) {
    for (size_t at = body.find(sym); at != std::string::npos; at = body.find(sym, at + 1)) {
        bool before = at == 0 || !is_ident(body[at - 1]);
        bool after = at + sym.size() >= body.size() || !is_ident(body[at + sym.size()]);
        if (before && after) return true;
    }
    return false;
}

CUresult parse_module(const std::string& ptx, Module* mod) {
    int ver = 0;
    size_t v = ptx.find(".version ");
    if (v != std::string::npos) {
        int a = 0, b = 0;
        sscanf(ptx.c_str() + v, ".version %d.%d", &a, &b);
        ver = a * 10 + b;
    }
    if (ver > max_ptx(driver_version()))
        return fail(CUDA_ERROR_UNSUPPORTED_PTX_VERSION,
                    "PTX ISA %d.%d is newer than driver %d.%d loads (up to %d.%d): build the kernels with the pinned "
                    "toolkit, or the cuda12 flavour for CUDA 12 drivers",
                    ver / 10, ver % 10, driver_version() / 1000, driver_version() % 1000 / 10,
                    max_ptx(driver_version()) / 10, max_ptx(driver_version()) % 10);
    size_t tg = ptx.find(".target sm_");
    if (tg != std::string::npos) {
        int target = atoi(ptx.c_str() + tg + 11);
        if (target > sm())
            return fail(CUDA_ERROR_NO_BINARY_FOR_GPU, "PTX for sm_%d cannot run on this sm_%d device", target, sm());
    }
    // Module-scope shared variables (nvcc puts function-scope __shared__ arrays there).
    std::vector<std::pair<std::string, size_t>> shared;
    for (size_t at = ptx.find(".shared"); at != std::string::npos; at = ptx.find(".shared", at + 1)) {
        size_t line = ptx.rfind('\n', at);
        line = line == std::string::npos ? 0 : line + 1;
        size_t end = ptx.find('\n', at);
        std::string l = ptx.substr(line, end - line);
        if (l.find(".extern") != std::string::npos || l.find("//") == 0) continue;
        auto t = tokens(l);
        if (t.empty() || (t[0] != ".shared" && t[0] != ".visible" && t[0] != ".global" && t[0] != ".weak")) continue;
        std::string last = t.back();
        size_t br = last.find('[');
        size_t elem = 0;
        for (auto& x : t)
            if (type_size(x)) elem = type_size(x);
        if (br == std::string::npos || !elem) continue;
        shared.emplace_back(last.substr(0, br), elem * strtoul(last.c_str() + br + 1, nullptr, 10));
    }
    for (size_t at = ptx.find(".entry "); at != std::string::npos; at = ptx.find(".entry ", at + 1)) {
        Function* f = new Function();
        size_t open = ptx.find('(', at);
        if (open == std::string::npos) return fail(CUDA_ERROR_INVALID_PTX, "malformed .entry in the PTX");
        f->name = ptx.substr(at + 7, open - at - 7);
        while (!f->name.empty() && isspace((unsigned char)f->name.back())) f->name.pop_back();
        size_t close = ptx.find(')', open);
        std::string plist = ptx.substr(open + 1, close - open - 1);
        size_t offset = 0;
        for (size_t p = plist.find(".param"); p != std::string::npos; p = plist.find(".param", p + 1)) {
            size_t e = plist.find(".param", p + 1);
            Param prm;
            if (!parse_param(plist.substr(p, e == std::string::npos ? std::string::npos : e - p), &prm, &offset))
                return fail(CUDA_ERROR_INVALID_PTX, "kernel %s: cannot read parameter %zu of the PTX", f->name.c_str(),
                            f->params.size());
            f->params.push_back(prm);
        }
        size_t lb = ptx.find('{', close);
        int depth = 0;
        size_t end = lb;
        for (; end < ptx.size(); ++end) {
            if (ptx[end] == '{') depth++;
            if (ptx[end] == '}' && --depth == 0) break;
        }
        std::string body = ptx.substr(lb, end - lb);
        for (const char* op : {"bar.sync", "barrier.sync", "bar.warp.sync", "shfl.sync", "vote.sync", "match.sync",
                               "redux.sync", "bar.red", "barrier.red", "call"})
            if (body.find(op) != std::string::npos) f->syncs = true;
        for (auto& [name, bytes] : shared)
            if (mentions(body, name)) f->static_smem += bytes;
        f->host = find_kernel(f->name.c_str());
        if (f->host) {
            bool same = (size_t)f->host->nparams == f->params.size();
            for (size_t i = 0; same && i < f->params.size(); ++i) same = f->host->sizes[i] == f->params[i].size;
            if (!same)
                return fail(CUDA_ERROR_INVALID_PTX,
                            "kernel %s: the PTX takes %zu parameters, its host build %d: the stand-in is older than "
                            "the kernels (rebuild it with scripts/emulated-gpu.sh)",
                            f->name.c_str(), f->params.size(), f->host->nparams);
        }
        mod->functions.push_back(f);
    }
    return CUDA_SUCCESS;
}

// ---- counters ----------------------------------------------------------------------------------

std::string counts_json() {
    std::lock_guard<std::mutex> g(S().m);
    const Counts& c = S().c;
    std::string j = "{";
    auto num = [&](const char* k, double v) {
        char b[96];
        snprintf(b, sizeof b, "\"%s\": %.17g, ", k, v);
        j += b;
    };
    num("launches", c.launches);
    num("allocations", c.allocs);
    num("allocated_bytes", c.alloc_bytes);
    num("frees", c.frees);
    num("peak_bytes", c.peak_bytes);
    num("copies_htod", c.htod);
    num("copies_dtoh", c.dtoh);
    num("copies_dtod", c.dtod);
    num("bytes_htod", c.htod_bytes);
    num("bytes_dtoh", c.dtoh_bytes);
    num("bytes_dtod", c.dtod_bytes);
    num("memsets", c.memsets);
    num("host_syncs", c.stream_syncs + c.ctx_syncs + c.event_syncs);
    num("stream_syncs", c.stream_syncs);
    num("ctx_syncs", c.ctx_syncs);
    num("event_syncs", c.event_syncs);
    num("events_created", c.events);
    num("event_records", c.event_records);
    num("stream_waits", c.stream_waits);
    num("gemms", c.gemms);
    num("gemm_flops", c.gemm_flops);
    num("lt_matmuls", c.lt_matmuls);
    num("captures", c.captures);
    num("captured_nodes", c.captured_nodes);
    num("graph_launches", c.graph_launches);
    num("graph_nodes_replayed", c.graph_nodes_replayed);
    num("pinned_allocations", c.pinned_allocs);
    num("pinned_registrations", c.pinned_registrations);
    num("nvtx_ranges", c.nvtx_ranges);
    num("nvtx_marks", c.nvtx_marks);
    num("nvtx_max_depth", c.nvtx_max_depth);
    auto table = [&](const char* k, const std::map<std::string, long>& m, bool last) {
        j += std::string("\"") + k + "\": {";
        bool first = true;
        for (auto& [name, v] : m) {
            j += (first ? "\"" : ", \"") + name + "\": " + std::to_string(v);
            first = false;
        }
        j += last ? "}" : "}, ";
    };
    table("gemms_by_compute", c.gemm_by_compute, false);
    table("epilogues", c.epilogues, false);
    table("nvtx_ranges_by_name", c.nvtx_by_name, false);
    table("launches_by_kernel", c.by_kernel, true);
    j += "}";
    return j;
}

__attribute__((destructor)) void write_counts_at_exit() {
    const char* path = getenv("SITDIV_STANDIN_COUNTS");
    if (!path || !*path) return;
    std::string j = counts_json();
    std::string tmp = std::string(path) + ".tmp" + std::to_string(getpid());
    if (FILE* f = fopen(tmp.c_str(), "w")) {
        fputs(j.c_str(), f);
        fputc('\n', f);
        fclose(f);
        rename(tmp.c_str(), path);
    }
}

struct Ctx {
    int dummy;
};
Ctx g_ctx;

}  // namespace

bool check_range(uint64_t p, size_t bytes, const char* what) {
    std::unique_lock<std::mutex> g(S().m);
    if (inside(p, bytes)) return true;
    std::string w = where(p);
    g.unlock();
    set_detail("%s: %zu bytes from 0x%llx overrun device memory (%s)", what, bytes, (unsigned long long)p, w.c_str());
    return false;
}

void count_gemm(const char* compute, double flops) {
    std::lock_guard<std::mutex> g(S().m);
    S().c.gemms++;
    S().c.gemm_flops += flops;
    S().c.gemm_by_compute[compute]++;
}

void count_lt_matmul(const char* epilogue) {
    std::lock_guard<std::mutex> g(S().m);
    S().c.lt_matmuls++;
    S().c.epilogues[epilogue]++;
}

void count_nvtx_range(const char* name, int depth) {
    // Kept as a JSON key: quotes, backslashes and control characters become '?'.
    std::string key = name ? name : "";
    for (char& ch : key)
        if (ch == '"' || ch == '\\' || (unsigned char)ch < 0x20) ch = '?';
    std::lock_guard<std::mutex> g(S().m);
    Counts& c = S().c;
    c.nvtx_ranges++;
    c.nvtx_by_name[key]++;
    c.nvtx_max_depth = std::max(c.nvtx_max_depth, (long)depth);
}

void count_nvtx_mark() {
    std::lock_guard<std::mutex> g(S().m);
    S().c.nvtx_marks++;
}

int submit(void* stream, const char* what, Work work) {
    CUstream s = static_cast<CUstream>(stream);
    {
        std::unique_lock<std::mutex> g(S().m);
        Capture* c = capture_of(s);
        if (!c) {
            g.unlock();
            return work(true);
        }
        if (c->invalid) {
            std::string why = c->why;
            g.unlock();
            return refuse_invalidated(s, what, why);
        }
    }
    if (int r = work(false)) return invalidating(s, (CUresult)r);
    std::lock_guard<std::mutex> g(S().m);
    Capture* c = capture_of(s);
    if (!c) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;  // ended by another thread meanwhile
    c->nodes.push_back(Node{what, std::move(work)});
    S().c.captured_nodes++;
    return CUDA_SUCCESS;
}

void set_detail(const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "sitdiv stand-in: %s\n", buf);
    std::lock_guard<std::mutex> g(S().m);
    last_detail = buf;
}

void set_sticky(int code) { S().sticky = code; }
int sticky() { return S().sticky; }

std::string describe_fault_address(uint64_t addr, bool write, const Launch* l) {
    // Called from the signal handler while a launch runs: the map is not being changed then.
    const Alloc* a = find_alloc(addr);
    if (!a) {
        auto& m = S().allocs;
        auto it = m.upper_bound(addr);
        if (it != m.end() && addr >= (uint64_t)it->second.map && addr < it->second.start) a = &it->second;
    }
    if (!a) return "";
    char buf[256];
    const char* verb = write ? "wrote" : "read";
    if (addr >= a->start + a->span)
        snprintf(buf, sizeof buf, "%s past the end of %s: at byte offset %llu, in the guard page after it", verb,
                 alloc_name(*a).c_str(), (unsigned long long)(addr - a->start));
    else if (addr < a->start)
        snprintf(buf, sizeof buf, "%s before the start of %s: at byte offset -%llu, in the guard page before it", verb,
                 alloc_name(*a).c_str(), (unsigned long long)(a->start - addr));
    else
        return "";
    return buf + params_into(*a, l);
}

}  // namespace emu

using namespace emu;

// ---- the driver API ----------------------------------------------------------------------------

namespace {

// Checks a launch of `fn` whose parameters the driver copied into `buf` and, when `execute`,
// runs it. A replayed graph checks again: memory may have been freed since the capture.
CUresult launch(Function* fn, dim3 grid, dim3 block, unsigned smem, std::vector<unsigned char>& buf, bool execute) {
    STICKY();
    const char* k = fn->name.c_str();
    unsigned long threads = (unsigned long)block.x * block.y * block.z;
    if (!block.x || !block.y || !block.z || block.x > 1024 || block.y > 1024 || block.z > 64 || threads > 1024)
        return fail(CUDA_ERROR_INVALID_VALUE,
                    "kernel %s: block (%u,%u,%u) of %lu threads; sm_%d allows 1 to 1024 threads, x and y up to 1024, "
                    "z up to 64",
                    k, block.x, block.y, block.z, threads, sm());
    if (!grid.x || !grid.y || !grid.z || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
        return fail(CUDA_ERROR_INVALID_VALUE,
                    "kernel %s: grid (%u,%u,%u); every dimension must be at least 1, x up to 2^31-1, y and z up to 65535",
                    k, grid.x, grid.y, grid.z);
    size_t limit = fn->max_dyn >= 0 ? (size_t)fn->max_dyn + fn->static_smem : kSmemDefault;
    if (smem + fn->static_smem > limit)
        return fail(CUDA_ERROR_INVALID_VALUE,
                    "kernel %s: %u bytes of dynamic shared memory + %zu static exceed %zu; above 48 KiB a kernel must "
                    "opt in with CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES",
                    k, smem, fn->static_smem, limit);
    const KernelEntry* e = fn->host;
    std::vector<void*> args(fn->params.size());
    for (size_t i = 0; i < fn->params.size(); ++i) args[i] = buf.data() + fn->params[i].offset;
    {
        std::unique_lock<std::mutex> g(S().m);
        for (size_t i = 0; i < fn->params.size(); ++i) {
            if (!e->is_ptr[i]) continue;
            uint64_t p;
            memcpy(&p, args[i], 8);
            const Alloc* a = find_alloc(p);
            // A pointer one past the end is fine (an empty view); anything else outside is a bug.
            if (p && !(a && p >= a->start && p <= a->start + a->size)) {
                std::string w = where(p);
                g.unlock();
                return fail(CUDA_ERROR_INVALID_VALUE, "kernel %s: pointer parameter %zu (0x%llx) is not device memory: %s",
                            k, i, (unsigned long long)p, w.c_str());
            }
        }
        if (!execute) return CUDA_SUCCESS;
        S().c.launches++;
        S().c.by_kernel[fn->name]++;
    }
    Launch l{e, grid, block, smem, limit, fn->syncs, args.data()};
    std::string err = emu::run(l);
    if (err.empty()) {
        std::lock_guard<std::mutex> g(S().m);
        for (auto& [start, a] : S().allocs) {
            std::string what;
            if (!canaries_intact(a, &what, &l)) {
                err = std::string("kernel ") + k + " " + what;
                break;
            }
        }
    }
    if (!err.empty()) {
        bool memory = err.find("allocation") != std::string::npos || err.find("address") != std::string::npos;
        CUresult code = memory ? CUDA_ERROR_ILLEGAL_ADDRESS : CUDA_ERROR_LAUNCH_FAILED;
        fail(code, "%s", err.c_str());
        set_sticky(code);
        return code;
    }
    return CUDA_SUCCESS;
}

// Runs the nodes of an executable graph in order; the first error ends the launch.
CUresult replay(const std::vector<Node>& nodes) {
    for (size_t i = 0; i < nodes.size(); ++i) {
        {
            std::lock_guard<std::mutex> g(S().m);
            S().c.graph_nodes_replayed++;
        }
        if (CUresult r = (CUresult)nodes[i].work(true)) {
            std::string why;
            {
                std::lock_guard<std::mutex> g(S().m);
                why = last_detail;
            }
            return fail(r, "graph node %zu of %zu (%s): %s", i, nodes.size(), nodes[i].what.c_str(), why.c_str());
        }
    }
    return CUDA_SUCCESS;
}

}  // namespace

extern "C" {

const char* sitdiv_standin_last_error() { return last_detail.c_str(); }

// The counters as JSON (the caller frees nothing: a thread-local copy).
const char* sitdiv_standin_counts_json() {
    static thread_local std::string j;
    j = counts_json();
    return j.c_str();
}

void sitdiv_standin_reset_counts() {
    std::lock_guard<std::mutex> g(S().m);
    size_t live = S().c.live_bytes;
    S().c = Counts{};
    S().c.live_bytes = live;
    S().c.peak_bytes = live;
}

CUresult cuInit(unsigned int flags) {
    if (flags != 0) return fail(CUDA_ERROR_INVALID_VALUE, "cuInit(%u): flags must be 0", flags);
    S().init = true;
    return CUDA_SUCCESS;
}

CUresult cuDriverGetVersion(int* v) {
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    *v = driver_version();
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetCount(int* n) {
    if (!S().init) return CUDA_ERROR_NOT_INITIALIZED;
    *n = 1;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (!S().init) return CUDA_ERROR_NOT_INITIALIZED;
    if (ordinal != 0) return fail(CUDA_ERROR_INVALID_DEVICE, "device %d: the stand-in has one device, 0", ordinal);
    *d = 0;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char* name, int len, CUdevice) {
    snprintf(name, len, "sitdiv stand-in (sm_%d emulated on the CPU)", sm());
    return CUDA_SUCCESS;
}

CUresult cuDeviceTotalMem(size_t* bytes, CUdevice) {
    *bytes = (size_t)80 << 30;
    return CUDA_SUCCESS;
}

CUresult cuMemGetInfo(size_t* free_b, size_t* total) {
    *total = (size_t)80 << 30;
    *free_b = *total - S().c.live_bytes;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int* v, CUdevice_attribute a, CUdevice) {
    switch (a) {
        case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = sm() / 10; break;
        case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = sm() % 10; break;
        case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *v = 1024; break;
        case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: *v = 1024; break;
        case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: *v = 1024; break;
        case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: *v = 64; break;
        case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: *v = 2147483647; break;
        case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: *v = 65535; break;
        case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: *v = 65535; break;
        case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: *v = (int)kSmemDefault; break;
        case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: *v = (int)smem_optin(); break;
        case CU_DEVICE_ATTRIBUTE_WARP_SIZE: *v = 32; break;
        case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = sm() >= 90 ? 132 : 108; break;
        case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: *v = 65536; break;
        case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: *v = 1; break;
        case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: *v = 1; break;
        default: *v = 0;
    }
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext* c, CUdevice d) {
    if (!S().init) return CUDA_ERROR_NOT_INITIALIZED;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    *c = reinterpret_cast<CUcontext>(&g_ctx);
    return CUDA_SUCCESS;
}
CUresult cuDevicePrimaryCtxRelease(CUdevice) { return CUDA_SUCCESS; }
CUresult cuCtxGetCurrent(CUcontext* c) {
    *c = g_current;
    return CUDA_SUCCESS;
}
CUresult cuCtxSetCurrent(CUcontext c) {
    g_current = c;
    return CUDA_SUCCESS;
}
CUresult cuCtxPushCurrent(CUcontext c) { return cuCtxSetCurrent(c); }
CUresult cuCtxPopCurrent(CUcontext* c) {
    if (c) *c = g_current;
    return CUDA_SUCCESS;
}
CUresult cuCtxGetDevice(CUdevice* d) {
    *d = 0;
    return CUDA_SUCCESS;
}
CUresult cuCtxSynchronize() {
    std::unique_lock<std::mutex> g(S().m);
    if (!S().captures.empty()) {
        CUstream s = S().captures.begin()->first;
        g.unlock();
        fail(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
             "cuCtxSynchronize while stream %p captures: synchronising a context with a capturing stream is invalid "
             "and invalidates the capture",
             (void*)s);
        g.lock();
        for (auto& [k, c] : S().captures) invalidate(c);
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    S().c.ctx_syncs++;
    g.unlock();
    return check_sticky();
}

CUresult cuStreamCreate(CUstream* s, unsigned int) {
    static long next = 0x100;  // 0x1 and 0x2 are CU_STREAM_LEGACY and CU_STREAM_PER_THREAD
    *s = reinterpret_cast<CUstream>(next++);
    return check_sticky();
}
CUresult cuStreamCreateWithPriority(CUstream* s, unsigned int f, int) { return cuStreamCreate(s, f); }
CUresult cuStreamDestroy(CUstream s) {
    // The documentation is silent on destroying a capturing stream: its capture ends with it.
    std::lock_guard<std::mutex> g(S().m);
    S().captures.erase(s);
    return CUDA_SUCCESS;
}
CUresult cuStreamSynchronize(CUstream s) {
    if (CUresult r = refuse_on_capture(s, "cuStreamSynchronize",
                                       "synchronising a capturing stream is invalid (its work runs when the graph is "
                                       "launched)"))
        return r;
    {
        std::lock_guard<std::mutex> g(S().m);
        S().c.stream_syncs++;
    }
    return check_sticky();
}
CUresult cuStreamQuery(CUstream s) {
    if (CUresult r = refuse_on_capture(s, "cuStreamQuery", "querying a capturing stream is invalid")) return r;
    return check_sticky();
}
CUresult cuStreamWaitEvent(CUstream s, CUevent e, unsigned int flags) {
    STICKY();
    if (flags & ~(unsigned)CU_EVENT_WAIT_EXTERNAL)
        return fail(CUDA_ERROR_INVALID_VALUE, "cuStreamWaitEvent: unknown flags 0x%x", flags);
    std::unique_lock<std::mutex> g(S().m);
    auto it = S().events.find(e);
    if (it == S().events.end()) {
        g.unlock();
        return fail(CUDA_ERROR_INVALID_HANDLE, "cuStreamWaitEvent: event %p does not exist", (void*)e);
    }
    Event ev = it->second;
    Capture* c = capture_of(s);
    Capture* source = capture_by_id(ev.capture);  // the live capture that recorded it last, if any
    if (!c) {
        CUstream other = source ? source->stream : nullptr;
        g.unlock();
        if (flags & CU_EVENT_WAIT_EXTERNAL)
            return fail(CUDA_ERROR_INVALID_VALUE, "cuStreamWaitEvent: CU_EVENT_WAIT_EXTERNAL outside a stream capture");
        if (source) {
            fail(CUDA_ERROR_NOT_SUPPORTED,
                 "cuStreamWaitEvent: stream %p would join the capture of stream %p through event %p (a fork); the "
                 "stand-in captures one stream at a time",
                 (void*)s, (void*)other, (void*)e);
            return invalidating(other, CUDA_ERROR_NOT_SUPPORTED);
        }
        g.lock();
        S().c.stream_waits++;
        g.unlock();
        return check_sticky();
    }
    if (c->invalid) {
        std::string why = c->why;
        g.unlock();
        return refuse_invalidated(s, "cuStreamWaitEvent", why);
    }
    if (source == c || !ev.recorded) {
        // Work recorded earlier in this capture precedes anyway; an event never recorded stands for no work.
        S().c.stream_waits++;
        return CUDA_SUCCESS;
    }
    if (flags & CU_EVENT_WAIT_EXTERNAL) {
        // An external event wait node: all work submitted before the launch has run by then.
        c->nodes.push_back(Node{"external event wait", [](bool) { return 0; }});
        S().c.captured_nodes++;
        S().c.stream_waits++;
        return CUDA_SUCCESS;
    }
    g.unlock();
    // The Programming Guide forbids both waits without naming their errors; these are the codes
    // whose descriptions fit.
    if (source)
        fail(CUDA_ERROR_STREAM_CAPTURE_MERGE,
             "cuStreamWaitEvent: capturing stream %p waits on event %p of another capture: the two capture sequences "
             "would merge",
             (void*)s, (void*)e);
    else
        fail(CUDA_ERROR_STREAM_CAPTURE_ISOLATION,
             "cuStreamWaitEvent: capturing stream %p waits on event %p, recorded outside the capture, without "
             "CU_EVENT_WAIT_EXTERNAL: the dependency crosses the capture's boundary and invalidates it (cudarc "
             "records such events for every CudaSlice unless CudaContext::disable_event_tracking was called before "
             "the buffers were allocated)",
             (void*)s, (void*)e);
    return invalidating(s, source ? CUDA_ERROR_STREAM_CAPTURE_MERGE : CUDA_ERROR_STREAM_CAPTURE_ISOLATION);
}

CUresult cuEventCreate(CUevent* e, unsigned int) {
    static long next = 1;
    std::lock_guard<std::mutex> g(S().m);
    S().c.events++;
    *e = reinterpret_cast<CUevent>(next++);
    S().events[*e] = Event{};
    return (CUresult)S().sticky;
}
CUresult cuEventDestroy(CUevent e) {
    std::lock_guard<std::mutex> g(S().m);
    S().events.erase(e);
    return CUDA_SUCCESS;
}
CUresult cuEventRecordWithFlags(CUevent e, CUstream s, unsigned int flags) {
    STICKY();
    if (flags & ~(unsigned)CU_EVENT_RECORD_EXTERNAL)
        return fail(CUDA_ERROR_INVALID_VALUE, "cuEventRecordWithFlags: unknown flags 0x%x", flags);
    std::unique_lock<std::mutex> g(S().m);
    auto it = S().events.find(e);
    Capture* c = capture_of(s);
    bool exists = it != S().events.end(), external = flags & CU_EVENT_RECORD_EXTERNAL;
    if (exists && (c ? !c->invalid : !external)) {
        it->second = Event{true, c ? c->id : 0};
        S().c.event_records++;
        return CUDA_SUCCESS;
    }
    std::string why = c ? c->why : "";
    g.unlock();
    if (!exists) return fail(CUDA_ERROR_INVALID_HANDLE, "cuEventRecord: event %p does not exist", (void*)e);
    if (!c)
        return fail(CUDA_ERROR_INVALID_VALUE,
                    "cuEventRecordWithFlags: CU_EVENT_RECORD_EXTERNAL outside a stream capture");
    return refuse_invalidated(s, "cuEventRecord", why);
}
CUresult cuEventRecord(CUevent e, CUstream s) { return cuEventRecordWithFlags(e, s, 0); }
CUresult cuEventQuery(CUevent e) {
    if (CUresult r = event_wait_allowed(e, "cuEventQuery")) return r;
    return check_sticky();
}
CUresult cuEventSynchronize(CUevent e) {
    if (CUresult r = event_wait_allowed(e, "cuEventSynchronize")) return r;
    {
        std::lock_guard<std::mutex> g(S().m);
        S().c.event_syncs++;
    }
    return check_sticky();
}
CUresult cuEventElapsedTime(float* ms, CUevent, CUevent) {
    *ms = 0;
    return check_sticky();
}

const char* const kCaptureAllocs =
    "the stand-in has no graph memory nodes: sitdiv allocates and frees its buffers outside captures (drop no "
    "CudaSlice while a stream captures)";

CUresult cuMemAlloc(CUdeviceptr* p, size_t bytes) {
    if (CUresult r = unsafe_during_capture("cuMemAlloc")) return r;
    return do_alloc(p, bytes, "cuMemAlloc");
}
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, CUstream s) {
    if (CUresult r = refuse_on_capture(s, "cuMemAllocAsync", kCaptureAllocs)) return r;
    return do_alloc(p, bytes, "cuMemAllocAsync");
}
CUresult cuMemFree(CUdeviceptr p) {
    if (CUresult r = unsafe_during_capture("cuMemFree")) return r;
    return do_free(p, "cuMemFree");
}
CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) {
    if (CUresult r = refuse_on_capture(s, "cuMemFreeAsync", kCaptureAllocs)) return r;
    return do_free(p, "cuMemFreeAsync");
}

CUresult cuMemcpyHtoD(CUdeviceptr dst, const void* src, size_t n) {
    if (CUresult r = unsafe_during_capture("cuMemcpyHtoD")) return r;
    return do_copy(dst, true, (uint64_t)src, false, n, "cuMemcpyHtoD");
}
CUresult cuMemcpyHtoDAsync(CUdeviceptr dst, const void* src, size_t n, CUstream s) {
    return host_copy(dst, true, (uint64_t)src, n, s, "cuMemcpyHtoDAsync");
}
CUresult cuMemcpyDtoH(void* dst, CUdeviceptr src, size_t n) {
    if (CUresult r = unsafe_during_capture("cuMemcpyDtoH")) return r;
    {
        std::lock_guard<std::mutex> g(S().m);
        S().c.stream_syncs++;  // a synchronous copy waits for the stream
    }
    return do_copy((uint64_t)dst, false, src, true, n, "cuMemcpyDtoH");
}
CUresult cuMemcpyDtoHAsync(void* dst, CUdeviceptr src, size_t n, CUstream s) {
    return host_copy((uint64_t)dst, false, src, n, s, "cuMemcpyDtoHAsync");
}
CUresult cuMemcpyDtoD(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    if (CUresult r = unsafe_during_capture("cuMemcpyDtoD")) return r;
    return do_copy(dst, true, src, true, n, "cuMemcpyDtoD");
}
CUresult cuMemcpyDtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {
    return enqueue(s, "cuMemcpyDtoDAsync",
                  [=](bool execute) -> int { return do_copy(dst, true, src, true, n, "cuMemcpyDtoDAsync", execute); });
}
CUresult cuMemsetD8(CUdeviceptr dst, unsigned char v, size_t n) {
    if (CUresult r = unsafe_during_capture("cuMemsetD8")) return r;
    return do_memset(dst, v, n, "cuMemsetD8");
}
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream s) {
    return enqueue(s, "cuMemsetD8Async",
                  [=](bool execute) -> int { return do_memset(dst, v, n, "cuMemsetD8Async", execute); });
}

// ---- page-locked host memory ----

CUresult cuMemHostAlloc(void** pp, size_t bytes, unsigned int flags) {
    STICKY();
    if (!pp) return fail(CUDA_ERROR_INVALID_VALUE, "cuMemHostAlloc: null result pointer");
    if (flags & ~(unsigned)(CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED))
        return fail(CUDA_ERROR_INVALID_VALUE, "cuMemHostAlloc: unknown flags 0x%x", flags);
    // The documentation is silent on 0 bytes; refused as cuMemAlloc refuses it.
    if (bytes == 0) return fail(CUDA_ERROR_INVALID_VALUE, "cuMemHostAlloc(0 bytes)");
    if (CUresult r = unsafe_during_capture("cuMemHostAlloc")) return r;
    size_t len = (bytes + kPage - 1) / kPage * kPage;
    void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return fail(CUDA_ERROR_OUT_OF_MEMORY, "cuMemHostAlloc(%zu bytes): host memory exhausted", bytes);
    std::lock_guard<std::mutex> g(S().m);
    S().pinned[(uint64_t)m] = Pinned{bytes, len};
    S().c.pinned_allocs++;
    *pp = m;
    return CUDA_SUCCESS;
}
CUresult cuMemAllocHost(void** pp, size_t bytes) { return cuMemHostAlloc(pp, bytes, 0); }
CUresult cuMemFreeHost(void* p) {
    if (CUresult r = unsafe_during_capture("cuMemFreeHost")) return r;
    std::unique_lock<std::mutex> g(S().m);
    auto it = S().pinned.find((uint64_t)p);
    if (it == S().pinned.end() || it->second.map_len == 0) {
        g.unlock();
        return fail(CUDA_ERROR_INVALID_VALUE, "cuMemFreeHost(%p): not memory from cuMemHostAlloc", p);
    }
    munmap(p, it->second.map_len);
    S().pinned.erase(it);
    return CUDA_SUCCESS;
}
CUresult cuMemHostRegister(void* p, size_t bytes, unsigned int flags) {
    STICKY();
    if (flags & CU_MEMHOSTREGISTER_IOMEMORY)
        return fail(CUDA_ERROR_NOT_SUPPORTED, "cuMemHostRegister: the stand-in has no I/O memory");
    if (flags & ~(unsigned)(CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP | CU_MEMHOSTREGISTER_READ_ONLY))
        return fail(CUDA_ERROR_INVALID_VALUE, "cuMemHostRegister: unknown flags 0x%x", flags);
    if (!p || bytes == 0) return fail(CUDA_ERROR_INVALID_VALUE, "cuMemHostRegister(%p, %zu bytes)", p, bytes);
    if (CUresult r = unsafe_during_capture("cuMemHostRegister")) return r;
    uint64_t a = (uint64_t)p;
    std::unique_lock<std::mutex> g(S().m);
    auto& m = S().pinned;
    auto next = m.lower_bound(a);
    bool overlaps = next != m.end() && next->first < a + bytes;
    if (next != m.begin()) {
        auto prev = std::prev(next);
        overlaps = overlaps || prev->first + prev->second.size > a;
    }
    if (overlaps) {
        g.unlock();
        return fail(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED,
                    "cuMemHostRegister(%p, %zu bytes): overlaps page-locked memory", p, bytes);
    }
    m[a] = Pinned{bytes, 0};
    S().c.pinned_registrations++;
    return CUDA_SUCCESS;
}
CUresult cuMemHostUnregister(void* p) {
    if (CUresult r = unsafe_during_capture("cuMemHostUnregister")) return r;
    std::unique_lock<std::mutex> g(S().m);
    auto it = S().pinned.find((uint64_t)p);
    if (it == S().pinned.end() || it->second.map_len != 0) {
        g.unlock();
        return fail(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, "cuMemHostUnregister(%p): not the start of a range from "
                    "cuMemHostRegister", p);
    }
    S().pinned.erase(it);
    return CUDA_SUCCESS;
}

// ---- stream capture and graphs ----

// Exported as cuStreamBeginCapture_v2 (cuda.h renames it).
CUresult cuStreamBeginCapture(CUstream s, CUstreamCaptureMode mode) {
    STICKY();
    if ((unsigned)mode > CU_STREAM_CAPTURE_MODE_RELAXED)
        return fail(CUDA_ERROR_INVALID_VALUE, "cuStreamBeginCapture: unknown mode %d", (int)mode);
    // The documentation forbids it without naming the error (it lists CUDA_ERROR_INVALID_VALUE
    // alone); this code names what went wrong.
    if (s == nullptr || s == CU_STREAM_LEGACY)
        return fail(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
                    "cuStreamBeginCapture on the legacy NULL stream: CUDA captures only streams made with "
                    "cuStreamCreate (cudarc: CudaContext::new_stream, not default_stream)");
    std::unique_lock<std::mutex> g(S().m);
    if (capture_of(s)) {  // the documentation lists no other error for it than CUDA_ERROR_INVALID_VALUE
        g.unlock();
        return fail(CUDA_ERROR_INVALID_VALUE, "cuStreamBeginCapture: stream %p captures already", (void*)s);
    }
    State& st = S();
    st.captures.emplace(s, Capture{st.next_capture++, s, mode, std::this_thread::get_id()});
    st.c.captures++;
    return CUDA_SUCCESS;
}
CUresult cuStreamIsCapturing(CUstream s, CUstreamCaptureStatus* status) {
    if (!status) return fail(CUDA_ERROR_INVALID_VALUE, "cuStreamIsCapturing: null result pointer");
    std::lock_guard<std::mutex> g(S().m);
    Capture* c = capture_of(s);
    *status = !c ? CU_STREAM_CAPTURE_STATUS_NONE
                 : c->invalid ? CU_STREAM_CAPTURE_STATUS_INVALIDATED : CU_STREAM_CAPTURE_STATUS_ACTIVE;
    return CUDA_SUCCESS;
}
CUresult cuStreamEndCapture(CUstream s, CUgraph* graph) {
    if (!graph) return fail(CUDA_ERROR_INVALID_VALUE, "cuStreamEndCapture: null result pointer");
    std::unique_lock<std::mutex> g(S().m);
    Capture* c = capture_of(s);
    if (!c) {  // the documentation lists no other error for it than CUDA_ERROR_INVALID_VALUE
        g.unlock();
        return fail(CUDA_ERROR_INVALID_VALUE, "cuStreamEndCapture: stream %p does not capture", (void*)s);
    }
    if (c->mode != CU_STREAM_CAPTURE_MODE_RELAXED && c->thread != std::this_thread::get_id()) {
        const char* mode = mode_name(c->mode);
        g.unlock();
        return fail(CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD,
                    "cuStreamEndCapture: the capture of stream %p began on another thread in %s", (void*)s, mode);
    }
    Capture done = std::move(*c);
    S().captures.erase(s);
    g.unlock();
    if (done.invalid) {
        *graph = nullptr;
        return fail(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,
                    "cuStreamEndCapture: the capture was invalidated (%s); no graph", done.why.c_str());
    }
    *graph = reinterpret_cast<CUgraph>(new Graph{std::make_shared<const std::vector<Node>>(std::move(done.nodes))});
    return CUDA_SUCCESS;
}
// Exported as cuGraphInstantiateWithFlags (cuda.h renames it), which cudarc calls for CUDA 12 and 13.
CUresult cuGraphInstantiate(CUgraphExec* exec, CUgraph graph, unsigned long long flags) {
    if (!exec || !graph) return fail(CUDA_ERROR_INVALID_VALUE, "cuGraphInstantiate: null graph or result pointer");
    const Graph* gr = reinterpret_cast<const Graph*>(graph);
    const unsigned long long known = CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH |
                                     CUDA_GRAPH_INSTANTIATE_FLAG_DEVICE_LAUNCH |
                                     CUDA_GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY;
    if (flags & ~known)
        return fail(CUDA_ERROR_INVALID_VALUE,
                    "cuGraphInstantiate: flags 0x%llx (CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD is for "
                    "cuGraphInstantiateWithParams only)",
                    flags);
    bool device = flags & CUDA_GRAPH_INSTANTIATE_FLAG_DEVICE_LAUNCH;
    if (device && (flags & CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH))
        return fail(CUDA_ERROR_INVALID_VALUE,
                    "cuGraphInstantiate: DEVICE_LAUNCH cannot be combined with AUTO_FREE_ON_LAUNCH");
    if (device && gr->nodes->empty())
        return fail(CUDA_ERROR_INVALID_VALUE, "cuGraphInstantiate: a graph for device launch cannot be empty");
    *exec = reinterpret_cast<CUgraphExec>(new Graph{gr->nodes});
    return CUDA_SUCCESS;
}
CUresult cuGraphLaunch(CUgraphExec exec, CUstream s) {
    STICKY();
    if (CUresult r = need_context("cuGraphLaunch")) return r;
    if (!exec) return fail(CUDA_ERROR_INVALID_VALUE, "cuGraphLaunch: null graph");
    auto nodes = reinterpret_cast<const Graph*>(exec)->nodes;
    // On a capturing stream the launch becomes a node of the capture (a child graph).
    return enqueue(s, "cuGraphLaunch", [nodes](bool execute) -> int {
        if (!execute) return CUDA_SUCCESS;
        {
            std::lock_guard<std::mutex> g(S().m);
            S().c.graph_launches++;
        }
        return replay(*nodes);
    });
}
CUresult cuGraphUpload(CUgraphExec exec, CUstream) {
    if (!exec) return fail(CUDA_ERROR_INVALID_VALUE, "cuGraphUpload: null graph");
    return check_sticky();  // nothing to upload: device memory is host memory
}
CUresult cuGraphExecDestroy(CUgraphExec exec) {
    if (!exec) return fail(CUDA_ERROR_INVALID_VALUE, "cuGraphExecDestroy: null graph");
    delete reinterpret_cast<Graph*>(exec);
    return CUDA_SUCCESS;
}
CUresult cuGraphDestroy(CUgraph graph) {
    if (!graph) return fail(CUDA_ERROR_INVALID_VALUE, "cuGraphDestroy: null graph");
    delete reinterpret_cast<Graph*>(graph);
    return CUDA_SUCCESS;
}

CUresult cuModuleLoadData(CUmodule* m, const void* image) {
    STICKY();
    const char* text = static_cast<const char*>(image);
    if (!text || strncmp(text, "\x7f" "ELF", 4) == 0 || !strstr(text, ".entry"))
        return fail(CUDA_ERROR_INVALID_PTX, "cuModuleLoadData: the stand-in loads PTX text only");
    Module* mod = new Module();
    CUresult r = parse_module(text, mod);
    if (r != CUDA_SUCCESS) return r;
    *m = reinterpret_cast<CUmodule>(mod);
    return CUDA_SUCCESS;
}
CUresult cuModuleLoadDataEx(CUmodule* m, const void* image, unsigned int, CUjit_option*, void**) {
    return cuModuleLoadData(m, image);
}
CUresult cuModuleUnload(CUmodule) { return CUDA_SUCCESS; }

CUresult cuModuleGetFunction(CUfunction* f, CUmodule m, const char* name) {
    STICKY();
    Module* mod = reinterpret_cast<Module*>(m);
    for (Function* fn : mod->functions)
        if (fn->name == name) {
            if (!fn->host)
                return fail(CUDA_ERROR_NOT_FOUND,
                            "kernel %s is in the PTX but has no host build in the stand-in: rebuild it with "
                            "scripts/emulated-gpu.sh",
                            name);
            *f = reinterpret_cast<CUfunction>(fn);
            return CUDA_SUCCESS;
        }
    return fail(CUDA_ERROR_NOT_FOUND, "cuModuleGetFunction: no kernel %s in the module", name);
}

CUresult cuFuncGetParamInfo(CUfunction f, size_t index, size_t* offset, size_t* size) {
    Function* fn = reinterpret_cast<Function*>(f);
    if (index >= fn->params.size()) return CUDA_ERROR_INVALID_VALUE;
    if (offset) *offset = fn->params[index].offset;
    if (size) *size = fn->params[index].size;
    return CUDA_SUCCESS;
}

CUresult cuFuncGetAttribute(int* v, CUfunction_attribute a, CUfunction f) {
    Function* fn = reinterpret_cast<Function*>(f);
    switch (a) {
        case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *v = 1024; break;
        case CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: *v = (int)fn->static_smem; break;
        case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES:
            *v = fn->max_dyn >= 0 ? fn->max_dyn : (int)(kSmemDefault - fn->static_smem);
            break;
        case CU_FUNC_ATTRIBUTE_PTX_VERSION:
        case CU_FUNC_ATTRIBUTE_BINARY_VERSION: *v = sm(); break;
        default: *v = 0;
    }
    return CUDA_SUCCESS;
}

CUresult cuFuncSetAttribute(CUfunction f, CUfunction_attribute a, int v) {
    Function* fn = reinterpret_cast<Function*>(f);
    if (a == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) {
        if (v < 0 || (size_t)v + fn->static_smem > smem_optin())
            return fail(CUDA_ERROR_INVALID_VALUE,
                        "kernel %s: %d bytes of dynamic shared memory + %zu static exceed the %zu of sm_%d",
                        fn->name.c_str(), v, fn->static_smem, smem_optin(), sm());
        fn->max_dyn = v;
    }
    return CUDA_SUCCESS;
}

CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned smem, CUstream stream, void** params, void** extra) {
    STICKY();
    if (CUresult r = need_context("cuLaunchKernel")) return r;
    Function* fn = reinterpret_cast<Function*>(f);
    const char* k = fn->name.c_str();
    if (extra)
        return invalidating(stream, fail(CUDA_ERROR_NOT_SUPPORTED, "kernel %s: launch with `extra` parameters", k));
    // Parameters are copied at launch (and capture), as the driver does.
    size_t total = fn->params.empty() ? 0 : fn->params.back().offset + fn->params.back().size;
    auto buf = std::make_shared<std::vector<unsigned char>>(total + 8);
    for (size_t i = 0; i < fn->params.size(); ++i) {
        if (!params || !params[i])
            return invalidating(stream, fail(CUDA_ERROR_INVALID_VALUE, "kernel %s: parameter %zu is null", k, i));
        memcpy(buf->data() + fn->params[i].offset, params[i], fn->params[i].size);
    }
    std::string what = std::string("kernel ") + k;
    return enqueue(stream, what.c_str(), [=](bool execute) -> int {
        return launch(fn, dim3{gx, gy, gz}, dim3{bx, by, bz}, smem, *buf, execute);
    });
}

CUresult cuGetErrorString(CUresult r, const char** s) {
    std::lock_guard<std::mutex> g(S().m);
    auto it = S().detail.find(r);
    *s = it != S().detail.end() ? it->second : describe(r);
    return CUDA_SUCCESS;
}

CUresult cuGetErrorName(CUresult r, const char** s) {
    *s = code_name(r);
    return CUDA_SUCCESS;
}

}  // extern "C"
