"""Association: track-to-person similarity from box IoU and keypoint OKS, and the assignment.

The only place the tracking package reaches for OKS and the solver.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

from ..errors import require
from ..geometry import box_iou
from ..oks import oks

#: Keypoints a track needs above the keypoint threshold for OKS to count (else IoU alone).
MIN_OKS_KEYPOINTS = 4


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """(N,) float64 areas of x1y1x2y2 boxes (N, 4)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def keypoint_oks(ref_keypoints: np.ndarray, ref_scores: np.ndarray, ref_boxes: np.ndarray,
                 keypoints: np.ndarray, min_score: float = 0.3) -> np.ndarray:
    """(R, N) OKS of persons ``keypoints`` (N, 17, 2) against references (R, 17, 2) pixels.

    A reference keypoint counts when its score (R, 17) exceeds ``min_score``; the object area is
    the reference box's (R, 4) area (a box, not a segment: more lenient than COCO's).
    """
    ref = np.concatenate([np.asarray(ref_keypoints, np.float64),
                          (np.asarray(ref_scores) > min_score)[..., None].astype(np.float64)],
                         axis=-1)
    return oks(keypoints, ref, box_areas(ref_boxes)).T


def similarity(track_boxes: np.ndarray, track_keypoints: np.ndarray, track_scores: np.ndarray,
               boxes: np.ndarray, keypoints: np.ndarray, iou_weight: float,
               min_score: float = 0.3) -> np.ndarray:
    """(T, D) similarity in [0, 1] of T tracks and D persons: ``iou_weight`` x box IoU +
    (1 - ``iou_weight``) x OKS (IoU alone for a track with too few confident keypoints).

    Track arrays: boxes (T, 4), keypoints (T, 17, 2), scores (T, 17), predicted to this frame;
    persons: boxes (D, 4), keypoints (D, 17, 2); pixels, original frame.
    """
    iou = box_iou(track_boxes, boxes).astype(np.float64)
    if len(track_boxes) == 0 or len(boxes) == 0:
        return iou
    k = keypoint_oks(track_keypoints, track_scores, track_boxes, keypoints, min_score)
    has_kp = (np.asarray(track_scores) > min_score).sum(axis=1) >= MIN_OKS_KEYPOINTS
    both = iou_weight * iou + (1.0 - iou_weight) * k
    # no box overlap at all: not the same person, however the poses compare
    return np.where(has_kp[:, None], np.where(iou > 0, both, 0.0), iou)


def assign(sim: np.ndarray, min_similarity: float
           ) -> Tuple[List[Tuple[int, int]], List[int], List[int]]:
    """Maximum-similarity one-to-one assignment of rows to columns of ``sim`` (R, C); pairs below
    ``min_similarity`` are left unassigned. Returns (pairs, unmatched rows, unmatched columns)."""
    rows, cols = sim.shape
    if rows == 0 or cols == 0:
        return [], list(range(rows)), list(range(cols))
    optimize = require("scipy.optimize", "track", "scipy")
    gated = np.where(sim >= min_similarity, sim, 0.0)
    r, c = optimize.linear_sum_assignment(gated, maximize=True)
    pairs = [(int(i), int(j)) for i, j in zip(r, c) if sim[i, j] >= min_similarity]
    used_r = {i for i, _ in pairs}
    used_c = {j for _, j in pairs}
    return (pairs, [i for i in range(rows) if i not in used_r],
            [j for j in range(cols) if j not in used_c])
