"""Object keypoint similarity (COCO's OKS), pure numpy."""

from __future__ import annotations

import numpy as np

from .skeleton import OKS_SIGMAS


def oks(pred: np.ndarray, gt: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """(N, M) OKS between predictions and ground truth, as COCOeval computes it.

    pred: (N, 17, 2) pixels; gt: (M, 17, 3) COCO keypoints (x, y, visibility); areas: (M,) the
    ground-truth segment areas. Only labelled keypoints (visibility > 0) count; a person with
    none gets OKS 0.
    """
    pred = np.asarray(pred, np.float64).reshape(-1, len(OKS_SIGMAS), 2)
    gt = np.asarray(gt, np.float64).reshape(-1, len(OKS_SIGMAS), 3)
    var = (2 * OKS_SIGMAS.astype(np.float64)) ** 2
    d2 = ((pred[:, None, :, :] - gt[None, :, :, :2]) ** 2).sum(-1)        # (N, M, 17)
    e = d2 / var / (np.asarray(areas, np.float64)[None, :, None] + np.spacing(1)) / 2
    vis = gt[None, :, :, 2] > 0
    counts = vis.sum(-1)
    sums = np.where(vis, np.exp(-e), 0.0).sum(-1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
