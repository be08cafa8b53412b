// The execution engine of the emulated device: runs the blocks of a launch on a few host
// threads and the threads of a block as fibers, so that `__syncthreads()` is a real barrier.
//
// A kernel whose PTX has no barrier or warp-synchronous instruction runs each CUDA thread as a
// plain call (fast); the others run every thread of the block on its own stack and switch at
// each barrier. Faults (shared-memory races, out-of-range indices, divergent barriers,
// deadlocks, segmentation faults in global memory) end the launch with a message naming the
// kernel, the block and the thread.
#include <csetjmp>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <sys/mman.h>
#include <ucontext.h>

#include "standin.h"

namespace emu {

__thread ThreadState cur;

// ---- kernel registry -------------------------------------------------------------------------

static std::map<std::string, KernelEntry>& registry() {
    static std::map<std::string, KernelEntry> r;
    return r;
}

void register_kernel(const KernelEntry& e) { registry()[e.name] = e; }

const KernelEntry* find_kernel(const char* name) {
    auto it = registry().find(name);
    return it == registry().end() ? nullptr : &it->second;
}

// ---- fibers and blocks -----------------------------------------------------------------------

enum State : int { READY, WAIT_BLOCK, WAIT_WARP, DONE };
enum WarpOp : int { OP_SYNC, OP_SHFL, OP_BALLOT };

struct Fiber {
    int state;
    bool created;  // its context exists: parked between threads, or waiting inside one
    ucontext_t uc;
    jmp_buf jb;
    char* stack;
    ThreadState ts;
    // A pending warp operation.
    int op;
    unsigned mask;
    uint64_t post;
    int src;
    uint64_t result;
};

struct Region_ {
    const void* key;
    size_t offset;  // into the arena
    size_t bytes;
    Region r;
};

// Shared memory and barrier state of the running block.
struct Block {
    const Launch* l;
    int n;               // threads
    bool fibers;         // fiber mode (the kernel synchronises)
    uint32_t gen;        // completed __syncthreads() + 1
    std::vector<uint32_t> warp_gen;
    std::vector<Region_> regions;
    size_t static_bytes;
    std::vector<unsigned char> arena;
    std::vector<Meta> meta;  // per region, concatenated
    // The first read of an element no thread had written yet. A write by another thread before
    // the next __syncthreads() makes it a race (a missing barrier: the usual case, since the
    // emulator runs threads in order and a reader of a higher thread's slot comes first);
    // otherwise it is reported at that barrier, or at the block's end, as a read of garbage.
    struct {
        bool any;
        const char* name;
        long i;
        ThreadState ts;
    } unwritten;
};

static const size_t kStack = 256 * 1024;
// Shared memory of one block: above the largest opt-in size of any architecture (227 KiB).
static const size_t kArena = 256 * 1024;

struct Worker {
    std::vector<Fiber> fibers;
    Block blk;
    jmp_buf sched;
    ucontext_t sched_uc;
    sigjmp_buf fault_jb;
    bool in_kernel = false;
    Fiber* current = nullptr;
    char msg[1024];
    std::vector<char> altstack;
};
static __thread Worker* W;

static Worker& worker() {
    if (!W) {
        W = new Worker();
        W->blk.arena.resize(kArena);
        W->blk.meta.resize(kArena);
        // Our SIGSEGV handler runs on this stack when a fiber's own stack is the problem.
        W->altstack.resize(64 * 1024);
        stack_t ss{};
        ss.ss_sp = W->altstack.data();
        ss.ss_size = W->altstack.size();
        stack_t old{};
        if (sigaltstack(nullptr, &old) == 0 && (old.ss_flags & SS_DISABLE)) sigaltstack(&ss, nullptr);
    }
    return *W;
}

static const char* kname() { return W && W->blk.l ? W->blk.l->kernel->name : "?"; }

void fault(const char* fmt, ...) {
    Worker& w = *W;
    int k = snprintf(w.msg, sizeof w.msg, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u): ", kname(),
                     cur.block_idx.x, cur.block_idx.y, cur.block_idx.z, cur.thread_idx.x, cur.thread_idx.y,
                     cur.thread_idx.z);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w.msg + k, sizeof w.msg - k, fmt, ap);
    va_end(ap);
    siglongjmp(w.fault_jb, 1);
}

