"""CPU preprocessing: one batched affine warp for the detector letterbox and all person crops.

``warp_batch`` is the reference the CUDA kernel is tested against (through the numpy twin in
:mod:`trt_pose_td.cuda.twins`, which reproduces the kernel's float arithmetic).
"""

from __future__ import annotations

from typing import Optional, Protocol, Sequence, Tuple

import numpy as np

from .geometry import to_cv2_affine
from .models import Preprocess

Size = Tuple[int, int]


class Preprocessor(Protocol):
    """Turns one frame and N affines into an (N, 3, H, W) network input."""

    def warp_batch(self, image: np.ndarray, affines: np.ndarray, out_size: Size,
                   mean: Sequence[float], std: Sequence[float], channel_order: str = "bgr",
                   border_value: float = 0.0) -> np.ndarray: ...


def normalize_crops(crops: np.ndarray, mean: Sequence[float], std: Sequence[float],
                    channel_order: str, out: Optional[np.ndarray] = None) -> np.ndarray:
    """(N, H, W, 3) uint8 BGR crops -> (N, 3, H, W) float32 ``(pixel - mean) / std``.

    mean/std are per channel in ``channel_order`` (``bgr`` or ``rgb``), in 0..255 units.
    """
    if channel_order not in ("bgr", "rgb"):
        raise ValueError(f"channel_order must be 'bgr' or 'rgb', not {channel_order!r}")
    planes = crops.transpose(0, 3, 1, 2)              # (N, 3, H, W) uint8 view, BGR
    if channel_order == "rgb":
        planes = planes[:, ::-1]
    result = np.ascontiguousarray(planes).astype(np.float32)  # transpose bytes, not floats
    result -= np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    result *= (1.0 / np.asarray(std, np.float32)).reshape(1, 3, 1, 1)
    if out is not None:
        out[...] = result
        return out
    return result


class CpuPreprocessor:
    """``cv2.warpAffine`` (bilinear, constant border) per item, then one vectorised normalise."""

    def warp_batch(self, image: np.ndarray, affines: np.ndarray, out_size: Size,
                   mean: Sequence[float], std: Sequence[float], channel_order: str = "bgr",
                   border_value: float = 0.0) -> np.ndarray:
        """image: (H, W, 3) uint8 BGR; affines: (N, 2, 3) frame -> output maps (see
        :mod:`.geometry`); out_size: (W, H). Returns (N, 3, H, W) float32."""
        import cv2

        affines = np.asarray(affines, np.float32).reshape(-1, 2, 3)
        w, h = out_size
        crops = np.empty((len(affines), h, w, 3), np.uint8)
        border = (float(border_value),) * 3
        for i, m in enumerate(to_cv2_affine(affines)):
            cv2.warpAffine(image, m, (w, h), dst=crops[i], flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=border)
        return normalize_crops(crops, mean, std, channel_order)


def warp_with(pre: Preprocessor, image: np.ndarray, affines: np.ndarray, p: Preprocess
              ) -> np.ndarray:
    """Run ``pre.warp_batch`` with a model's input contract ``p``."""
    return pre.warp_batch(image, affines, p.input_size, p.mean, p.std, p.channel_order,
                          p.pad_value)
