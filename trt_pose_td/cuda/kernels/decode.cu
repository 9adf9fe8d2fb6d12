// Keypoint decoding on the GPU, so only N x K x 3 floats (x, y, score) return to the host.
//
// Both kernels run one block per (person, keypoint) map (gridDim.x = N * K) and reproduce the
// CPU decoders of trt_pose_td/decode.py: argmax with numpy's rule (first maximum in row-major
// order; a NaN counts as the maximum), then
//   decode_heatmaps: refine none | quarter (+-0.25 towards the higher neighbour) | dark (Newton
//     step on the log of the Gaussian-blurred 5 + 2r patch around the maximum, zero outside the
//     map, in double precision, rejected at the border / for |offset| >= 1 / det == 0);
//     x = (col + offset + cell_offset) * stride_x, score = the maximum;
//   decode_simcc: x = argmax_x / split + 0.5, y = argmax_y / split + 0.5,
//     score = min(max_x, max_y).
// flip_average (--flip) runs before decoding: the model's outputs for the mirrored crops are
// flipped back and averaged with those of the crops, a[i] = (a[i] + b[gather[i]]) * 0.5, where
// the host builds `gather` from the decoder's own flip-back (trt_pose_td/decode.py: heatmap
// columns or SimCC x bins reversed, left/right keypoints swapped), so the result is the CPU's
// (outputs + flip_back(mirrored outputs)) * 0.5 element for element.
// Compiled with --fmad=false; the numpy twins in trt_pose_td/cuda/twins.py follow the same order
// of operations.

#define THREADS 256
#define MAX_DARK_KERNEL 63
#define MAX_PATCH (5 + MAX_DARK_KERNEL - 1)

__device__ __forceinline__ bool better(float va, int ia, float vb, int ib) {
    const bool na = isnan(va), nb = isnan(vb);
    if (na || nb) return na && nb ? ia < ib : na;
    return va > vb || (va == vb && ia < ib);
}

// Block-wide argmax of x[0 .. n); every thread gets the winner (value, index).
__device__ void block_argmax(const float* __restrict__ x, int n, float* best_v, int* best_i) {
    __shared__ float sv[THREADS];
    __shared__ int si[THREADS];
    float v = __int_as_float(0xff800000);  // -inf
    int i = 0x7fffffff;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const float xj = x[j];
        if (better(xj, j, v, i)) { v = xj; i = j; }
    }
    sv[threadIdx.x] = v;
    si[threadIdx.x] = i;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s && better(sv[threadIdx.x + s], si[threadIdx.x + s],
                                      sv[threadIdx.x], si[threadIdx.x])) {
            sv[threadIdx.x] = sv[threadIdx.x + s];
            si[threadIdx.x] = si[threadIdx.x + s];
        }
        __syncthreads();
    }
    *best_v = sv[0];
    *best_i = si[0];
    __syncthreads();
}

__device__ __forceinline__ float sign_quarter(float d) {
    return d > 0.0f ? 0.25f : (d < 0.0f ? -0.25f : 0.0f);
}

// Map value at (row, col), zero outside the map (the CPU pads with zeros).
__device__ __forceinline__ double at_or_zero(const float* hm, int h, int w, int row, int col) {
    return (row < 0 || col < 0 || row >= h || col >= w) ? 0.0 : (double)hm[row * w + col];
}