static void thread_state(ThreadState& ts, const Launch& l, int tid) {
    ts.thread_idx = {(unsigned)tid % l.block.x, (unsigned)(tid / l.block.x) % l.block.y,
                     (unsigned)(tid / (l.block.x * l.block.y))};
    ts.block_idx = cur.block_idx;
    ts.block_dim = {l.block.x, l.block.y, l.block.z};
    ts.grid_dim = {l.grid.x, l.grid.y, l.grid.z};
    ts.tid = tid;
}

// A fiber's context is made once and reused: after each CUDA thread it parks at the top of
// this loop, and the next block resumes it there with a plain _longjmp (no signal-mask system
// call, which swapcontext makes): about 20 ns a thread instead of 2 µs.
static void fiber_main() {
    for (;;) {
        Worker& w = *W;
        Fiber* f = w.current;
        w.blk.l->kernel->call(w.blk.l->kernel->fn, w.blk.l->args);
        f->state = DONE;
        if (!_setjmp(f->jb)) _longjmp(w.sched, 1);
    }
}

// Back to the scheduler until the block's state lets this thread go on.
static void yield(Fiber* f) {
    if (!_setjmp(f->jb)) _longjmp(W->sched, 1);
    cur = f->ts;
}

static void switch_to(Worker& w, Fiber* f) {
    w.current = f;
    cur = f->ts;
    if (!_setjmp(w.sched)) {
        if (!f->created) {
            f->created = true;
            if (!f->stack) {
                void* p = mmap(nullptr, kStack + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                               -1, 0);
                if (p == MAP_FAILED) fault("cannot map a fiber stack");
                mprotect(p, 4096, PROT_NONE);  // overflow guard
                f->stack = static_cast<char*>(p);
            }
            getcontext(&f->uc);
            f->uc.uc_stack.ss_sp = f->stack + 4096;
            f->uc.uc_stack.ss_size = kStack;
            f->uc.uc_link = nullptr;
            makecontext(&f->uc, fiber_main, 0);
            swapcontext(&w.sched_uc, &f->uc);
        } else {
            _longjmp(f->jb, 1);
        }
    }
    w.current = nullptr;
}

static const char* op_name(int op) { return op == OP_SYNC ? "__syncwarp" : op == OP_SHFL ? "a shuffle" : "a vote"; }

// Completes every warp operation whose lanes have all arrived; faults on mismatched ones.
static bool release_warps(Worker& w) {
    Block& b = w.blk;
    bool released = false;
    for (int base = 0; base < b.n; base += 32) {
        for (int i = base; i < b.n && i < base + 32; ++i) {
            Fiber& f = w.fibers[i];
            if (f.state != WAIT_WARP) continue;
            unsigned m = f.mask;
            bool complete = true;
            for (int lane = 0; lane < 32; ++lane) {
                if (!(m >> lane & 1)) continue;
                int t = base + lane;
                cur = f.ts;
                if (t >= b.n) fault("%s with mask 0x%08x names lane %d, which the block does not have", op_name(f.op), m, lane);
                Fiber& g = w.fibers[t];
                if (g.state == DONE)
                    fault("%s with mask 0x%08x: lane %d has already exited", op_name(f.op), m, lane);
                if (g.state != WAIT_WARP) {
                    complete = false;
                    continue;
                }
                if (g.mask != m || g.op != f.op)
                    fault("lanes %d and %d of one warp wait at different warp operations (%s mask 0x%08x, %s mask 0x%08x)",
                          i - base, lane, op_name(f.op), m, op_name(g.op), g.mask);
            }
            if (!complete) continue;
            unsigned votes = 0;
            for (int lane = 0; lane < 32; ++lane)
                if (m >> lane & 1 && w.fibers[base + lane].post) votes |= 1u << lane;
            for (int lane = 0; lane < 32; ++lane) {
                if (!(m >> lane & 1)) continue;
                Fiber& g = w.fibers[base + lane];
                if (g.op == OP_SHFL) {
                    if (!(m >> g.src & 1)) {
                        cur = g.ts;
                        fault("a shuffle reads lane %d, which is not in its mask 0x%08x", g.src, m);
                    }
                    g.result = w.fibers[base + g.src].post;
                } else if (g.op == OP_BALLOT) {
                    g.result = votes;
                }
                g.state = READY;
            }
            if (f.op == OP_SYNC) b.warp_gen[base / 32]++;
            released = true;
        }
    }
    return released;
}

// At a __syncthreads() or the block's end: a read of unwritten shared memory that no write
// turned into a race is one of garbage.
static void check_unwritten(Block& b) {
    if (!b.unwritten.any) return;
    cur = b.unwritten.ts;
    fault("reads shared '%s'[%ld], which no thread of the block wrote before the next __syncthreads() or the "
          "block's end: shared memory starts as garbage",
          b.unwritten.name, b.unwritten.i);
}

