"""COCO-17 person skeleton as data: names, drawing edges, flip pairs, OKS sigmas."""

from __future__ import annotations

import numpy as np

KEYPOINT_NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

#: Limbs as 0-based index pairs (COCO's 1-based ``skeleton`` minus one).
EDGES = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip

#: Left/right keypoint pairs, swapped when an image is mirrored.
FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

#: Per-keypoint OKS falloff used by COCO keypoint evaluation.
OKS_SIGMAS = np.array(
    [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
     0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089],
    dtype=np.float32,
)  # fmt: skip

#: Drawing colours (BGR) per edge: left side orange, right side blue, centre/head green.
_LEFT = (0, 128, 255)
_RIGHT = (255, 128, 0)
_MID = (0, 200, 0)


def _side(i: int) -> int:
    """-1 left, +1 right, 0 nose."""
    if i == 0:
        return 0
    return -1 if i % 2 == 1 else 1


EDGE_COLORS = tuple(
    _LEFT if _side(a) + _side(b) < 0 else _RIGHT if _side(a) + _side(b) > 0 else _MID
    for a, b in EDGES
)


def flip_permutation() -> np.ndarray:
    """(17,) int64: index map that swaps left and right keypoints."""
    perm = np.arange(NUM_KEYPOINTS)
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm
