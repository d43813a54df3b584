// cuda_host_shim.h: compile CUDA C kernels as ordinary host C++ (g++ -std=c++17), for the simgpu test tool.
//
// The CUDA keywords are defined away, the built-ins (threadIdx, blockIdx, blockDim, gridDim) are globals that the
// launcher sets, and `__shared__` becomes `static` (one copy, reused by the blocks, which run one after another).
// A launch runs the grid's blocks in sequence. The threads of a block run either in a plain loop (kernels with no
// barrier or warp primitive: the Python side decides per kernel from the source) or cooperatively, one fiber per
// CUDA thread (started on its own stack with makecontext/setcontext, then switched with _setjmp/_longjmp, which
// need no signal-mask system call: 4x faster than swapcontext; build with -U_FORTIFY_SOURCE, whose longjmp check
// refuses a jump to another stack): a fiber runs until it reaches `__syncthreads()` (or a warp primitive) and the
// scheduler resumes the next;
// a barrier opens when every live thread of the block (of the warp, for warp primitives) waits at it. Warp shuffles
// and votes exchange values through one slot per thread between two warp barriers. Everything runs on one OS thread,
// so atomics are plain read-modify-writes.
//
// simgpu appends `SIMGPU_EXPORT(name)` for each `extern "C" __global__` kernel; it exports
// `simgpu_launch_<name>` (arguments passed as a `void*[]` of pointers to each value, cast to the parameter types that
// the template deduces from the kernel's own function type) and `simgpu_signature_<name>` (the parameter types as
// codes such as "i4,*f4", so Python can check what it passes).
#pragma once

#include <assert.h>
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <ucontext.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__
#define __noinline__
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) alignas(n)
#define __shared__ static
#define __constant__ static

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

static uint3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static const int warpSize = 32;

namespace simgpu {

struct KernelError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
[[noreturn]] inline void fail(const std::string& msg) { throw KernelError(msg); }

enum State { RUNNABLE, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };
struct Fiber {
    ucontext_t ctx;  // only to start the fiber on its stack
    jmp_buf env;     // where it waits (switches use _setjmp/_longjmp: no signal-mask syscall, unlike swapcontext)
    bool started;
    uint3 tid;
    State state;
};

static const size_t kStackBytes = 256 * 1024;
static std::mutex g_mutex;  // one launch at a time per module: the built-ins and __shared__ are globals
static std::string g_error;
static jmp_buf g_scheduler;
static std::vector<Fiber> g_fibers;  // the threads of the running block (cooperative mode)
static int g_current = -1;           // index of the running fiber; -1 in plain mode
static std::vector<uint64_t> g_slots;
static std::function<void()> g_body;
static unsigned char* g_dynamic_smem = nullptr;

inline unsigned linear_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }

// Suspend the running fiber until the barrier it waits at opens.
inline void wait(State where) {
    if (g_current < 0) fail("a barrier or warp primitive ran in a kernel launched without fibers (simgpu bug)");
    Fiber& self = g_fibers[g_current];
    self.state = where;
    asm volatile("" ::: "memory");
    if (!_setjmp(self.env)) _longjmp(g_scheduler, 1);
    asm volatile("" ::: "memory");
}

inline void fiber_main() {
    try {
        g_body();
    } catch (const std::exception& err) {
        if (g_error.empty()) g_error = err.what();
    }
    g_fibers[g_current].state = DONE;
    _longjmp(g_scheduler, 1);  // never returns: the scheduler resumes
}

