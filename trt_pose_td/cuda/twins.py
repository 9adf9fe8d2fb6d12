"""numpy twins of the CUDA kernels: the same float operations in the same order (pure numpy).

The GPU tests compare each kernel with its twin (fresh random inputs, output poisoned first);
CI compares each twin with the CPU path (:mod:`trt_pose_td.preprocess` with cv2,
:mod:`trt_pose_td.decode`). DARK is not written twice: the twin calls the one DARK step
(:func:`trt_pose_td.refine.dark_offsets`, the decoder's too), which follows the kernel's order of
operations. :class:`TwinPreprocessor` makes the warp twin a CPU
:class:`~trt_pose_td.preprocess.Preprocessor` (``--preprocessor twin``), so accuracy can be
measured with the GPU's sampling on a machine without a GPU.

The kernels are compiled with ``--fmad=false``, so float32 numpy (IEEE, round to nearest) performs
the identical roundings. The host-side parameter helpers here (:func:`warp_params`,
:func:`norm_params`, :func:`heatmap_params`) are what :mod:`.kernels` passes to the GPU.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Sequence, Tuple

import numpy as np

from ..geometry import invert_affines, to_cv2_affine
from ..refine import (
    REFINEMENTS,
    dark_kernel_size,
    dark_offsets,
    gaussian_kernel_1d,
    quarter_step,
)

Size = Tuple[int, int]

#: Largest DARK blur the decode kernel takes (``MAX_DARK_KERNEL`` in decode.cu).
MAX_DARK_KERNEL = 63
#: Output dtypes of the warp kernel.
WARP_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
#: Pixels the CPU twin warps per chunk (bounds its temporary memory to ~100 MB).
_CHUNK_PIXELS = 1 << 20
#: One frame of a multi-frame warp launch (``struct WarpFrame`` in warp.cu, 24 bytes).
WARP_FRAME = np.dtype([("src", "<u8"), ("w", "<i4"), ("h", "<i4"), ("pitch", "<i4"),
                       ("pad", "<i4")])
#: One output item of a multi-frame warp launch (``struct WarpItem`` in warp.cu, 32 bytes).
WARP_ITEM = np.dtype([("inv", "<f4", (6,)), ("frame", "<i4"), ("out", "<u4")])


# --------------------------------------------------------------------------------------------
# kernel parameters (host side)
def warp_params(affines: np.ndarray) -> np.ndarray:
    """(N, 6) float32 per-item maps from output pixel index (u, v) to cv2 source coordinates.

    affines: (N, 2, 3) frame -> output maps in :mod:`trt_pose_td.geometry`'s convention. The
    inverse of :func:`~trt_pose_td.geometry.to_cv2_affine` is what ``cv2.warpAffine`` samples
    with (dst pixel centre -> source point, pixel centres on integers), computed in float64.
    """
    m = np.asarray(affines, np.float32).reshape(-1, 2, 3)
    if not np.all(np.isfinite(m)):
        raise ValueError("affines must be finite")
    if np.any(np.abs(np.linalg.det(m[:, :, :2].astype(np.float64))) < 1e-12):
        raise ValueError("affines must be invertible")
    return np.ascontiguousarray(invert_affines(to_cv2_affine(m)).reshape(-1, 6), np.float32)


def warp_frame_table(frames: Sequence[Tuple[int, int, int, int]]) -> np.ndarray:
    """(F,) :data:`WARP_FRAME` from (device address, width, height, row pitch in bytes) of
    each frame."""
    table = np.zeros(len(frames), WARP_FRAME)
    for i, (ptr, w, h, pitch) in enumerate(frames):
        if min(w, h) < 1 or pitch < 3 * w:
            raise ValueError(f"bad warp frame: {w}x{h} pitch {pitch}")
        table[i] = (int(ptr), int(w), int(h), int(pitch), 0)
    return table


def warp_items(affines: np.ndarray, frames: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(N,) :data:`WARP_ITEM`: item i samples frame ``frames[i]`` (index into the frame table)
    with :func:`warp_params` of ``affines[i]`` (frame -> output maps, (N, 2, 3)) and writes its
    3 x H x W output ``offsets[i]`` elements into the launch's output."""
    inv = warp_params(affines)
    frames = np.asarray(frames, np.int64).reshape(-1)
    offsets = np.asarray(offsets, np.int64).reshape(-1)
    if not len(inv) == len(frames) == len(offsets):
        raise ValueError(f"{len(inv)} affines, {len(frames)} frame indices, {len(offsets)} "
                         "output offsets")
    if len(offsets) and (offsets.min() < 0 or offsets.max() >= 1 << 32 or frames.min() < 0):
        raise ValueError("output offsets must fit 32 bits and frame indices be >= 0")
    items = np.zeros(len(inv), WARP_ITEM)
    items["inv"], items["frame"], items["out"] = inv, frames, offsets
    return items


