"""Skip-frame detection: run the detector every K-th frame, follow tracks by keypoints between.

On a detection frame the tracker gets fresh persons (``detect(frame) -> Detections``, then
``estimate(frame, boxes) -> (keypoints (N, 17, 2), scores (N, 17))``) and associates them. On the
frames between, each active track's box is the box around its previous keypoints
(:func:`trt_pose_td.geometry.keypoint_boxes`, the pose-guided box ``--recrop`` uses) moved by the
motion model to this frame's timestamp, and only the keypoint model runs, on those boxes. A track
whose keypoints collapse (mean score below ``collapse_score``: the person left the box, was
occluded or left the frame) stops being followed; it stays in the tracker as lost until the next
detection finds it again or ``max_missed`` frames pass. New people appear at the next detection.
With no active track left, the next frame detects (``detect_when_empty``), so an empty scene does
not wait K frames for the first person.

Streaming (a pipeline that overlaps frame n+1's work with frame n's): a detection frame depends
only on its own image, so its detector can be enqueued while the previous frame's keypoint model
runs. A frame between detections needs the *previous frame's keypoints* for its crop boxes, so its
crop cannot be enqueued before frame n's keypoints are decoded and the tracker has stepped (host
round trip: download, decode, :meth:`PoseTracker.follow`'s box computation, <1 ms on the host for
tens of people). Such a pipeline must therefore (a) keep at most one in-between frame in flight,
stepping the tracker in frame order before building the next frame's boxes, and (b) only
prefetch/upload/resize the next image meanwhile. The cost: on in-between frames the keypoint
model's latency is no longer hidden behind the next frame's detector, which is absent there
anyway; throughput is bounded by upload + keypoint model + download instead of the slower stage.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..types import Detections, Frame
from .state import Track

#: ``detect(frame) -> Detections`` (boxes x1y1x2y2 pixels, original frame).
Detect = Callable[[Frame], Detections]
#: ``estimate(frame, boxes (N, 4)) -> (keypoints (N, 17, 2) float32 pixels, scores (N, 17))``.
Estimate = Callable[[Frame, np.ndarray], Tuple[np.ndarray, np.ndarray]]


class DetectionSchedule:
    """Decides per frame whether the detector runs: every ``det_every``-th frame since the last
    detection, and (``detect_when_empty``) on any frame with no active track."""

    def __init__(self, det_every: int = 1, detect_when_empty: bool = True) -> None:
        self.det_every = det_every
        self.detect_when_empty = detect_when_empty
        self._since: Optional[int] = None  # frames since the last detection; None: none yet

    def due(self, active_tracks: int) -> bool:
        """Whether this frame detects; call exactly once per frame, in order."""
        since = self._since
        detect = (since is None or since + 1 >= self.det_every
                  or (self.detect_when_empty and active_tracks == 0))
        self._since = 0 if since is None or detect else since + 1
        return detect

    def next_is_scheduled(self) -> bool:
        """Whether the next frame detects by the count alone (without calling :meth:`due`): a
        pipeline can enqueue that frame's detection early; the empty-scene rule is only known
        once this frame's tracks are."""
        return self._since is None or self._since + 1 >= self.det_every


def visible_part(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N,) float32 share of each box (N, 4) inside a ``width`` x ``height`` frame."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    inner = np.clip(b, 0, [width, height, width, height])
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    inside = (inner[:, 2] - inner[:, 0]) * (inner[:, 3] - inner[:, 1])
    return np.where(area > 0, inside / np.maximum(area, 1e-9), 0.0).astype(np.float32)


def follow_tracks(tracks: Sequence[Track], frame: Frame, t: float, estimate: Estimate,
                  collapse_score: float, min_visible: float = 0.2
                  ) -> Tuple[List[int], np.ndarray, np.ndarray]:
    """Run the keypoint model on the pose-guided boxes of ``tracks`` at time ``t``.

    Returns the indices into ``tracks`` still followed and their keypoints (M, 17, 2) float32
    pixels and scores (M, 17). Tracks whose box lies mostly outside the frame (< ``min_visible``)
    are not run; those whose mean keypoint score falls below ``collapse_score`` are left out.
    """
    if not tracks:
        return [], np.zeros((0, 17, 2), np.float32), np.zeros((0, 17), np.float32)
    boxes = np.stack([tr.guided_box(t) for tr in tracks]).astype(np.float32)
    run = np.flatnonzero(visible_part(boxes, frame.width, frame.height) >= min_visible)
    if len(run) == 0:
        return [], np.zeros((0, 17, 2), np.float32), np.zeros((0, 17), np.float32)
    keypoints, scores = estimate(frame, boxes[run])
    keep = np.asarray(scores).mean(axis=1) >= collapse_score
    return ([int(i) for i in run[keep]], np.asarray(keypoints, np.float32)[keep],
            np.asarray(scores, np.float32)[keep])