// Open the barriers every live waiter has reached. Returns an error (a deadlock, or a warp primitive that lanes which
// already exited cannot take part in) or an empty string.
inline std::string open_barriers() {
    const size_t n = g_fibers.size();
    bool opened = false, all_at_block = true, any_live = false;
    for (size_t w = 0; w < n; w += 32) {
        bool warp_ready = false, warp_blocked = false, warp_exited = false;
        for (size_t i = w; i < n && i < w + 32; ++i) {
            warp_ready = warp_ready || g_fibers[i].state == AT_WARP_BARRIER;
            warp_blocked = warp_blocked || g_fibers[i].state == AT_BLOCK_BARRIER;
            warp_exited = warp_exited || g_fibers[i].state == DONE;
        }
        if (warp_ready && warp_exited)
            return "a warp primitive with the full mask ran after lanes of its warp had exited (undefined on a GPU: "
                   "the exited lanes' values are garbage)";
        if (warp_ready && !warp_blocked) {
            for (size_t i = w; i < n && i < w + 32; ++i) g_fibers[i].state = RUNNABLE;
            opened = true;
        }
    }
    if (opened) return "";
    for (auto& f : g_fibers) {
        if (f.state == DONE) continue;
        any_live = true;
        all_at_block = all_at_block && f.state == AT_BLOCK_BARRIER;
    }
    if (any_live && !all_at_block)
        return "deadlock: the threads of a block wait at different barriers (__syncthreads in divergent code, or a "
               "warp primitive that not all lanes of a warp reach)";
    for (auto& f : g_fibers)
        if (f.state == AT_BLOCK_BARRIER) f.state = RUNNABLE;  // threads that exited count as arrived
    return "";
}

inline void run_block_cooperatively(char* stacks) {
    const unsigned n = static_cast<unsigned>(g_fibers.size());
    for (unsigned i = 0; i < n; ++i) {
        Fiber& f = g_fibers[i];
        f.tid = {i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y)};
        f.state = RUNNABLE;
        f.started = false;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = stacks + static_cast<size_t>(i) * kStackBytes;
        f.ctx.uc_stack.ss_size = kStackBytes;
        f.ctx.uc_link = nullptr;
        makecontext(&f.ctx, fiber_main, 0);
    }
    for (;;) {
        bool live = false;
        for (unsigned i = 0; i < n; ++i) {
            if (g_fibers[i].state != RUNNABLE) continue;
            g_current = static_cast<int>(i);
            threadIdx = g_fibers[i].tid;
            if (!_setjmp(g_scheduler)) {
                if (g_fibers[i].started) _longjmp(g_fibers[i].env, 1);
                g_fibers[i].started = true;
                setcontext(&g_fibers[i].ctx);
            }
            if (!g_error.empty()) return;
        }
        for (auto& f : g_fibers) live = live || f.state != DONE;
        if (!live) return;
        g_error = open_barriers();
        if (!g_error.empty()) return;
    }
}

inline int run_grid(const unsigned* grid, const unsigned* block, size_t shared_mem, bool cooperative) {
    gridDim = dim3(grid[0], grid[1], grid[2]);
    blockDim = dim3(block[0], block[1], block[2]);
    const unsigned n = block[0] * block[1] * block[2];
    std::unique_ptr<unsigned char[]> smem(new unsigned char[shared_mem + 256]);
    g_dynamic_smem = smem.get() + (256 - reinterpret_cast<uintptr_t>(smem.get()) % 256);
    std::unique_ptr<char[]> stacks;
    if (cooperative) {
        stacks.reset(new char[static_cast<size_t>(n) * kStackBytes]);
        g_fibers.assign(n, Fiber{});
        g_slots.assign(n, 0);
    }
    for (unsigned bz = 0; bz < grid[2] && g_error.empty(); ++bz)
        for (unsigned by = 0; by < grid[1] && g_error.empty(); ++by)
            for (unsigned bx = 0; bx < grid[0] && g_error.empty(); ++bx) {
                blockIdx = {bx, by, bz};
                if (cooperative) {
                    run_block_cooperatively(stacks.get());
                    continue;
                }
                g_current = -1;
                try {
                    for (unsigned i = 0; i < n; ++i) {
                        threadIdx = {i % block[0], (i / block[0]) % block[1], i / (block[0] * block[1])};
                        g_body();
                    }
                } catch (const std::exception& err) {
                    g_error = err.what();
                }
            }
    g_fibers.clear();
    g_current = -1;
    g_dynamic_smem = nullptr;
    return g_error.empty() ? 0 : 1;
}

