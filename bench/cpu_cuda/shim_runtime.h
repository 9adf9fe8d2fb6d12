// shim_runtime.h: the execution model behind cuda_shim.h (threads of a block, barriers, shared
// memory poisoning, launches, half conversions, the libm ulp knob, error reports). Only
// cuda_shim.h includes it; see that header for what the model is and is not.
#pragma once


#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

namespace shim {

inline thread_local uint3 tl_thread, tl_block;
inline thread_local dim3 tl_bdim, tl_gdim;

// ---- bit casts, half precision -----------------------------------------------------------------
template <typename To, typename From>
inline To bits(From v) {
    static_assert(sizeof(To) == sizeof(From), "bit cast between different sizes");
    To out;
    memcpy(&out, &v, sizeof out);
    return out;
}

// float -> IEEE binary16 bits, round to nearest even; NaN -> 0x7fff (the canonical NaN CUDA's
// conversions give; numpy keeps the payload, so the harness compares NaN as NaN, not by bits).
inline uint16_t f32_to_f16_rn(float f) {
    const uint32_t x = bits<uint32_t>(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return 0x7fffu;
    if (ax >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 (half-way past 65504): infinity
    if (ax < 0x38800000u) {                          // below 2^-14: a subnormal half or zero
        const uint32_t e = ax >> 23;
        const uint32_t shift = 126u - e;             // units of 2^-24
        if (e == 0 || shift > 24u) return sign;      // < 2^-25 (2^-25 itself ties to 0)
        const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t q = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) ++q;
        return (uint16_t)(sign | q);
    }
    uint32_t h = (ax >> 13) - (112u << 10);          // rebias 127 -> 15
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return (uint16_t)(sign | h);
}

inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 31) return bits<float>(sign | 0x7f800000u | (m << 13));
    if (e != 0) return bits<float>(sign | ((e + 112u) << 23) | (m << 13));
    const float mag = (float)m * 5.9604644775390625e-08f;  // m * 2^-24, exact
    return sign ? -mag : mag;
}

// ---- inline PTX that build.py translates -----------------------------------------------------
inline void ptx_cvt_rn_f16_f32(unsigned short& d, float a) { d = f32_to_f16_rn(a); }

// ---- device math: libm, optionally moved by whole ulps ----------------------------------------
inline std::atomic<int> g_ulp_mode{0};  // 0 exact, 1 up, 2 down, 3 random sign per call
inline std::atomic<long long> g_ulps{1};
inline thread_local uint64_t tl_rng = 0x9e3779b97f4a7c15ull;

// r moved by g_ulps units in the last place (stepping the bit pattern; it stops at zero and at
// the largest finite value instead of changing sign or becoming infinite).
template <typename T>
inline T nudge(T r) {
    using I = std::conditional_t<sizeof(T) == 8, int64_t, int32_t>;
    const int mode = g_ulp_mode.load(std::memory_order_relaxed);
    if (mode == 0 || !std::isfinite(r) || r == 0) return r;
    bool up = mode == 1;
    if (mode == 3) {
        tl_rng ^= tl_rng << 13;
        tl_rng ^= tl_rng >> 7;
        tl_rng ^= tl_rng << 17;
        up = (tl_rng >> 32) & 1u;
    }
    const I mag = bits<I>(std::fabs(r)), top = bits<I>(std::numeric_limits<T>::max());
    const I step = (I)std::min<long long>(g_ulps.load(std::memory_order_relaxed), top);
    const bool grow = up == (r > 0);  // away from zero
    const I moved = grow ? (mag > top - step ? top : mag + step) : (mag < step ? 0 : mag - step);
    return std::copysign(bits<T>(moved), r);
}

// ---- errors (read by the host through shim_errors) -------------------------------------------
struct Errors {
    std::mutex m;
    std::string text;
    long count = 0;
    long divergent = 0;
};
inline Errors g_errors;

inline void report(const std::string& what, bool divergence) {
    std::lock_guard<std::mutex> lock(g_errors.m);
    ++g_errors.count;
    if (divergence) ++g_errors.divergent;
    if (g_errors.count <= 20) g_errors.text += what + "\n";
}

// ---- one block's threads: barrier with drop-out, block hand-over -----------------------------
extern "C" char __start_shim_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_shim_shared[] __attribute__((weak, visibility("hidden")));

// Every __shared__ variable of the library to 0xff bytes (float/double NaN, int -1).
inline void poison_shared() {
    char *begin = __start_shim_shared, *end = __stop_shim_shared;
    if (begin != end) memset(begin, 0xff, (size_t)(end - begin));
}