static void run_fibers(Worker& w) {
    Block& b = w.blk;
    for (int t = 0; t < b.n; ++t) {
        Fiber& f = w.fibers[t];
        f.state = READY;
        thread_state(f.ts, *b.l, t);
    }
    for (;;) {
        for (int t = 0; t < b.n; ++t)
            if (w.fibers[t].state == READY) switch_to(w, &w.fibers[t]);
        int done = 0, at_block = 0, at_warp = 0, first_done = -1, first_block = -1;
        for (int t = 0; t < b.n; ++t) {
            int s = w.fibers[t].state;
            if (s == DONE && first_done < 0) first_done = t;
            if (s == WAIT_BLOCK && first_block < 0) first_block = t;
            done += s == DONE;
            at_block += s == WAIT_BLOCK;
            at_warp += s == WAIT_WARP;
        }
        if (done == b.n) return check_unwritten(b);
        if (release_warps(w)) continue;
        if (at_block > 0 && at_warp == 0) {
            if (done > 0) {
                cur = w.fibers[first_block].ts;
                fault("__syncthreads() reached by %d threads while %d threads of the block have exited (thread %d "
                      "among them): a barrier in divergent code",
                      at_block, done, first_done);
            }
            check_unwritten(b);
            b.gen++;
            for (int t = 0; t < b.n; ++t) w.fibers[t].state = READY;
            continue;
        }
        for (int t = 0; t < b.n; ++t)
            if (w.fibers[t].state == WAIT_WARP) {
                cur = w.fibers[t].ts;
                fault("deadlock: %s with mask 0x%08x waits for lanes that wait at __syncthreads() or never come "
                      "(%d threads at __syncthreads(), %d at warp operations, %d exited)",
                      op_name(w.fibers[t].op), w.fibers[t].mask, at_block, at_warp, done);
            }
        fault("deadlock in the scheduler (%d at __syncthreads(), %d at warp operations, %d exited)", at_block, at_warp,
              done);
    }
}

static void run_block(Worker& w, const Launch& l, long index) {
    Block& b = w.blk;
    cur.block_idx = {(unsigned)(index % l.grid.x), (unsigned)(index / l.grid.x % l.grid.y),
                     (unsigned)(index / ((long)l.grid.x * l.grid.y))};
    b.gen = 1;
    std::fill(b.warp_gen.begin(), b.warp_gen.end(), 1u);
    b.regions.clear();
    b.static_bytes = 0;
    b.unwritten.any = false;
    if (!b.fibers) {
        for (int t = 0; t < b.n; ++t) {
            thread_state(cur, l, t);
            l.kernel->call(l.kernel->fn, l.args);
        }
        return check_unwritten(b);
    }
    run_fibers(w);
}

void syncthreads() {
    Worker& w = *W;
    if (!w.blk.fibers)
        fault("__syncthreads() in a kernel whose PTX has no barrier: the stand-in library is older than the kernels "
              "(rebuild it with scripts/emulated-gpu.sh)");
    Fiber* f = w.current;
    f->state = WAIT_BLOCK;
    yield(f);
}

static uint64_t warp_op(int op, unsigned mask, uint64_t post, int src) {
    Worker& w = *W;
    if (!w.blk.fibers)
        fault("%s in a kernel whose PTX has no warp-synchronous instruction: the stand-in library is older than the "
              "kernels",
              op_name(op));
    int lane = cur.tid & 31;
    if (!(mask >> lane & 1)) fault("%s with mask 0x%08x, which does not name the calling lane %d", op_name(op), mask, lane);
    Fiber* f = w.current;
    f->state = WAIT_WARP;
    f->op = op;
    f->mask = mask;
    f->post = post;
    f->src = src;
    yield(f);
    return f->result;
}

void syncwarp(unsigned mask) { warp_op(OP_SYNC, mask, 0, 0); }
uint64_t shuffle(unsigned mask, uint64_t v, int src) { return warp_op(OP_SHFL, mask, v, src); }
unsigned ballot(unsigned mask, bool pred) { return (unsigned)warp_op(OP_BALLOT, mask, pred, 0); }

// ---- shared memory ---------------------------------------------------------------------------

