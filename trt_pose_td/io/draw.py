"""Annotators: draw boxes and skeletons onto a copy of a frame. They only draw."""

from __future__ import annotations

import numpy as np

from ..skeleton import EDGE_COLORS, EDGES
from ..types import Poses


def draw_poses(image: np.ndarray, poses: Poses, keypoint_threshold: float = 0.3,
               draw_boxes: bool = True, min_person_score: float = 0.0) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 BGR with every person's box, limbs and keypoints.

    With ``poses.track_ids`` each tracked person's box has its track's colour and ``#id``.
    Persons whose box score is below ``min_person_score`` are left out; keypoints scoring below
    ``keypoint_threshold`` (and limbs touching them) are not drawn. Line width scales with the
    frame so 4K frames stay readable.
    """
    import cv2

    out = image.copy()
    thick = max(1, int(round(max(image.shape[:2]) / 400)))
    radius = thick + 1
    for i in np.flatnonzero(poses.box_scores >= min_person_score):
        kp = poses.keypoints[i]
        ok = poses.keypoint_scores[i] >= keypoint_threshold
        if draw_boxes:
            x1, y1, x2, y2 = (int(round(v)) for v in poses.boxes[i])
            tid = -1 if poses.track_ids is None else int(poses.track_ids[i])
            color = (60, 220, 60) if tid < 0 else track_color(tid)
            label = f"{poses.box_scores[i]:.2f}" if tid < 0 else f"#{tid}"
            cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
            cv2.putText(out, label, (x1, max(0, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.35 * thick, color, 1, cv2.LINE_AA)
        for (a, b), color in zip(EDGES, EDGE_COLORS):
            if ok[a] and ok[b]:
                pa = (int(round(kp[a, 0])), int(round(kp[a, 1])))
                pb = (int(round(kp[b, 0])), int(round(kp[b, 1])))
                cv2.line(out, pa, pb, color, thick, cv2.LINE_AA)
        for j in np.flatnonzero(ok):
            cv2.circle(out, (int(round(kp[j, 0])), int(round(kp[j, 1]))), radius,
                       (0, 0, 255), -1, cv2.LINE_AA)
    return out


def track_color(track_id: int) -> tuple:
    """A BGR colour per track id: hues spaced by the golden angle, so neighbours differ."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((track_id * 0.618034) % 1.0, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)