template <class T>
std::string type_code() {
    if constexpr (std::is_pointer_v<T>) {
        using U = std::remove_cv_t<std::remove_pointer_t<T>>;
        if constexpr (std::is_void_v<U>)
            return "*v";
        else
            return "*" + type_code<U>();
    } else if constexpr (std::is_same_v<T, bool>) {
        return "b1";
    } else if constexpr (std::is_floating_point_v<T>) {
        return "f" + std::to_string(sizeof(T));
    } else if constexpr (std::is_integral_v<T>) {
        return (std::is_signed_v<T> ? "i" : "u") + std::to_string(sizeof(T));
    } else {
        return "?" + std::to_string(sizeof(T));  // a struct passed by value: Python refuses it
    }
}

template <class... P>
std::string signature(void (*)(P...)) {
    std::string s;
    ((s += type_code<std::remove_cv_t<P>>() + ","), ...);
    if (!s.empty()) s.pop_back();
    return s;
}

template <class... P, size_t... I>
void invoke(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<P>*>(args[I])...);
}

template <class... P>
int launch(void (*kernel)(P...), int nargs, const unsigned* grid, const unsigned* block, size_t shared_mem,
           void** args, int cooperative) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_error.clear();
    if (nargs != static_cast<int>(sizeof...(P))) {
        g_error = "the kernel takes " + std::to_string(sizeof...(P)) + " arguments, " + std::to_string(nargs) +
                  " were given";
        return 1;
    }
    g_body = [=] { invoke(kernel, args, std::index_sequence_for<P...>{}); };
    return run_grid(grid, block, shared_mem, cooperative != 0);
}

inline void check_mask(unsigned mask) {
    if (mask != 0xffffffffu) fail("simgpu simulates warp primitives with the full mask 0xffffffff only");
    if ((linear_tid() & ~31u) + 32 > g_slots.size())
        fail("a warp primitive with the full mask in a partial warp (threads per block not a multiple of 32): "
             "undefined on a GPU");
}

template <class T>
T shuffle(unsigned mask, T var, unsigned src_lane, bool valid) {
    static_assert(sizeof(T) <= sizeof(uint64_t), "simgpu shuffles values of at most 8 bytes");
    check_mask(mask);
    const unsigned me = linear_tid();
    std::memcpy(&g_slots[me], &var, sizeof(T));
    wait(AT_WARP_BARRIER);
    const unsigned src = (me & ~31u) + src_lane;
    T out = var;
    if (valid && src < g_slots.size()) std::memcpy(&out, &g_slots[src], sizeof(T));
    wait(AT_WARP_BARRIER);  // nobody overwrites a slot before every lane has read
    return out;
}

inline unsigned ballot(unsigned mask, int predicate) {
    check_mask(mask);
    const unsigned me = linear_tid();
    g_slots[me] = predicate != 0;
    wait(AT_WARP_BARRIER);
    unsigned bits = 0;
    for (unsigned lane = 0; lane < 32 && (me & ~31u) + lane < g_slots.size(); ++lane)
        if (g_slots[(me & ~31u) + lane]) bits |= 1u << lane;
    wait(AT_WARP_BARRIER);
    return bits;
}

}  // namespace simgpu

// ---- CUDA device API on the host --------------------------------------------------------------------------------
inline void __syncthreads() { simgpu::wait(simgpu::AT_BLOCK_BARRIER); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    simgpu::check_mask(mask);
    simgpu::wait(simgpu::AT_WARP_BARRIER);
}
inline void __threadfence() {}
inline void __threadfence_block() {}
[[noreturn]] inline void __trap() { simgpu::fail("__trap() called"); }

