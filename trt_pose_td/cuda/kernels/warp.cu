// Batched affine warp + normalise + HWC->CHW: the detector letterbox and every person crop.
//
// src:    uint8 frame, H x W x 3 (BGR), row pitch `src_pitch` bytes.
// inv:    n x 6 float32: for output item b, the map from an output pixel index (u, v) to the
//         source sampling point in cv2's convention (pixel centres on integers), i.e. the inverse
//         of trt_pose_td.geometry.to_cv2_affine(M). Computed on the host (kernels.warp_params).
// dst:    n x 3 x out_h x out_w, float32 or float16 (IEEE binary16 bits), channel planes in the
//         model's order: rgb != 0 reverses the BGR source channels.
// Output channel c = (sample - mean_c) * inv_std_c, with bilinear sampling and a constant
// `border` value for every tap that falls outside the frame (cv2.BORDER_CONSTANT semantics).
//
// warp_frames_* is the same sampling for several frames in one launch (every camera's letterbox,
// or every person of every camera): a table of frames (device address, size, row pitch) and per
// output item its inverse map, the index of its frame in that table and where its output starts
// in dst (in elements), so that the chunks of a keypoint batch can start at TensorRT's 256-byte
// alignment and the mirrored crops of --flip can follow in their own region.
//
// Compiled with --fmad=false: each operation below rounds as written, which is what the numpy
// twin (trt_pose_td/cuda/twins.py: warp_batch_twin) reproduces exactly.

struct Norm {
    float mean0, mean1, mean2;
    float istd0, istd1, istd2;
};

// One frame of a multi-frame launch (24 bytes; trt_pose_td/cuda/twins.py: WARP_FRAME).
struct WarpFrame {
    const unsigned char* src;
    int w, h, pitch, pad;
};

// One output item of a multi-frame launch (32 bytes; twins.py: WARP_ITEM).
struct WarpItem {
    float inv[6];
    int frame;          // index into the frame table
    unsigned int out;   // element offset of the item's 3 x out_h x out_w output in dst
};

__device__ __forceinline__ float tap(const unsigned char* src, int w, int h, int pitch,
                                     int x, int y, int c, float border) {
    if (x < 0 || y < 0 || x >= w || y >= h) return border;
    return (float)src[(size_t)y * pitch + (size_t)x * 3 + c];
}

__device__ __forceinline__ void store(float* dst, size_t i, float v) { dst[i] = v; }

__device__ __forceinline__ void store(unsigned short* dst, size_t i, float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    dst[i] = h;
}

// Output pixel (u, v) of one item: m = its inverse map, dst = the start of its output.
template <typename T>
__device__ __forceinline__ void warp_pixel(const unsigned char* __restrict__ src, int src_w,
                                           int src_h, int src_pitch, const float* __restrict__ m,
                                           T* __restrict__ dst, int out_w, int out_h, int u,
                                           int v, Norm norm, int rgb, float border) {
    const float fu = (float)u;
    const float fv = (float)v;
    const float sx = m[0] * fu + m[1] * fv + m[2];
    const float sy = m[3] * fu + m[4] * fv + m[5];

    float val[3] = {border, border, border};
    // Both taps of an axis are outside (or the point is NaN): every tap is the border value.
    if (sx >= -1.0f && sx < (float)src_w && sy >= -1.0f && sy < (float)src_h) {
        const float x0f = floorf(sx);
        const float y0f = floorf(sy);
        const int x0 = (int)x0f;
        const int y0 = (int)y0f;
        const float ax = sx - x0f;
        const float ay = sy - y0f;
        const float bx = 1.0f - ax;
        const float by = 1.0f - ay;
        for (int c = 0; c < 3; ++c) {
            const float p00 = tap(src, src_w, src_h, src_pitch, x0, y0, c, border);
            const float p01 = tap(src, src_w, src_h, src_pitch, x0 + 1, y0, c, border);
            const float p10 = tap(src, src_w, src_h, src_pitch, x0, y0 + 1, c, border);
            const float p11 = tap(src, src_w, src_h, src_pitch, x0 + 1, y0 + 1, c, border);
            const float top = bx * p00 + ax * p01;
            const float bot = bx * p10 + ax * p11;
            val[c] = by * top + ay * bot;
        }
    }
    const size_t plane = (size_t)out_w * out_h;
    const size_t base = (size_t)v * out_w + u;
    const float s0 = rgb ? val[2] : val[0];
    const float s2 = rgb ? val[0] : val[2];
    store(dst, base, (s0 - norm.mean0) * norm.istd0);
    store(dst, base + plane, (val[1] - norm.mean1) * norm.istd1);
    store(dst, base + 2 * plane, (s2 - norm.mean2) * norm.istd2);
}

template <typename T>
__device__ void warp_affine(const unsigned char* __restrict__ src, int src_w, int src_h,
                            int src_pitch, const float* __restrict__ inv, T* __restrict__ dst,
                            int out_w, int out_h, Norm norm, int rgb, float border) {
    const int u = blockIdx.x * blockDim.x + threadIdx.x;
    const int v = blockIdx.y * blockDim.y + threadIdx.y;
    const int b = blockIdx.z;
    if (u >= out_w || v >= out_h) return;
    warp_pixel(src, src_w, src_h, src_pitch, inv + 6 * b, dst + (size_t)b * 3 * out_w * out_h,
               out_w, out_h, u, v, norm, rgb, border);
}

template <typename T>
__device__ void warp_frames(const WarpFrame* __restrict__ frames,
                            const WarpItem* __restrict__ items, T* __restrict__ dst, int out_w,
                            int out_h, Norm norm, int rgb, float border) {
    const int u = blockIdx.x * blockDim.x + threadIdx.x;
    const int v = blockIdx.y * blockDim.y + threadIdx.y;
    if (u >= out_w || v >= out_h) return;
    const WarpItem* item = items + blockIdx.z;
    const WarpFrame f = frames[item->frame];
    warp_pixel(f.src, f.w, f.h, f.pitch, item->inv, dst + item->out, out_w, out_h, u, v, norm,
               rgb, border);
}

extern "C" __global__ void warp_affine_f32(const unsigned char* __restrict__ src, int src_w,
                                           int src_h, int src_pitch,
                                           const float* __restrict__ inv,
                                           float* __restrict__ dst, int out_w, int out_h,
                                           Norm norm, int rgb, float border) {
    warp_affine<float>(src, src_w, src_h, src_pitch, inv, dst, out_w, out_h, norm, rgb, border);
}

extern "C" __global__ void warp_affine_f16(const unsigned char* __restrict__ src, int src_w,
                                           int src_h, int src_pitch,
                                           const float* __restrict__ inv,
                                           unsigned short* __restrict__ dst, int out_w, int out_h,
                                           Norm norm, int rgb, float border) {
    warp_affine<unsigned short>(src, src_w, src_h, src_pitch, inv, dst, out_w, out_h, norm, rgb,
                                border);
}

extern "C" __global__ void warp_frames_f32(const WarpFrame* __restrict__ frames,
                                           const WarpItem* __restrict__ items,
                                           float* __restrict__ dst, int out_w, int out_h,
                                           Norm norm, int rgb, float border) {
    warp_frames<float>(frames, items, dst, out_w, out_h, norm, rgb, border);
}

extern "C" __global__ void warp_frames_f16(const WarpFrame* __restrict__ frames,
                                           const WarpItem* __restrict__ items,
                                           unsigned short* __restrict__ dst, int out_w,
                                           int out_h, Norm norm, int rgb, float border) {
    warp_frames<unsigned short>(frames, items, dst, out_w, out_h, norm, rgb, border);
}