// DARK offset of the maximum at (px, py); writes (ox, oy) as floats (0, 0 when rejected).
__device__ void dark_offset(const float* hm, int h, int w, int px, int py, int kernel,
                            const double* __restrict__ gauss, float* ox, float* oy) {
    __shared__ double rows[MAX_PATCH * 5];  // patch rows blurred along x: size x 5
    __shared__ double lg[25];                // log of the fully blurred 5 x 5 centre
    const int r = kernel / 2;
    const int size = 5 + 2 * r;
    for (int t = threadIdx.x; t < size * 5; t += blockDim.x) {
        const int pr = t / 5, pc = t % 5;           // patch row, output column
        const int row = py - 2 - r + pr;
        double acc = 0.0;
        for (int i = 0; i < kernel; ++i)
            acc = acc + at_or_zero(hm, h, w, row, px - 2 - r + pc + i) * gauss[i];
        rows[t] = acc;
    }
    __syncthreads();
    if (threadIdx.x < 25) {
        const int y = threadIdx.x / 5, x = threadIdx.x % 5;
        double acc = 0.0;
        for (int i = 0; i < kernel; ++i) acc = acc + rows[(y + i) * 5 + x] * gauss[i];
        lg[threadIdx.x] = log(fmax(acc, 1e-10));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
#define AT(dy, dx) lg[(2 + (dy)) * 5 + 2 + (dx)]
        const double c = AT(0, 0);
        const double dx = 0.5 * (AT(0, 1) - AT(0, -1));
        const double dy = 0.5 * (AT(1, 0) - AT(-1, 0));
        const double dxx = 0.25 * (AT(0, 2) - 2.0 * c + AT(0, -2));
        const double dyy = 0.25 * (AT(2, 0) - 2.0 * c + AT(-2, 0));
        const double dxy = 0.25 * (AT(1, 1) - AT(-1, 1) - AT(1, -1) + AT(-1, -1));
#undef AT
        const double det = dxx * dyy - dxy * dxy;
        bool ok = px > 1 && px < w - 2 && py > 1 && py < h - 2 && det != 0.0;
        const double safe = det != 0.0 ? det : 1.0;
        const double offx = -(dyy * dx - dxy * dy) / safe;
        const double offy = -(-dxy * dx + dxx * dy) / safe;
        ok = ok && fabs(offx) < 1.0 && fabs(offy) < 1.0;
        *ox = ok ? (float)offx : 0.0f;
        *oy = ok ? (float)offy : 0.0f;
    }
}

// heatmaps: (N*K) x h x w float32; out: (N*K) x 3 float32 (x, y, score in input pixels).
// refine: 0 none, 1 quarter, 2 dark (kernel = odd blur size <= 63, gauss = its weights).
extern "C" __global__ void decode_heatmaps(const float* __restrict__ heatmaps, int h, int w,
                                           int refine, int kernel,
                                           const double* __restrict__ gauss, float stride_x,
                                           float stride_y, float cell_offset,
                                           float* __restrict__ out) {
    const int map = blockIdx.x;
    const float* hm = heatmaps + (size_t)map * h * w;
    float best;
    int idx;
    block_argmax(hm, h * w, &best, &idx);
    const int px = idx % w, py = idx / w;
    __shared__ float off[2];
    if (threadIdx.x == 0) { off[0] = 0.0f; off[1] = 0.0f; }
    __syncthreads();
    if (refine == 2) {
        dark_offset(hm, h, w, px, py, kernel, gauss, &off[0], &off[1]);
    } else if (refine == 1 && threadIdx.x == 0 && px > 0 && px < w - 1 && py > 0 && py < h - 1) {
        off[0] = sign_quarter(hm[py * w + px + 1] - hm[py * w + px - 1]);
        off[1] = sign_quarter(hm[(py + 1) * w + px] - hm[(py - 1) * w + px]);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float* o = out + (size_t)map * 3;
        o[0] = ((float)px + off[0] + cell_offset) * stride_x;
        o[1] = ((float)py + off[1] + cell_offset) * stride_y;
        o[2] = best;
    }
}

// simcc_x: (N*K) x lx, simcc_y: (N*K) x ly float32; out: (N*K) x 3 float32.
extern "C" __global__ void decode_simcc(const float* __restrict__ simcc_x, int lx,
                                        const float* __restrict__ simcc_y, int ly, float split,
                                        float* __restrict__ out) {
    const int map = blockIdx.x;
    float vx, vy;
    int ix, iy;
    block_argmax(simcc_x + (size_t)map * lx, lx, &vx, &ix);
    block_argmax(simcc_y + (size_t)map * ly, ly, &vy, &iy);
    if (threadIdx.x == 0) {
        float* o = out + (size_t)map * 3;
        o[0] = (float)ix / split + 0.5f;
        o[1] = (float)iy / split + 0.5f;
        o[2] = (isnan(vx) || isnan(vy)) ? __int_as_float(0x7fc00000) : fminf(vx, vy);
    }
}

// a, b: count x item float32 (one model output of `count` crops and of their mirrored crops);
// gather: item int32 indices into one item of b. a is overwritten with the average. One thread
// per element of an item (blockIdx.x over the item, blockIdx.y = crop).
extern "C" __global__ void flip_average(float* a, const float* __restrict__ b,
                                        const int* __restrict__ gather, int item) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= item) return;
    const size_t base = (size_t)blockIdx.y * item;
    a[base + j] = (a[base + j] + b[base + gather[j]]) * 0.5f;
}