template <class T>
T __shfl_sync(unsigned mask, T var, int src, int width = warpSize) {
    const unsigned lane = simgpu::linear_tid() % 32, base = lane & ~(width - 1);
    return simgpu::shuffle(mask, var, base + (static_cast<unsigned>(src) % width), true);
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
    const unsigned lane = simgpu::linear_tid() % 32, base = lane & ~(width - 1);
    return simgpu::shuffle(mask, var, lane + delta, lane + delta < base + width);
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
    const unsigned lane = simgpu::linear_tid() % 32, base = lane & ~(width - 1);
    return simgpu::shuffle(mask, var, lane - delta, lane >= base + delta);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
    const unsigned lane = simgpu::linear_tid() % 32, base = lane & ~(width - 1);
    const unsigned src = lane ^ static_cast<unsigned>(lane_mask);
    return simgpu::shuffle(mask, var, src, src >= base && src < base + width);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) { return simgpu::ballot(mask, predicate); }
inline int __any_sync(unsigned mask, int predicate) { return simgpu::ballot(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) {
    const unsigned want = simgpu::ballot(mask, 1);
    return simgpu::ballot(mask, predicate) == want;
}

// One OS thread runs every CUDA thread and fibers switch only at barriers: atomics are plain updates.
template <class T, class U>
T atomicAdd(T* p, U v) {
    T old = *p;
    *p = static_cast<T>(old + v);
    return old;
}
template <class T, class U>
T atomicSub(T* p, U v) {
    T old = *p;
    *p = static_cast<T>(old - v);
    return old;
}
template <class T, class U>
T atomicExch(T* p, U v) {
    T old = *p;
    *p = static_cast<T>(v);
    return old;
}
template <class T, class U>
T atomicMax(T* p, U v) {
    T old = *p;
    *p = old < static_cast<T>(v) ? static_cast<T>(v) : old;
    return old;
}
template <class T, class U>
T atomicMin(T* p, U v) {
    T old = *p;
    *p = static_cast<T>(v) < old ? static_cast<T>(v) : old;
    return old;
}
template <class T, class U, class V>
T atomicCAS(T* p, U compare, V v) {
    T old = *p;
    if (old == static_cast<T>(compare)) *p = static_cast<T>(v);
    return old;
}
template <class T, class U>
T atomicAnd(T* p, U v) {
    T old = *p;
    *p = old & v;
    return old;
}
template <class T, class U>
T atomicOr(T* p, U v) {
    T old = *p;
    *p = old | v;
    return old;
}
template <class T, class U>
T atomicXor(T* p, U v) {
    T old = *p;
    *p = old ^ v;
    return old;
}

template <class A, class B>
inline auto min(A a, B b) -> std::common_type_t<A, B> {
    return b < a ? b : a;
}
template <class A, class B>
inline auto max(A a, B b) -> std::common_type_t<A, B> {
    return a < b ? b : a;
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __frcp_rn(float x) { return 1.0f / x; }
template <class T>
inline T __ldg(const T* p) {
    return *p;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned __float_as_uint(float x) {
    unsigned u;
    std::memcpy(&u, &x, 4);
    return u;
}
inline float __uint_as_float(unsigned u) {
    float x;
    std::memcpy(&x, &u, 4);
    return x;
}
inline int __float_as_int(float x) { return static_cast<int>(__float_as_uint(x)); }
inline float __int_as_float(int i) { return __uint_as_float(static_cast<unsigned>(i)); }
inline long long __double_as_longlong(double x) {
    long long i;
    std::memcpy(&i, &x, 8);
    return i;
}
inline double __longlong_as_double(long long i) {
    double x;
    std::memcpy(&x, &i, 8);
    return x;
}

extern "C" const char* simgpu_last_error() { return simgpu::g_error.c_str(); }

#define SIMGPU_EXPORT(name)                                                                                     \
    extern "C" int simgpu_launch_##name(int nargs, const unsigned* grid, const unsigned* block, size_t smem,     \
                                        void** args, int cooperative) {                                         \
        return simgpu::launch(name, nargs, grid, block, smem, args, cooperative);                               \
    }                                                                                                           \
    extern "C" const char* simgpu_signature_##name() {                                                          \
        static const std::string s = simgpu::signature(name);                                                   \
        return s.c_str();                                                                                       \
    }