static Region make_region(const void* key, size_t size, long n, const char* name, bool dynamic) {
    Worker& w = *W;
    Block& b = w.blk;
    for (auto& r : b.regions)
        if (r.key == key) return r.r;
    size_t bytes = size * (size_t)(n < 0 ? 0 : n);
    size_t total = b.static_bytes + b.l->dyn_smem + (dynamic ? 0 : bytes);
    if (total > b.l->smem_limit)
        fault("shared memory '%s': %zu bytes static + %zu dynamic exceed the %zu bytes this launch may use", name,
              b.static_bytes + (dynamic ? 0 : bytes), b.l->dyn_smem, b.l->smem_limit);
    size_t offset = 0, used = 0, meta_at = 0;
    for (auto& r : b.regions) {
        used = std::max(used, r.offset + r.bytes);
        meta_at += r.r.n;
    }
    offset = (used + 15) & ~size_t(15);
    // Capacity is fixed (kArena), so pointers other threads hold never move.
    if (offset + bytes > b.arena.size() || meta_at + n > b.meta.size())
        fault("shared memory '%s': %zu bytes do not fit the emulator's %zu", name, offset + bytes, b.arena.size());
    // Fresh shared memory holds garbage on a GPU: NaN here, so that reading it shows.
    memset(b.arena.data() + offset, 0xff, bytes);
    memset(b.meta.data() + meta_at, 0, sizeof(Meta) * n);
    if (!dynamic) b.static_bytes += bytes;
    Region_ rr{key, offset, bytes, Region{b.arena.data() + offset, b.meta.data() + meta_at, n, name}};
    b.regions.push_back(rr);
    return rr.r;
}

Region static_smem(const void* site, size_t size, long n, const char* name) {
    return make_region(site, size, n, name, false);
}

Region dynamic_smem(size_t size, const char* name) {
    Block& b = W->blk;
    return make_region(name, size, (long)(b.l->dyn_smem / size), name, true);
}

static inline uint32_t warp_gen(int tid) { return W->blk.warp_gen[tid / 32]; }

// Accesses by two threads are ordered when a __syncthreads() lies between them, or a
// __syncwarp() when both are lanes of one warp.
static inline bool ordered(int other, uint32_t other_gen, uint32_t other_warp, int me) {
    const Block& b = W->blk;
    if (other_gen != b.gen) return true;
    return (other - 1) / 32 == me / 32 && other_warp != warp_gen(me);
}

void on_read(Meta* m, const char* name, long i) {
    int me = cur.tid, t = me + 1;
    Block& b = W->blk;
    uint32_t g = b.gen;
    if (!m->writer) {
        if (!b.unwritten.any) b.unwritten = {true, name, i, cur};
    } else if (m->writer != t && !ordered(m->writer, m->wgen, m->wwarp, me)) {
        fault("race on shared '%s'[%ld]: reads what thread %d wrote, with no __syncthreads() between", name, i,
              m->writer - 1);
    }
    if (m->rgen != g) {
        m->reader = t;
        m->rgen = g;
        m->rwarp = warp_gen(me);
        m->multi = 0;
    } else if (m->reader != t) {
        m->multi = 1;
    }
}

void on_write(Meta* m, const char* name, long i) {
    int me = cur.tid, t = me + 1;
    uint32_t g = W->blk.gen;
    if (m->writer && m->writer != t && !ordered(m->writer, m->wgen, m->wwarp, me))
        fault("race on shared '%s'[%ld]: writes over what thread %d wrote, with no __syncthreads() between", name, i,
              m->writer - 1);
    if (m->rgen == g && (m->multi || (m->reader != t && !ordered(m->reader, m->rgen, m->rwarp, me)))) {
        char who[64];
        if (!m->multi) snprintf(who, sizeof who, "thread %d reads", m->reader - 1);
        else if (m->reader != t) snprintf(who, sizeof who, "threads %d and others read", m->reader - 1);
        else snprintf(who, sizeof who, "other threads read");
        fault("race on shared '%s'[%ld]: writes what %s, with no __syncthreads() between%s", name, i, who,
              m->writer ? "" : " (read before any thread wrote it)");
    }
    m->writer = t;
    m->wgen = g;
    m->wwarp = warp_gen(me);
}

// ---- worker threads --------------------------------------------------------------------------

struct Pool {
    std::mutex m;
    std::condition_variable start, finished;
    std::vector<std::thread> threads;
    uint64_t job = 0;
    int busy = 0;
    long n = 0;
    std::atomic<long> next{0};
    void (*body)(long, void*) = nullptr;
    void* ctx = nullptr;

