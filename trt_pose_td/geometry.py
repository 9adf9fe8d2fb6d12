"""Boxes, centre/size crops and 2x3 affine maps (pure numpy).

Convention: continuous pixel coordinates in which pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``
(so its centre is ``(i + 0.5, j + 0.5)``); boxes, keypoints and every affine here live in it.
cv2 puts pixel centres on integers instead; :func:`to_cv2_affine` converts.

An affine ``M`` (2, 3) maps *source* (original frame) points to *destination* (network input)
points: ``dst = M[:, :2] @ src + M[:, 2]``. The letterbox of a detector and the crop of a person are
both such a map, which is why one ``warp_batch`` serves both.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

Size = Tuple[int, int]  # (width, height)

#: Resize modes of a model's preprocessing (see :func:`resize_affine`).
RESIZE_MODES = ("letterbox", "letterbox_center", "stretch")


def box_to_center_size(boxes: np.ndarray, aspect: float, padding: float = 1.25
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """Person boxes to crop regions with the model's aspect ratio.

    boxes: (N, 4) x1y1x2y2; aspect: input width / height (0.75 for 192x256).
    Returns centres (N, 2) and sizes (N, 2) = (w, h) float32: the box grown on its short side to
    ``aspect``, then scaled by ``padding``.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    centers = np.stack([(boxes[:, 0] + boxes[:, 2]) * 0.5, (boxes[:, 1] + boxes[:, 3]) * 0.5], 1)
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-3)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-3)
    wider = w > aspect * h
    h = np.where(wider, w / aspect, h)
    w = np.where(wider, w, h * aspect)
    sizes = np.stack([w, h], 1) * np.float32(padding)
    return centers.astype(np.float32), sizes.astype(np.float32)


def crop_affines(centers: np.ndarray, sizes: np.ndarray, out_size: Size) -> np.ndarray:
    """(N, 2, 3) float32 maps from the frame to crops of ``out_size`` = (W, H).

    The region ``center +- size / 2`` fills the crop exactly (no rotation).
    """
    centers = np.asarray(centers, np.float64).reshape(-1, 2)
    sizes = np.asarray(sizes, np.float64).reshape(-1, 2)
    out_w, out_h = out_size
    sx = out_w / sizes[:, 0]
    sy = out_h / sizes[:, 1]
    m = np.zeros((len(centers), 2, 3), np.float64)
    m[:, 0, 0] = sx
    m[:, 1, 1] = sy
    m[:, 0, 2] = out_w * 0.5 - centers[:, 0] * sx
    m[:, 1, 2] = out_h * 0.5 - centers[:, 1] * sy
    return m.astype(np.float32)


def mirror_affines(m: np.ndarray, out_width: float) -> np.ndarray:
    """Maps (..., 2, 3) followed by a horizontal mirror of their output: ``x -> out_width - x``.

    Exact in this module's convention (pixel column ``j`` becomes ``out_width - 1 - j``).
    """
    out = np.array(m, np.float32, copy=True)
    out[..., 0, :] *= -1
    out[..., 0, 2] += np.float32(out_width)
    return out


def resize_affine(image_size: Size, input_size: Size, mode: str = "letterbox") -> np.ndarray:
    """(2, 3) float32 map from a frame of ``image_size`` to a detector input of ``input_size``.

    ``letterbox``: keep aspect ratio, image at the top-left, padding right/bottom (mmdet, YOLOX);
    ``letterbox_center``: keep aspect ratio, centred; ``stretch``: independent x/y scale (PicoDet).
    """
    iw, ih = image_size
    ow, oh = input_size
    if mode == "stretch":
        sx, sy, tx, ty = ow / iw, oh / ih, 0.0, 0.0
    elif mode in ("letterbox", "letterbox_center"):
        sx = sy = min(ow / iw, oh / ih)
        tx = ty = 0.0
        if mode == "letterbox_center":
            tx, ty = (ow - iw * sx) * 0.5, (oh - ih * sy) * 0.5
    else:
        raise ValueError(f"unknown resize mode {mode!r}; expected one of {RESIZE_MODES}")
    return np.array([[sx, 0.0, tx], [0.0, sy, ty]], np.float32)


def invert_affines(m: np.ndarray) -> np.ndarray:
    """Inverse of (..., 2, 3) affine maps, same shape, float32 (computed in float64)."""
    m64 = np.asarray(m, np.float64)
    a = m64[..., :2]
    t = m64[..., 2:]
    a_inv = np.linalg.inv(a)
    return np.concatenate([a_inv, -a_inv @ t], axis=-1).astype(np.float32)


def apply_affines(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Map points (N, K, 2) through per-item affines (N, 2, 3) (or one (2, 3)) -> (N, K, 2)."""
    pts = np.asarray(points, np.float32)
    m = np.asarray(m, np.float32)
    if m.ndim == 2:
        return pts @ m[:, :2].T + m[:, 2]
    return np.einsum("nkj,nij->nki", pts, m[:, :, :2]) + m[:, None, :, 2]


def map_boxes(boxes: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Map x1y1x2y2 boxes (N, 4) through one axis-aligned affine (2, 3)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    corners = apply_affines(boxes.reshape(-1, 2, 2), m)
    lo = corners.min(axis=1)
    hi = corners.max(axis=1)
    return np.concatenate([lo, hi], axis=1).astype(np.float32)


def clip_boxes(boxes: np.ndarray, image_size: Size) -> np.ndarray:
    """Clip x1y1x2y2 boxes (N, 4) to the frame ``image_size`` = (W, H)."""
    w, h = image_size
    out = np.asarray(boxes, np.float32).copy()
    out[:, 0::2] = np.clip(out[:, 0::2], 0, w)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, h)
    return out


def to_cv2_affine(m: np.ndarray) -> np.ndarray:
    """Convert a (..., 2, 3) affine from this module's convention to cv2's (centres on integers).

    With ``x_cv = x - 0.5`` on both sides: ``t_cv = t + A @ (0.5, 0.5) - 0.5``.
    """
    m = np.asarray(m, np.float64).copy()
    m[..., :, 2] = m[..., :, 2] + 0.5 * (m[..., :, 0] + m[..., :, 1]) - 0.5
    return m


def keypoint_boxes(keypoints: np.ndarray, scores: np.ndarray, min_score: float = 0.3,
                   min_count: int = 6, margin: float = 1.1) -> Tuple[np.ndarray, np.ndarray]:
    """Boxes around each person's confident keypoints (pose-guided re-crop).

    keypoints: (N, K, 2) pixels; scores: (N, K). The extent of the keypoints scoring above
    ``min_score``, grown ``margin`` x about its centre. Returns boxes (N, 4) x1y1x2y2 and a (N,)
    bool mask of the persons with at least ``min_count`` such keypoints (the others' rows are 0).
    """
    kp = np.asarray(keypoints, np.float32)
    ok = np.asarray(scores) > min_score
    usable = ok.sum(axis=1) >= min_count
    # the others take the mean of the confident ones, which leaves the extent unchanged
    mean = (kp * ok[..., None]).sum(axis=1) / np.maximum(ok.sum(axis=1), 1)[:, None]
    filled = np.where(ok[..., None], kp, mean[:, None, :])
    lo, hi = filled.min(axis=1), filled.max(axis=1)
    centre, half = (lo + hi) * 0.5, (hi - lo) * (0.5 * margin)
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    return np.where(usable[:, None], boxes, 0).astype(np.float32), usable


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of x1y1x2y2 boxes a (N, 4) and b (M, 4)."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
