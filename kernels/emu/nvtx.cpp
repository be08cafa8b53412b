// A stand-in for NVTX (libnvToolsExt.so.1), the calls cudarc's nvtx module makes: instead of a
// profiler it counts ranges (pushed or started, by message) and marks, and the most ranges open
// at once (this thread's pushed ones and the started ones). Push and pop return the range's
// level as a tool attached to NVTX does (the library alone returns a negative "no tool" value).
// Wide-character (W) variants are absent: a range takes its name from an ASCII message.
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "standin.h"

namespace {

enum MessageType { MESSAGE_ASCII = 1 };

struct Attributes {  // nvtxEventAttributes_v2
    uint16_t version, size;
    uint32_t category;
    int32_t color_type;
    uint32_t color;
    int32_t payload_type, reserved0;
    uint64_t payload;
    int32_t message_type;
    const void* message;
};

const char* message(const Attributes* a) {
    if (!a) return "";
    return a->message_type == MESSAGE_ASCII && a->message ? static_cast<const char*>(a->message) : "(not ASCII)";
}

std::mutex m;
// Pushed ranges open, per thread and domain (null: the default one): levels count per domain.
std::map<std::pair<std::thread::id, const void*>, int> pushed;
std::map<std::thread::id, int> pushed_by_thread;
std::set<uint64_t> started;  // ids of started ranges not ended yet
uint64_t next_id = 1;
std::map<std::string, int> domains;  // a domain's handle points at its entry

int push(const void* domain, const char* name) {
    int level, open;
    {
        std::lock_guard<std::mutex> g(m);
        auto me = std::this_thread::get_id();
        level = pushed[{me, domain}]++;
        open = ++pushed_by_thread[me] + (int)started.size();
    }
    emu::count_nvtx_range(name, open);
    return level;
}

// The level of the range it ends; negative when none is open (the documentation names no value).
int pop(const void* domain) {
    std::lock_guard<std::mutex> g(m);
    auto me = std::this_thread::get_id();
    int& d = pushed[{me, domain}];
    if (d == 0) return -1;
    pushed_by_thread[me]--;
    return --d;
}

uint64_t start(const char* name) {
    uint64_t id;
    int open;
    {
        std::lock_guard<std::mutex> g(m);
        id = next_id++;
        started.insert(id);
        open = pushed_by_thread[std::this_thread::get_id()] + (int)started.size();
    }
    emu::count_nvtx_range(name, open);
    return id;
}

void end(uint64_t id) {
    std::lock_guard<std::mutex> g(m);
    started.erase(id);
}

void* domain(const char* name) {
    std::lock_guard<std::mutex> g(m);
    return &domains[name ? name : ""];
}

}  // namespace

extern "C" {

int nvtxRangePushA(const char* msg) { return push(nullptr, msg ? msg : ""); }
int nvtxRangePushEx(const Attributes* a) { return push(nullptr, message(a)); }
int nvtxRangePop() { return pop(nullptr); }
uint64_t nvtxRangeStartA(const char* msg) { return start(msg ? msg : ""); }
uint64_t nvtxRangeStartEx(const Attributes* a) { return start(message(a)); }
void nvtxRangeEnd(uint64_t id) { end(id); }
void nvtxMarkA(const char*) { emu::count_nvtx_mark(); }
void nvtxMarkEx(const Attributes*) { emu::count_nvtx_mark(); }
void nvtxNameCategoryA(uint32_t, const char*) {}
void nvtxNameOsThreadA(uint32_t, const char*) {}

void* nvtxDomainCreateA(const char* name) { return domain(name); }
void nvtxDomainDestroy(void*) {}
int nvtxDomainRangePushEx(void* domain, const Attributes* a) { return push(domain, message(a)); }
int nvtxDomainRangePop(void* domain) { return pop(domain); }
uint64_t nvtxDomainRangeStartEx(void*, const Attributes* a) { return start(message(a)); }
void nvtxDomainRangeEnd(void*, uint64_t id) { end(id); }
void nvtxDomainMarkEx(void*, const Attributes*) { emu::count_nvtx_mark(); }
void nvtxDomainNameCategoryA(void*, uint32_t, const char*) {}

}  // extern "C"
