// A stand-in for the CUDA driver (libcuda.so.1), enough of it for cudarc and sitdiv: device
// memory is host memory, modules are our PTX (parsed for `.entry` names, `.param` lists, shared
// memory and barriers) bound to the same kernels compiled for the host, and launches run in
// engine.cpp. It checks what a GPU checks and what a GPU would only show as corrupt results:
// - launch limits of the emulated architecture (threads per block, grid y/z, dynamic shared
//   memory with and without the opt-in attribute), PTX ISA version against the driver version;
// - every copy and memset inside one allocation; pointer arguments inside live allocations;
// - out-of-bounds accesses: a guard page follows each allocation (rounded up to 256 bytes), and
//   that slack and the 256 bytes before it hold a NaN canary checked after every launch.
// It counts launches, allocations, copies, host synchronisations and (cublas.cpp) GEMMs by
// compute type; `SITDIV_STANDIN_COUNTS=FILE` writes them as JSON at exit.
//
// Settings: SITDIV_STANDIN_SM (80 or 90, default 90), SITDIV_STANDIN_DRIVER (e.g. 12040,
// default 13000), SITDIV_STANDIN_THREADS (host threads for blocks and GEMMs).
#include <cuda.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <map>
#include <mutex>
#include <string>
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
    long gemms = 0;
    double htod_bytes = 0, dtoh_bytes = 0, dtod_bytes = 0, alloc_bytes = 0, gemm_flops = 0;
    size_t live_bytes = 0, peak_bytes = 0;
    std::map<std::string, long> by_kernel;
    std::map<std::string, long> gemm_by_compute;
};

