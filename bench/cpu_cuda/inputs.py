"""Input generators for the kernel cases: frames and crop maps, heatmaps, SimCC vectors.

Every generator takes a ``numpy.random.Generator`` and returns float32 / uint8 arrays in the
shapes the kernels take; ``kind`` names the edge case (see :data:`BOX_KINDS`, :data:`MAP_KINDS`).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from trt_pose_td import geometry

Size = Tuple[int, int]

#: Where the crop boxes lie relative to a W x H frame ("mixed": all of them in one batch).
BOX_KINDS = ("inside", "partly", "outside", "tiny", "huge", "mirror", "affine", "letterbox",
             "mixed")
#: What the heatmaps / SimCC vectors hold ("mixed": all of them in one batch).
MAP_KINDS = ("gaussian", "random", "ties", "border", "nan", "inf", "mixed")


def _boxes(rng: np.random.Generator, kind: str, n: int, w: int, h: int) -> np.ndarray:
    """(n, 4) float32 x1y1x2y2 boxes of ``kind`` for a w x h frame."""
    if kind == "inside":
        bw, bh = rng.uniform(4, 0.9 * w, n), rng.uniform(4, 0.9 * h, n)
        x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    elif kind == "outside":  # entirely beyond one edge, by at least the padding
        bw, bh = rng.uniform(4, w, n), rng.uniform(4, h, n)
        x1 = np.where(rng.random(n) < 0.5, -bw * 2.0 - rng.uniform(4, w, n),
                      w + bw + rng.uniform(4, w, n))
        y1 = rng.uniform(-h, 2 * h, n)
    elif kind == "tiny":
        bw, bh = rng.uniform(0.3, 3, n), rng.uniform(0.3, 3, n)
        x1, y1 = rng.uniform(-1, w, n), rng.uniform(-1, h, n)
    elif kind == "huge":
        bw, bh = rng.uniform(3 * w, 20 * w, n), rng.uniform(3 * h, 20 * h, n)
        x1, y1 = rng.uniform(0, w, n) - bw / 2, rng.uniform(0, h, n) - bh / 2
    else:  # partly: across one or more edges
        bw, bh = rng.uniform(0.3 * w, 1.2 * w, n), rng.uniform(0.3 * h, 1.2 * h, n)
        x1, y1 = rng.uniform(-0.6 * w, 0.8 * w, n), rng.uniform(-0.6 * h, 0.8 * h, n)
    return np.stack([x1, y1, x1 + bw, y1 + bh], 1).astype(np.float32)


def crop_maps(rng: np.random.Generator, kind: str, n: int, frame: Size, out: Size
              ) -> np.ndarray:
    """(n, 2, 3) float32 frame -> output maps (the package's geometry convention)."""
    w, h = frame
    if kind == "mixed":
        kinds = rng.integers(0, len(BOX_KINDS) - 1, n)
        return np.stack([crop_maps(rng, BOX_KINDS[i], 1, frame, out)[0] for i in kinds])
    if kind == "letterbox":
        return np.repeat(geometry.resize_affine(frame, out, "letterbox_center")[None], n, 0)
    if kind == "affine":  # rotation, anisotropic scale and shear around a point of the frame
        theta, shear = rng.uniform(-np.pi, np.pi, n), rng.uniform(-0.5, 0.5, n)
        sx, sy = rng.uniform(0.2, 4, n), rng.uniform(0.2, 4, n)
        c, s = np.cos(theta), np.sin(theta)
        lin = np.stack([np.stack([sx * c, sx * (shear * c - s)], -1),
                        np.stack([sy * s, sy * (shear * s + c)], -1)], 1)
        centre = np.stack([rng.uniform(0, w, n), rng.uniform(0, h, n)], 1)
        t = np.array(out, np.float64) / 2 - np.einsum("nij,nj->ni", lin, centre)
        return np.concatenate([lin, t[:, :, None]], 2).astype(np.float32)
    boxes = _boxes(rng, "partly" if kind == "mirror" else kind, n, w, h)
    centres, sizes = geometry.box_to_center_size(boxes, out[0] / out[1], 1.25)
    maps = geometry.crop_affines(centres, sizes, out)
    return geometry.mirror_affines(maps, out[0]) if kind == "mirror" else maps


def _gaussians(rng: np.random.Generator, m: int, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = rng.uniform(-1, w, (m, 1, 1)), rng.uniform(-1, h, (m, 1, 1))
    sigma = rng.uniform(0.7, 3, (m, 1, 1))
    g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))
    return g * rng.uniform(0.05, 1, (m, 1, 1)) + rng.normal(0, 0.01, (m, h, w))


def heatmaps(rng: np.random.Generator, kind: str, n: int, k: int, h: int, w: int
             ) -> np.ndarray:
    """(n, k, h, w) float32 heatmaps of ``kind``."""
    m = n * k
    if kind == "mixed":  # every kind in one batch
        parts = [heatmaps(rng, kd, 1, m, h, w)[0] for kd in MAP_KINDS[:-1]]
        pick = rng.integers(0, len(parts), m)
        return np.stack([parts[p][i] for i, p in enumerate(pick)]).reshape(n, k, h, w)
    maps = _gaussians(rng, m, h, w) if kind == "gaussian" else rng.random((m, h, w))
    if kind == "ties":  # flat maps and plateaus of equal maxima: the first (row-major) wins
        maps = np.round(maps * 3) / 3
        maps[::3] = 0.5
    elif kind == "border":  # the maximum on an edge (corners included)
        edge = rng.integers(0, 4, m)
        rows = np.where(edge == 0, 0, np.where(edge == 1, h - 1, rng.integers(0, h, m)))
        cols = np.where(edge == 2, 0, np.where(edge == 3, w - 1, rng.integers(0, w, m)))
        maps[np.arange(m), rows, cols] = 2.0
    elif kind == "nan":
        maps.reshape(m, -1)[np.arange(m), rng.integers(0, h * w, m)] = np.nan
        maps.reshape(m, -1)[np.arange(m)[::2], rng.integers(0, h * w, (m + 1) // 2)] = np.nan
    elif kind == "inf":  # +inf maxima, -inf elsewhere, maps entirely -inf
        flat = maps.reshape(m, -1)
        flat[np.arange(m), rng.integers(0, h * w, m)] = -np.inf
        flat[np.arange(m)[1::3], rng.integers(0, h * w, len(flat[1::3]))] = np.inf
        flat[2::3] = -np.inf
    return np.ascontiguousarray(maps.reshape(n, k, h, w), np.float32)


def simcc(rng: np.random.Generator, kind: str, n: int, k: int, length: int) -> np.ndarray:
    """(n, k, length) float32 SimCC classification vectors of ``kind``."""
    return heatmaps(rng, kind, n, k, 1, length).reshape(n, k, length)
