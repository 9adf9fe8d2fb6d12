// cuda_shim.h: compile the package's CUDA kernels (trt_pose_td/cuda/kernels/*.cu) with g++ and
// run them on the CPU. A TEST HARNESS, NOT A GPU (see docs/gpu-runtime.md, "The kernel source on a
// CPU"). build.py force-includes this header before the .cu text (-include), so the .cu files
// compile as they ship; the only translation is inline PTX (`asm(...)`), which build.py maps to the
// ptx_* functions of shim_runtime.h and refuses when it does not know the instruction.
//
// Execution model, per launch (shim::launch):
//   - the blocks of the grid run one after another (x fastest, then y, then z);
//   - the threads of a block are real OS threads (one pthread per thread of the block, reused for
//     every block of the launch), so __syncthreads is a real barrier and the threads really race
//     (schedule "free"), or take turns in rank / reverse rank order between barriers (schedules
//     "forward" / "reverse": deterministic, so a missing barrier fails every time);
//   - __shared__ variables are static storage in the section "shim_shared": one copy, shared by
//     the threads of the running block, poisoned with 0xFF bytes (NaN / -1) before every block,
//     so reading shared memory no thread of this block wrote shows up;
//   - a thread that returns drops out of later barriers (what the hardware does with exited
//     warps); it is still reported, as are barriers whose waiting threads stand at different
//     __syncthreads (a barrier in divergent code): the CUDA guide leaves both undefined;
//   - float / double arithmetic is IEEE with no contraction (-ffp-contract=off), as the kernels
//     are compiled with --fmad=false; float -> half is round-to-nearest-even (cvt.rn.f16.f32);
//   - libm's log / exp stand in for libdevice's; shim_set_math_ulps() moves every result by whole
//     ulps (up, down or a random sign per call) to measure how much the kernels depend on them.
#pragma once

#include "shim_runtime.h"

// ---- what the kernels see ----------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __shared__ static __attribute__((section("shim_shared")))
#define __syncthreads() ::shim::syncthreads(__LINE__)
#define threadIdx (static_cast<const uint3&>(::shim::tl_thread))
#define blockIdx (static_cast<const uint3&>(::shim::tl_block))
#define blockDim (static_cast<const dim3&>(::shim::tl_bdim))
#define gridDim (static_cast<const dim3&>(::shim::tl_gdim))

struct __half {
    unsigned short x;
};
inline float __int_as_float(int v) { return ::shim::bits<float>(v); }
inline int __float_as_int(float v) { return ::shim::bits<int>(v); }
inline float __uint_as_float(unsigned v) { return ::shim::bits<float>(v); }
inline unsigned __float_as_uint(float v) { return ::shim::bits<unsigned>(v); }
inline double __longlong_as_double(long long v) { return ::shim::bits<double>(v); }
inline long long __double_as_longlong(double v) { return ::shim::bits<long long>(v); }
inline __half __float2half(float v) { return __half{::shim::f32_to_f16_rn(v)}; }
inline __half __float2half_rn(float v) { return __half{::shim::f32_to_f16_rn(v)}; }
inline float __half2float(__half h) { return ::shim::f16_to_f32(h.x); }
inline unsigned short __half_as_ushort(__half h) { return h.x; }
inline __half __ushort_as_half(unsigned short v) { return __half{v}; }

// Transcendentals: libm (correctly rounded or within 1 ulp) for libdevice (within 1-2 ulp, see
// the CUDA guide's accuracy tables); the __ intrinsics' larger errors are not modelled beyond
// shim_set_math_ulps.
#define log(...) ::shim::nudge(::log(__VA_ARGS__))
#define logf(...) ::shim::nudge(::logf(__VA_ARGS__))
#define log2f(...) ::shim::nudge(::log2f(__VA_ARGS__))
#define exp(...) ::shim::nudge(::exp(__VA_ARGS__))
#define expf(...) ::shim::nudge(::expf(__VA_ARGS__))
#define exp2f(...) ::shim::nudge(::exp2f(__VA_ARGS__))
#define powf(...) ::shim::nudge(::powf(__VA_ARGS__))
#define tanhf(...) ::shim::nudge(::tanhf(__VA_ARGS__))
#define __expf(...) ::shim::nudge(::expf(__VA_ARGS__))
#define __logf(...) ::shim::nudge(::logf(__VA_ARGS__))

// ---- exported to the host (ctypes) -------------------------------------------------------------
// SHIM_KERNEL(name): shim_launch_<name>(grid[3], block[3], params) runs the kernel (returns 0 or
// a CUresult) and shim_nparams_<name>() says how many parameters it reads. build.py appends one
// SHIM_KERNEL per extern "C" __global__ function of the .cu file.
#define SHIM_EXPORT extern "C" __attribute__((visibility("default")))
#define SHIM_KERNEL(name)                                                                      \
    SHIM_EXPORT int shim_launch_##name(const unsigned* grid, const unsigned* block,            \
                                       void** params) {                                        \
        return ::shim::launch(&name, grid, block, params);                                     \
    }                                                                                          \
    SHIM_EXPORT int shim_nparams_##name() { return ::shim::param_count(&name); }

SHIM_EXPORT long shim_errors(char* buf, long size, long* divergent) {
    std::lock_guard<std::mutex> lock(::shim::g_errors.m);
    if (size > 0) snprintf(buf, (size_t)size, "%s", ::shim::g_errors.text.c_str());
    *divergent = ::shim::g_errors.divergent;
    const long count = ::shim::g_errors.count;
    ::shim::g_errors.text.clear();
    ::shim::g_errors.count = ::shim::g_errors.divergent = 0;
    return count;
}

SHIM_EXPORT void shim_set_schedule(int schedule) { ::shim::g_schedule.store(schedule); }

SHIM_EXPORT void shim_set_math_ulps(int mode, long long ulps) {
    ::shim::g_ulp_mode.store(mode);
    ::shim::g_ulps.store(ulps);
}

SHIM_EXPORT void shim_f32_to_f16(const float* in, unsigned short* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = ::shim::f32_to_f16_rn(in[i]);
}

SHIM_EXPORT void shim_f16_to_f32(const unsigned short* in, float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = ::shim::f16_to_f32(in[i]);
}