// Schedules of the threads of a block. 0 free: the OS runs them concurrently (real races).
// 1 forward / 2 reverse: one thread at a time, in rank order / reverse rank order, each until its
// next barrier or its return. Both are legal CUDA schedules (nothing guarantees that threads
// progress together between barriers) and make a missing barrier fail every time, not by luck.
inline std::atomic<int> g_schedule{0};

struct BlockTeam {
    std::mutex m;
    int schedule = 0;
    unsigned nthreads = 0, live = 0, arrived = 0, finished = 0;
    int site = -1;                    // line of the __syncthreads the waiting threads stand at
    bool site_conflict = false;
    std::atomic<unsigned> barrier_gen{0};
    std::atomic<unsigned> block_gen{0};
    std::vector<unsigned> passed;     // barriers each thread passed in this block
    std::vector<char> exited;         // ordered schedules: the thread returned in this block
    std::unique_ptr<std::atomic<unsigned>[]> gate;  // ordered schedules: 1 = the thread's turn
    unsigned turn = 0;                // ordered schedules: position of the running thread
    uint3 block{0, 0, 0};

    unsigned rank_at(unsigned pos) const { return schedule == 2 ? nthreads - 1 - pos : pos; }

    void open(unsigned pos) {
        turn = pos;
        gate[rank_at(pos)].store(1, std::memory_order_release);
        gate[rank_at(pos)].notify_one();
    }

    void wait_turn(unsigned rank) {
        gate[rank].wait(0, std::memory_order_acquire);
        gate[rank].store(0, std::memory_order_relaxed);
    }

    // Ordered: the turn goes to the next live thread of this round (from position `from`).
    void pass_turn_locked(unsigned from) {
        for (unsigned pos = from; pos < nthreads; ++pos)
            if (!exited[rank_at(pos)]) return open(pos);
    }

    void release_locked() {           // every live thread has arrived: open the barrier
        arrived = 0;
        site = -1;
        if (schedule) return pass_turn_locked(0);
        barrier_gen.fetch_add(1, std::memory_order_release);
        barrier_gen.notify_all();
    }
};

inline thread_local BlockTeam* tl_team = nullptr;
inline thread_local unsigned tl_rank = 0;

inline std::string where(const BlockTeam& t) {
    char buf[96];
    snprintf(buf, sizeof buf, "block (%u, %u, %u)", t.block.x, t.block.y, t.block.z);
    return buf;
}

inline void syncthreads(int line) {
    BlockTeam& t = *tl_team;
    std::unique_lock<std::mutex> lock(t.m);
    if (t.arrived == 0) {
        t.site = line;
    } else if (t.site != line && !t.site_conflict) {
        t.site_conflict = true;
        report("divergent __syncthreads in " + where(t) + ": threads wait at lines " +
                   std::to_string(t.site) + " and " + std::to_string(line), true);
    }
    ++t.passed[tl_rank];
    ++t.arrived;
    const unsigned gen = t.barrier_gen.load(std::memory_order_acquire);
    if (t.arrived == t.live) {
        t.release_locked();
    } else if (t.schedule) {
        t.pass_turn_locked(t.turn + 1);
    } else {
        lock.unlock();
        t.barrier_gen.wait(gen, std::memory_order_acquire);
        return;
    }
    if (t.schedule) {
        lock.unlock();
        t.wait_turn(tl_rank);
    }
}

// The calling thread returned from the running block; the last one checks the block, poisons
// the shared memory and opens the next block (grid: the launch's, for the block coordinates).
inline void finish_block(BlockTeam& t, const dim3& grid) {
    std::unique_lock<std::mutex> lock(t.m);
    --t.live;
    ++t.finished;
    if (t.schedule) t.exited[tl_rank] = 1;
    if (t.finished < t.nthreads) {
        if (t.arrived > 0 && t.arrived == t.live) {
            t.release_locked();       // it dropped out of a barrier the others wait at
        } else if (t.schedule) {
            t.pass_turn_locked(t.turn + 1);
        }
        if (t.schedule) return;       // its turn in the next block comes through its gate
        const unsigned gen = t.block_gen.load(std::memory_order_acquire);
        lock.unlock();
        t.block_gen.wait(gen, std::memory_order_acquire);
        return;
    }
    unsigned lo = t.passed[0], hi = t.passed[0];
    for (unsigned p : t.passed) {
        lo = p < lo ? p : lo;
        hi = p > hi ? p : hi;
    }
    if (lo != hi)
        report("divergent barriers in " + where(t) + ": a thread returned after " +
                   std::to_string(lo) + " __syncthreads, another passed " + std::to_string(hi),
               true);
    poison_shared();
    for (unsigned& p : t.passed) p = 0;
    if (++t.block.x == grid.x) {
        t.block.x = 0;
        if (++t.block.y == grid.y) {
            t.block.y = 0;
            ++t.block.z;
        }
    }
    t.live = t.nthreads;
    t.finished = 0;
    t.arrived = 0;
    t.site = -1;
    t.site_conflict = false;
    if (t.schedule) {
        for (char& e : t.exited) e = 0;
        t.open(0);
        return;
    }
    t.block_gen.fetch_add(1, std::memory_order_release);
    t.block_gen.notify_all();
}

