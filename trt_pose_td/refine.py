"""Sub-pixel refinement of heatmap maxima (pure numpy): the argmax, HRNet's quarter shift and
DARK, the ``refine`` choices of a pipeline (:data:`REFINEMENTS`).

:func:`dark_offsets` is the one DARK step of the package: the CPU decoder
(:mod:`trt_pose_td.decode`) and the decode kernel's numpy twin (:mod:`trt_pose_td.cuda.twins`)
both call it, with the kernel's order of operations. Offsets are in heatmap cells; the decoder
maps cells to input pixels.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

#: Sub-pixel refinements of the heatmap argmax.
REFINEMENTS = ("none", "quarter", "dark")


def heatmap_argmax(heatmaps: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Integer argmax per heatmap.

    heatmaps: (N, K, h, w) float32. Returns indices (N, K, 2) int64 as (col, row) and the
    maximum values (N, K) float32. Ties take the first (row-major) position.
    """
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    idx = np.argmax(flat, axis=2)
    vals = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    return np.stack([idx % w, idx // w], axis=-1).astype(np.int64), vals.astype(np.float32)


def quarter_step(d: np.ndarray) -> np.ndarray:
    """+0.25 / -0.25 / 0 float32 for a neighbour difference d > 0 / < 0 / otherwise (a NaN
    difference gives 0, as decode.cu's comparisons do; ``np.sign`` would give NaN)."""
    return np.where(d > 0, np.float32(0.25), np.where(d < 0, np.float32(-0.25), np.float32(0)))


def quarter_offsets(heatmaps: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """+-0.25 towards the higher neighbour, where both neighbours exist (HRNet's refinement):
    heatmaps (N, K, h, w), idx (N, K, 2) their argmax -> (N, K, 2) float32 offsets in cells."""
    n, k, h, w = heatmaps.shape
    px, py = idx[..., 0], idx[..., 1]
    ok = (px > 0) & (px < w - 1) & (py > 0) & (py < h - 1)
    # neighbours clamped into the map: read everywhere, used where ok (1-cell-wide maps too)
    left, right = np.maximum(px - 1, 0), np.minimum(px + 1, w - 1)
    up, down = np.maximum(py - 1, 0), np.minimum(py + 1, h - 1)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    dx = heatmaps[ni, ki, py, right] - heatmaps[ni, ki, py, left]
    dy = heatmaps[ni, ki, down, px] - heatmaps[ni, ki, up, px]
    off = np.stack([quarter_step(dx), quarter_step(dy)], -1)
    return np.where(ok[..., None], off, np.float32(0)).astype(np.float32)


def gaussian_kernel_1d(kernel: int) -> np.ndarray:
    """(kernel,) float64 Gaussian weights summing to 1, sigma as cv2 picks it for ``sigma=0``."""
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    x = np.arange(kernel, dtype=np.float64) - (kernel - 1) / 2
    g = np.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def blur_heatmaps(heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """Gaussian-blur every (h, w) map with zero borders, rescaled to keep its maximum (DARK).

    heatmaps: (N, K, h, w) float32; a separable blur in numpy (equal to cv2.GaussianBlur with a
    constant-zero border) so all N x K maps are done in two vectorised passes.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    g = gaussian_kernel_1d(kernel)
    r = kernel // 2
    padded = np.pad(heatmaps.astype(np.float64), ((0, 0), (0, 0), (r, r), (r, r)))
    rows = sliding_window_view(padded, kernel, axis=3) @ g          # (N, K, h + 2r, w)
    out = sliding_window_view(rows, kernel, axis=2) @ g             # (N, K, h, w)
    n, k = heatmaps.shape[:2]
    peak_in = heatmaps.reshape(n, k, -1).max(axis=2)
    peak_out = out.reshape(n, k, -1).max(axis=2)
    scale = np.where(peak_out > 0, peak_in / np.where(peak_out > 0, peak_out, 1), 1.0)
    return (out * scale[..., None, None]).astype(np.float32)


def dark_offsets(maps: np.ndarray, px: np.ndarray, py: np.ndarray, kernel: int) -> np.ndarray:
    """DARK (Zhang et al., CVPR 2020): Newton step on the log of the blurred heatmap.

    maps: (M, h, w) float32; px, py: (M,) int, the argmax column and row of each map; kernel:
    the odd blur size (:func:`dark_kernel_size`). Returns (M, 2) float32 offsets in heatmap
    cells, (0, 0) where rejected: within 2 cells of the border, a singular Hessian, or a step of
    a cell or more (the quadratic model does not hold there: the argmax stays).

    The ONE DARK step: the CPU decoder (:func:`trt_pose_td.decode.decode_heatmaps`) and the
    decode kernel's numpy twin (:func:`trt_pose_td.cuda.twins.decode_heatmaps_twin`) both call
    it, so the two agree bit for bit, and its arithmetic is the kernel's (``dark_offset`` in
    ``cuda/kernels/decode.cu``, compiled with ``--fmad=false``), operation for operation: the
    (5 + kernel - 1)-square patch around the maximum, zero outside the map; blurred along x,
    then along y, each output a sequential float64 sum ``acc = acc + value * weight`` in weight
    order (a matmul would sum in another order and round differently); ``log(max(blurred,
    1e-10))``; the step from the central 5 x 5. Only that neighbourhood is needed, so no map is
    blurred whole; the full-map formulation (:func:`blur_heatmaps`) also rescales each map to
    its peak, which adds a constant to the log and does not move the step.
    """
    m, h, w = maps.shape
    r = kernel // 2
    size = 5 + 2 * r
    padded = np.pad(maps, ((0, 0), (r + 2, r + 2), (r + 2, r + 2)))
    offs = np.arange(size)  # padded rows / cols of map rows / cols p - 2 - r .. p + 2 + r
    patch = padded[np.arange(m)[:, None, None], (py[:, None] + offs)[:, :, None],
                   (px[:, None] + offs)[:, None, :]].astype(np.float64)  # (M, size, size)
    gauss = gaussian_kernel_1d(kernel)
    rows = np.zeros((m, size, 5))
    for i in range(kernel):
        rows = rows + patch[:, :, i:i + 5] * gauss[i]
    blurred = np.zeros((m, 5, 5))
    for i in range(kernel):
        blurred = blurred + rows[:, i:i + 5, :] * gauss[i]
    lg = np.log(np.maximum(blurred, 1e-10))

    def at(dy: int, dx: int) -> np.ndarray:
        return lg[:, 2 + dy, 2 + dx]

    c = at(0, 0)
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2.0 * c + at(0, -2))
    dyy = 0.25 * (at(2, 0) - 2.0 * c + at(-2, 0))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = dxx * dyy - dxy * dxy
    ok = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2) & (det != 0)
    safe = np.where(det != 0, det, 1.0)
    offx = -(dyy * dx - dxy * dy) / safe
    offy = -(-dxy * dx + dxx * dy) / safe
    ok &= (np.abs(offx) < 1.0) & (np.abs(offy) < 1.0)
    off = np.stack([offx, offy], 1).astype(np.float32)
    return np.where(ok[:, None], off, np.float32(0))


def dark_kernel_size(heatmap_width: int) -> int:
    """Blur kernel for DARK: 11 at the 48-wide heatmaps of 256x192 models, scaled, odd, >= 3."""
    k = int(round(11 * heatmap_width / 48))
    return max(3, k | 1)