struct State {
    std::mutex m;
    std::map<uint64_t, Alloc> allocs;  // by start
    long next_id = 1;
    Counts c;
    int sticky = 0;
    bool init = false;
    std::map<int, const char*> detail;  // the last detailed message per error code (leaked: cudarc keeps them)
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
        N(CUDA_ERROR_NOT_SUPPORTED) N(CUDA_ERROR_INVALID_CONTEXT)
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

CUresult do_alloc(CUdeviceptr* out, size_t bytes, const char* api) {
    STICKY();
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

CUresult do_copy(uint64_t dst, bool dst_dev, uint64_t src, bool src_dev, size_t bytes, const char* api) {
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

CUresult do_memset(CUdeviceptr dst, unsigned char v, size_t n, const char* api) {
    STICKY();
    if (n == 0) return CUDA_SUCCESS;
    {
        std::lock_guard<std::mutex> g(S().m);
        if (!inside(dst, n))
            return fail(CUDA_ERROR_INVALID_VALUE, "%s: %zu bytes at 0x%llx overrun device memory (%s)", api, n,
                        (unsigned long long)dst, where(dst).c_str());
        S().c.memsets++;
    }
    memset(reinterpret_cast<void*>(dst), v, n);
    return CUDA_SUCCESS;
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
    j += "\"gemms_by_compute\": {";
    bool first = true;
    for (auto& [k, v] : c.gemm_by_compute) {
        j += (first ? "\"" : ", \"") + k + "\": " + std::to_string(v);
        first = false;
    }
    j += "}, \"launches_by_kernel\": {";
    first = true;
    for (auto& [k, v] : c.by_kernel) {
        j += (first ? "\"" : ", \"") + k + "\": " + std::to_string(v);
        first = false;
    }
    j += "}}";
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
thread_local CUcontext g_current = nullptr;

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
    S().c.ctx_syncs++;
    return check_sticky();
}

CUresult cuStreamCreate(CUstream* s, unsigned int) {
    static long next = 1;
    *s = reinterpret_cast<CUstream>(next++);
    return check_sticky();
}
CUresult cuStreamCreateWithPriority(CUstream* s, unsigned int f, int) { return cuStreamCreate(s, f); }
CUresult cuStreamDestroy(CUstream) { return CUDA_SUCCESS; }
CUresult cuStreamSynchronize(CUstream) {
    S().c.stream_syncs++;
    return check_sticky();
}
CUresult cuStreamQuery(CUstream) { return check_sticky(); }
CUresult cuStreamWaitEvent(CUstream, CUevent, unsigned int) {
    S().c.stream_waits++;
    return check_sticky();
}

CUresult cuEventCreate(CUevent* e, unsigned int) {
    static long next = 1;
    S().c.events++;
    *e = reinterpret_cast<CUevent>(next++);
    return check_sticky();
}
CUresult cuEventDestroy(CUevent) { return CUDA_SUCCESS; }
CUresult cuEventRecord(CUevent, CUstream) {
    S().c.event_records++;
    return check_sticky();
}
CUresult cuEventRecordWithFlags(CUevent e, CUstream s, unsigned int) { return cuEventRecord(e, s); }
CUresult cuEventQuery(CUevent) { return check_sticky(); }
CUresult cuEventSynchronize(CUevent) {
    S().c.event_syncs++;
    return check_sticky();
}
CUresult cuEventElapsedTime(float* ms, CUevent, CUevent) {
    *ms = 0;
    return check_sticky();
}

CUresult cuMemAlloc(CUdeviceptr* p, size_t bytes) { return do_alloc(p, bytes, "cuMemAlloc"); }
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, CUstream) { return do_alloc(p, bytes, "cuMemAllocAsync"); }
CUresult cuMemFree(CUdeviceptr p) { return do_free(p, "cuMemFree"); }
CUresult cuMemFreeAsync(CUdeviceptr p, CUstream) { return do_free(p, "cuMemFreeAsync"); }

CUresult cuMemcpyHtoD(CUdeviceptr dst, const void* src, size_t n) {
    return do_copy(dst, true, (uint64_t)src, false, n, "cuMemcpyHtoD");
}
CUresult cuMemcpyHtoDAsync(CUdeviceptr dst, const void* src, size_t n, CUstream) {
    return do_copy(dst, true, (uint64_t)src, false, n, "cuMemcpyHtoDAsync");
}
CUresult cuMemcpyDtoH(void* dst, CUdeviceptr src, size_t n) {
    S().c.stream_syncs++;  // a synchronous copy waits for the stream
    return do_copy((uint64_t)dst, false, src, true, n, "cuMemcpyDtoH");
}
CUresult cuMemcpyDtoHAsync(void* dst, CUdeviceptr src, size_t n, CUstream) {
    // Host memory here is never page-locked (the stand-in has no cuMemHostAlloc), and a copy to
    // pageable memory returns only once it is done: the host waits for the stream.
    S().c.stream_syncs++;
    return do_copy((uint64_t)dst, false, src, true, n, "cuMemcpyDtoHAsync");
}
CUresult cuMemcpyDtoD(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    return do_copy(dst, true, src, true, n, "cuMemcpyDtoD");
}
CUresult cuMemcpyDtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream) {
    return do_copy(dst, true, src, true, n, "cuMemcpyDtoDAsync");
}
CUresult cuMemsetD8(CUdeviceptr dst, unsigned char v, size_t n) { return do_memset(dst, v, n, "cuMemsetD8"); }
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream) {
    return do_memset(dst, v, n, "cuMemsetD8Async");
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
                        unsigned smem, CUstream, void** params, void** extra) {
    STICKY();
    Function* fn = reinterpret_cast<Function*>(f);
    const char* k = fn->name.c_str();
    if (extra) return fail(CUDA_ERROR_NOT_SUPPORTED, "kernel %s: launch with `extra` parameters", k);
    unsigned long threads = (unsigned long)bx * by * bz;
    if (!bx || !by || !bz || bx > 1024 || by > 1024 || bz > 64 || threads > 1024)
        return fail(CUDA_ERROR_INVALID_VALUE,
                    "kernel %s: block (%u,%u,%u) of %lu threads; sm_%d allows 1 to 1024 threads, x and y up to 1024, "
                    "z up to 64",
                    k, bx, by, bz, threads, sm());
    if (!gx || !gy || !gz || gx > 2147483647u || gy > 65535 || gz > 65535)
        return fail(CUDA_ERROR_INVALID_VALUE,
                    "kernel %s: grid (%u,%u,%u); every dimension must be at least 1, x up to 2^31-1, y and z up to 65535",
                    k, gx, gy, gz);
    size_t limit = fn->max_dyn >= 0 ? (size_t)fn->max_dyn + fn->static_smem : kSmemDefault;
    if (smem + fn->static_smem > limit)
        return fail(CUDA_ERROR_INVALID_VALUE,
                    "kernel %s: %u bytes of dynamic shared memory + %zu static exceed %zu; above 48 KiB a kernel must "
                    "opt in with CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES",
                    k, smem, fn->static_smem, limit);
    const KernelEntry* e = fn->host;
    // Parameters are copied at launch, as the driver does.
    std::vector<unsigned char> buf;
    size_t total = fn->params.empty() ? 0 : fn->params.back().offset + fn->params.back().size;
    buf.resize(total + 8);
    std::vector<void*> args(fn->params.size());
    for (size_t i = 0; i < fn->params.size(); ++i) {
        if (!params || !params[i]) return fail(CUDA_ERROR_INVALID_VALUE, "kernel %s: parameter %zu is null", k, i);
        memcpy(buf.data() + fn->params[i].offset, params[i], fn->params[i].size);
        args[i] = buf.data() + fn->params[i].offset;
    }
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
        S().c.launches++;
        S().c.by_kernel[fn->name]++;
    }
    Launch l{e, dim3{gx, gy, gz}, dim3{bx, by, bz}, smem, limit, fn->syncs, args.data()};
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