struct Launch {
    dim3 grid, block;
    BlockTeam team;
    void (*body)(void*);              // runs the kernel once for the calling thread
    void* args;
};

struct Worker {
    Launch* launch;
    unsigned rank;
};

inline void* worker_main(void* p) {
    const Worker w = *static_cast<Worker*>(p);
    Launch& l = *w.launch;
    tl_team = &l.team;
    tl_rank = w.rank;
    tl_bdim = l.block;
    tl_gdim = l.grid;
    tl_thread = {w.rank % l.block.x, (w.rank / l.block.x) % l.block.y,
                 w.rank / (l.block.x * l.block.y)};
    for (unsigned z = 0; z < l.grid.z; ++z)
        for (unsigned y = 0; y < l.grid.y; ++y)
            for (unsigned x = 0; x < l.grid.x; ++x) {
                tl_block = {x, y, z};
                if (l.team.schedule) l.team.wait_turn(w.rank);
                l.body(l.args);
                finish_block(l.team, l.grid);
            }
    return nullptr;
}

// CUDA's launch limits (every GPU since compute 3.0); 1 = CUDA_ERROR_INVALID_VALUE.
inline int check_config(const dim3& g, const dim3& b) {
    const unsigned long long threads = (unsigned long long)b.x * b.y * b.z;
    if (!g.x || !g.y || !g.z || !threads || threads > 1024 || b.x > 1024 || b.y > 1024 ||
        b.z > 64 || g.x > 2147483647u || g.y > 65535 || g.z > 65535)
        return 1;
    return 0;
}

inline int run(Launch& l) {
    const unsigned n = l.block.x * l.block.y * l.block.z;
    l.team.nthreads = l.team.live = n;
    l.team.passed.assign(n, 0);
    l.team.schedule = g_schedule.load();
    if (l.team.schedule) {
        l.team.exited.assign(n, 0);
        l.team.gate.reset(new std::atomic<unsigned>[n]);
        for (unsigned i = 0; i < n; ++i) l.team.gate[i].store(0);
        l.team.open(0);
    }
    poison_shared();
    std::vector<pthread_t> threads(n);
    std::vector<Worker> workers(n);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1u << 20);
    unsigned started = 0;
    for (; started < n; ++started) {
        workers[started] = {&l, started};
        if (pthread_create(&threads[started], &attr, worker_main, &workers[started]) != 0) break;
    }
    pthread_attr_destroy(&attr);
    if (started < n) {  // cannot happen in a sane process; the started threads would wait forever
        report("could not start " + std::to_string(n) + " threads", false);
        std::abort();
    }
    for (pthread_t& t : threads) pthread_join(t, nullptr);
    return 0;
}

// Kernel parameters as the driver reads them: params[i] points at parameter i's bytes.
template <typename... A>
struct Kernel {
    using Args = std::tuple<std::decay_t<A>...>;
    template <size_t... I>
    static Args read(void** params, std::index_sequence<I...>) {
        return Args{*static_cast<const std::tuple_element_t<I, Args>*>(params[I])...};
    }
};

template <typename... A>
inline int launch(void (*fn)(A...), const unsigned* grid, const unsigned* block, void** params) {
    using K = Kernel<A...>;
    Launch l;
    l.grid = {grid[0], grid[1], grid[2]};
    l.block = {block[0], block[1], block[2]};
    if (int err = check_config(l.grid, l.block)) return err;
    typename K::Args args = K::read(params, std::index_sequence_for<A...>{});  // copied at launch
    struct Call {
        void (*fn)(A...);
        typename K::Args* args;
    } call{fn, &args};
    l.args = &call;
    l.body = [](void* p) {
        Call& c = *static_cast<Call*>(p);
        std::apply(c.fn, *c.args);
    };
    return run(l);
}

template <typename... A>
constexpr int param_count(void (*)(A...)) {
    return sizeof...(A);
}

}  // namespace shim