    void drain() {
        for (long i; (i = next.fetch_add(1)) < n;) body(i, ctx);
    }
    void loop() {
        uint64_t seen = 0;
        for (;;) {
            {
                std::unique_lock<std::mutex> g(m);
                start.wait(g, [&] { return job != seen; });
                seen = job;
            }
            drain();
            std::lock_guard<std::mutex> g(m);
            if (--busy == 0) finished.notify_all();
        }
    }
};

static Pool& pool() {
    static Pool* p = [] {
        Pool* p = new Pool();
        unsigned hw = std::thread::hardware_concurrency();
        const char* e = getenv("SITDIV_STANDIN_THREADS");
        unsigned n = e ? (unsigned)atoi(e) : (hw ? hw : 2);
        if (n < 1) n = 1;
        if (n > 16) n = 16;
        for (unsigned i = 1; i < n; ++i) p->threads.emplace_back([p] { p->loop(); });
        for (auto& t : p->threads) t.detach();
        return p;
    }();
    return *p;
}

void parallel_for(long n, void (*body)(long, void*), void* ctx) {
    static std::mutex one_at_a_time;  // one launch or GEMM at a time, as on one stream
    std::lock_guard<std::mutex> serial(one_at_a_time);
    Pool& p = pool();
    {
        std::lock_guard<std::mutex> g(p.m);
        p.n = n;
        p.body = body;
        p.ctx = ctx;
        p.next = 0;
        p.busy = (int)p.threads.size();
        p.job++;
    }
    p.start.notify_all();
    p.drain();
    std::unique_lock<std::mutex> g(p.m);
    p.finished.wait(g, [&] { return p.busy == 0; });
}

// ---- launches --------------------------------------------------------------------------------

struct LaunchCtx {
    const Launch* l;
    std::atomic<bool> failed{false};
    std::mutex m;
    std::string error;
};

static void block_body(long index, void* p) {
    LaunchCtx& c = *static_cast<LaunchCtx*>(p);
    if (c.failed.load(std::memory_order_relaxed)) return;
    Worker& w = worker();
    const Launch& l = *c.l;
    Block& b = w.blk;
    b.l = &l;
    b.n = (int)(l.block.x * l.block.y * l.block.z);
    b.fibers = l.syncs;
    b.warp_gen.assign((b.n + 31) / 32, 1u);
    if (b.fibers && (int)w.fibers.size() < b.n) w.fibers.resize(b.n, Fiber{});
    w.in_kernel = true;
    if (sigsetjmp(w.fault_jb, 1)) {
        w.in_kernel = false;
        std::lock_guard<std::mutex> g(c.m);
        if (!c.failed.exchange(true)) c.error = w.msg;
        // The fibers were left inside the kernel: make their contexts anew.
        for (auto& f : w.fibers) f.created = false;
        return;
    }
    run_block(w, l, index);
    w.in_kernel = false;
}

static struct sigaction g_old_segv, g_old_bus;

static void on_signal(int sig, siginfo_t* info, void* uctx) {
    if (W && W->in_kernel) {
        uint64_t addr = (uint64_t)info->si_addr;
        bool write = false;
#if defined(__x86_64__)
        write = (static_cast<ucontext_t*>(uctx)->uc_mcontext.gregs[REG_ERR] & 2) != 0;
#endif
        std::string what = describe_fault_address(addr, write, W->blk.l);
        if (what.empty()) {
            char* s = W->current ? W->current->stack : nullptr;
            if (s && addr >= (uint64_t)s && addr < (uint64_t)s + 4096)
                what = "overflowed its stack (too much local memory)";
            else {
                char buf[96];
                snprintf(buf, sizeof buf, "%s address 0x%llx, outside every allocation", write ? "wrote" : "accessed",
                         (unsigned long long)addr);
                what = buf;
            }
        }
        fault("%s", what.c_str());
    }
    struct sigaction& old = sig == SIGSEGV ? g_old_segv : g_old_bus;
    if (old.sa_flags & SA_SIGINFO) {
        if (old.sa_sigaction) return old.sa_sigaction(sig, info, uctx);
    } else if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) {
        return old.sa_handler(sig);
    }
    signal(sig, SIG_DFL);  // re-raised by the faulting instruction
}

static void install_handlers() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa{};
        sa.sa_sigaction = on_signal;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &g_old_segv);
        sigaction(SIGBUS, &sa, &g_old_bus);
    });
}

std::string run(const Launch& l) {
    install_handlers();
    LaunchCtx c;
    c.l = &l;
    long blocks = (long)l.grid.x * l.grid.y * l.grid.z;
    parallel_for(blocks, block_body, &c);
    return c.failed ? c.error : std::string();
}

}  // namespace emu