def norm_params(mean: Sequence[float], std: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """(3,) float32 mean and (3,) float32 ``1 / std`` as the CPU path computes them."""
    mean32 = np.asarray(mean, np.float32).reshape(3)
    std32 = np.asarray(std, np.float32).reshape(3)
    if np.any(std32 == 0):
        raise ValueError(f"std must be non-zero, not {list(std)}")
    return mean32, (np.float32(1.0) / std32).astype(np.float32)


def heatmap_params(input_size: Size, h: int, w: int, refine: str
                   ) -> Tuple[np.float32, np.float32, int, np.ndarray]:
    """(stride_x, stride_y) float32, DARK blur size and its (kernel,) float64 weights."""
    if refine not in REFINEMENTS:
        raise ValueError(f"unknown refinement {refine!r}; expected one of {REFINEMENTS}")
    stride = np.array([input_size[0] / w, input_size[1] / h], np.float32)
    kernel = dark_kernel_size(w) if refine == "dark" else 1
    if kernel > MAX_DARK_KERNEL:
        raise ValueError(f"DARK blur {kernel} exceeds the kernel's limit {MAX_DARK_KERNEL}")
    return stride[0], stride[1], kernel, gaussian_kernel_1d(kernel)


# --------------------------------------------------------------------------------------------
# warp
def _warp_chunk(flat: np.ndarray, hw: Size, inv: np.ndarray, out_size: Size, border: np.float32
                ) -> np.ndarray:
    """Bilinear samples (C, H, W, 3) float32, source channel order, for params inv (C, 6)."""
    src_w, src_h = hw
    w, h = out_size
    u = np.arange(w, dtype=np.float32)[None, None, :]
    v = np.arange(h, dtype=np.float32)[None, :, None]
    m = inv[:, :, None, None]
    sx = m[:, 0] * u + m[:, 1] * v + m[:, 2]
    sy = m[:, 3] * u + m[:, 4] * v + m[:, 5]
    inside = (sx >= -1) & (sx < src_w) & (sy >= -1) & (sy < src_h)
    sx = np.where(inside, sx, np.float32(0))
    sy = np.where(inside, sy, np.float32(0))
    x0f, y0f = np.floor(sx), np.floor(sy)
    x0, y0 = x0f.astype(np.int64), y0f.astype(np.int64)
    ax, ay = (sx - x0f)[..., None], (sy - y0f)[..., None]
    bx, by = np.float32(1) - ax, np.float32(1) - ay

    def tap(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        ok = (x >= 0) & (y >= 0) & (x < src_w) & (y < src_h)
        idx = np.where(ok, y * src_w + x, 0)
        return np.where(ok[..., None], flat[idx].astype(np.float32), border)

    top = bx * tap(x0, y0) + ax * tap(x0 + 1, y0)
    bot = bx * tap(x0, y0 + 1) + ax * tap(x0 + 1, y0 + 1)
    val = by * top + ay * bot
    return np.where(inside[..., None], val, border)


def warp_normalized(flat: np.ndarray, hw: Size, inv: np.ndarray, out_size: Size,
                    border: float, mean32: np.ndarray, istd32: np.ndarray, rgb: bool,
                    dtype: object) -> np.ndarray:
    """The kernel's work for items ``inv`` (M, 6) of one frame (``flat``: (H * W, 3) uint8,
    hw = (W, H)): (M, 3, H, W) ``dtype``, sampled, channel-ordered and normalised, in chunks
    that bound the temporary memory."""
    w, h = int(out_size[0]), int(out_size[1])
    out = np.empty((len(inv), 3, h, w), dtype)  # type: ignore[call-overload]
    chunk = max(1, _CHUNK_PIXELS // max(1, w * h))
    for start in range(0, len(inv), chunk):
        val = _warp_chunk(flat, hw, inv[start:start + chunk], (w, h), np.float32(border))
        if rgb:
            val = val[..., ::-1]
        out[start:start + chunk] = ((val - mean32) * istd32).transpose(0, 3, 1, 2)
    return out


def _check_warp_args(image: np.ndarray, channel_order: str, dtype: object) -> np.dtype:
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8, got {img.dtype} {img.shape}")
    if channel_order not in ("bgr", "rgb"):
        raise ValueError(f"channel_order must be 'bgr' or 'rgb', not {channel_order!r}")
    out_dtype = np.dtype(dtype)  # type: ignore[call-overload]
    if out_dtype not in WARP_DTYPES:
        raise ValueError(f"dtype must be float32 or float16, not {out_dtype}")
    return out_dtype


def warp_batch_twin(image: np.ndarray, affines: np.ndarray, out_size: Size,
                    mean: Sequence[float], std: Sequence[float], channel_order: str = "bgr",
                    border_value: float = 0.0, dtype: object = np.float32) -> np.ndarray:
    """Twin of ``warp_affine_f32`` / ``_f16`` (kernels/warp.cu).

    image: (H, W, 3) uint8 BGR; affines: (N, 2, 3) frame -> output maps; out_size: (W, H).
    Returns (N, 3, H, W) ``dtype`` (float32 or float16): ``(sample - mean) * (1 / std)`` per
    channel in ``channel_order``.
    """
    out_dtype = _check_warp_args(image, channel_order, dtype)
    img = np.ascontiguousarray(image)
    mean32, istd32 = norm_params(mean, std)
    return warp_normalized(img.reshape(-1, 3), (img.shape[1], img.shape[0]),
                           warp_params(affines), out_size, border_value, mean32, istd32,
                           channel_order == "rgb", out_dtype)


def warp_frames_twin(images: Sequence[np.ndarray], frames: np.ndarray, affines: np.ndarray,
                     out_size: Size, mean: Sequence[float], std: Sequence[float],
                     channel_order: str = "bgr", border_value: float = 0.0,
                     dtype: object = np.float32) -> np.ndarray:
    """Twin of ``warp_frames_f32`` / ``_f16`` (kernels/warp.cu): item i is
    :func:`warp_batch_twin` of ``images[frames[i]]`` with ``affines[i]`` (each item samples only
    its own frame). images: (H_f, W_f, 3) uint8 BGR each; frames: (N,) int; affines: (N, 2, 3).
    Returns (N, 3, H, W) ``dtype`` in item order (where the kernel writes each item is the
    launch's output offsets, not arithmetic)."""
    frames = np.asarray(frames, np.int64).reshape(-1)
    affines = np.asarray(affines, np.float32).reshape(-1, 2, 3)
    if len(frames) != len(affines) or (len(frames) and not 0 <= frames.min() <= frames.max()
                                       < len(images)):
        raise ValueError(f"{len(affines)} items need one index < {len(images)} frames each")
    w, h = int(out_size[0]), int(out_size[1])
    out = np.empty((len(frames), 3, h, w), np.dtype(dtype))  # type: ignore[call-overload]
    for f in np.unique(frames):
        mine = np.flatnonzero(frames == f)
        out[mine] = warp_batch_twin(images[f], affines[mine], (w, h), mean, std, channel_order,
                                    border_value, dtype)
    return out


class TwinPreprocessor:
    """The GPU crop kernel's exact arithmetic on the CPU (a :class:`Preprocessor`)."""

    def warp_batch(self, image: np.ndarray, affines: np.ndarray, out_size: Size,
                   mean: Sequence[float], std: Sequence[float], channel_order: str = "bgr",
                   border_value: float = 0.0) -> np.ndarray:
        """image: (H, W, 3) uint8 BGR; affines: (N, 2, 3); out_size: (W, H).
        Returns (N, 3, H, W) float32."""
        return warp_batch_twin(image, affines, out_size, mean, std, channel_order, border_value)


# --------------------------------------------------------------------------------------------
# decode
def _argmax(maps: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(M, L) -> first-maximum index (M,) int64 and value (M,) float32 (NaN counts as max)."""
    idx = np.argmax(maps, axis=1)
    return idx, maps[np.arange(len(maps)), idx]


def _quarter_twin(maps: np.ndarray, px: np.ndarray, py: np.ndarray, w: int, h: int
                  ) -> np.ndarray:
    ok = (px > 0) & (px < w - 1) & (py > 0) & (py < h - 1)
    m = np.arange(len(maps))
    # as decode.cu: no neighbour is read where ok is False (a 1 x 1 map has none)
    left, right = np.maximum(px - 1, 0), np.minimum(px + 1, w - 1)
    up, down = np.maximum(py - 1, 0), np.minimum(py + 1, h - 1)
    dx = maps[m, py * w + right] - maps[m, py * w + left]
    dy = maps[m, down * w + px] - maps[m, up * w + px]
    off = np.stack([quarter_step(dx), quarter_step(dy)], 1)
    return np.where(ok[:, None], off, np.float32(0)).astype(np.float32)


def decode_heatmaps_twin(heatmaps: np.ndarray, input_size: Size, refine: str = "dark",
                         cell_offset: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Twin of ``decode_heatmaps`` (kernels/decode.cu).

    heatmaps: (N, K, h, w) float32. Returns keypoints (N, K, 2) float32 in input pixels and
    scores (N, K) float32, like :func:`trt_pose_td.decode.decode_heatmaps`.
    """
    hm = np.ascontiguousarray(heatmaps, np.float32)
    n, k, h, w = hm.shape
    sx, sy, kernel, _ = heatmap_params(input_size, h, w, refine)
    maps = hm.reshape(n * k, h * w)
    idx, best = _argmax(maps)
    px, py = idx % w, idx // w
    if refine == "quarter":
        off = _quarter_twin(maps, px, py, w, h)
    elif refine == "dark":  # the one DARK step, decode.cu's arithmetic (see its docstring)
        off = dark_offsets(hm.reshape(n * k, h, w), px, py, kernel)
    else:
        off = np.zeros((n * k, 2), np.float32)
    co = np.float32(cell_offset)
    x = (px.astype(np.float32) + off[:, 0] + co) * sx
    y = (py.astype(np.float32) + off[:, 1] + co) * sy
    return np.stack([x, y], 1).reshape(n, k, 2), best.reshape(n, k)


def decode_simcc_twin(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = 2.0
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """Twin of ``decode_simcc`` (kernels/decode.cu): (N, K, Lx), (N, K, Ly) float32 ->
    keypoints (N, K, 2) float32 in input pixels, scores (N, K) float32."""
    sx = np.ascontiguousarray(simcc_x, np.float32)
    sy = np.ascontiguousarray(simcc_y, np.float32)
    n, k = sx.shape[:2]
    ix, vx = _argmax(sx.reshape(n * k, -1))
    iy, vy = _argmax(sy.reshape(n * k, -1))
    split = np.float32(split_ratio)
    x = ix.astype(np.float32) / split + np.float32(0.5)
    y = iy.astype(np.float32) / split + np.float32(0.5)
    return np.stack([x, y], 1).reshape(n, k, 2), np.minimum(vx, vy).reshape(n, k)


# --------------------------------------------------------------------------------------------
# flip (test-time augmentation)
def flip_gathers(flip_back: Callable[[Dict[str, np.ndarray], np.ndarray], Dict[str, np.ndarray]],
                 shapes: Mapping[str, Tuple[int, ...]], perm: np.ndarray) -> Dict[str, np.ndarray]:
    """Per output role, (item,) int32 ``gather`` with ``flip_back(mirrored)[..., i] ==
    mirrored[..., gather[i]]`` per crop: the decoder's own CPU flip-back (``decode.
    KeypointDecoder.flip_back``) applied to element indices. shapes: one crop's output shape per
    role (e.g. (K, h, w) heatmaps); perm: the left/right keypoint permutation."""
    index = {role: np.arange(int(np.prod(shape)), dtype=np.int32).reshape(1, *shape)
             for role, shape in shapes.items()}
    back = flip_back(index, perm)
    return {role: np.ascontiguousarray(back[role], np.int32).reshape(-1) for role in shapes}


def flip_average_twin(outputs: np.ndarray, mirrored: np.ndarray, gather: np.ndarray
                      ) -> np.ndarray:
    """Twin of ``flip_average`` (kernels/decode.cu): (outputs + mirrored flipped back) * 0.5.
    outputs, mirrored: (N, ...) float32 of one role for N crops and their mirrored crops;
    gather: :func:`flip_gathers`. Returns (N, ...) float32."""
    a = np.ascontiguousarray(outputs, np.float32)
    b = np.ascontiguousarray(mirrored, np.float32).reshape(len(a), -1)
    back = b[:, np.asarray(gather, np.int64)].reshape(a.shape)
    return (a + back) * np.float32(0.5)
