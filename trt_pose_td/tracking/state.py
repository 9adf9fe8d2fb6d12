"""One track: identity, last pose, motion model, smoother, and how long it has been missed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

import numpy as np

from ..geometry import keypoint_boxes
from .smoothing import OneEuroFilter

#: Keypoint score above which a keypoint counts as seen (centre, pose-guided box, OKS).
KEYPOINT_MIN_SCORE = 0.3


def pose_centre(keypoints: np.ndarray, scores: np.ndarray, box: np.ndarray,
                min_score: float = KEYPOINT_MIN_SCORE) -> np.ndarray:
    """(2,) float64: mean of the confident keypoints (17, 2), else the box (4,) centre.

    The same measurement on detection frames and in between, so box styles never jump.
    """
    ok = np.asarray(scores) > min_score
    if ok.sum() >= 3:
        return np.asarray(keypoints, np.float64)[ok].mean(axis=0)
    b = np.asarray(box, np.float64)
    return (b[:2] + b[2:]) * 0.5


def box_height(box: np.ndarray) -> float:
    return float(max(box[3] - box[1], 1.0))


@dataclass
class Track:
    """A person followed over frames.

    keypoints (17, 2) float32 and scores (17,) float32: the last raw pose; box (4,) float32: the
    detector's box, moved with the person between detections; score: its last detection score;
    centre: the pose centre the motion model saw last; horizon: seconds of motion predicted past
    the last observation at most (a person who stops while occluded is not sent on walking);
    missed: frames since last seen.
    """

    track_id: int
    keypoints: np.ndarray
    scores: np.ndarray
    box: np.ndarray
    score: float
    motion: Any
    centre: np.ndarray
    smoother: Optional[OneEuroFilter] = None
    horizon: float = 0.5
    missed: int = 0
    hits: int = 1
    smoothed: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        """Seen in the last frame (the ones the keypoint model follows between detections)."""
        return self.missed == 0

    def shift(self, t: float) -> np.ndarray:
        """(2,) float32 displacement the motion model predicts from the last pose to ``t``
        (at most ``horizon`` s of motion)."""
        t = min(t, self.motion.t + self.horizon)
        return (self.motion.predict(t) - self.centre).astype(np.float32)

    def predicted(self, t: float) -> Tuple[np.ndarray, np.ndarray]:
        """Box (4,) and keypoints (17, 2) float32 moved to where the model expects them at t."""
        d = self.shift(t)
        return self.box + np.tile(d, 2), self.keypoints + d

    def guided_box(self, t: float) -> np.ndarray:
        """(4,) float32 box for the keypoint model at ``t`` without a detection: the box around
        the last confident keypoints (:func:`..geometry.keypoint_boxes`), moved by the motion
        model; the moved detector box when too few keypoints are confident."""
        kbox, usable = keypoint_boxes(self.keypoints[None], self.scores[None],
                                      KEYPOINT_MIN_SCORE)
        box = kbox[0] if usable[0] else self.box
        return box + np.tile(self.shift(t), 2)

    def observe(self, keypoints: np.ndarray, scores: np.ndarray, box: np.ndarray,
                score: Optional[float], t: float) -> None:
        """Take a new pose at ``t``; ``box`` (4,) is the detector's or the moved one; ``score``
        None keeps the last detection score."""
        centre = pose_centre(keypoints, scores, box)
        self.motion.update(centre, t, box_height(box))
        self.keypoints = np.asarray(keypoints, np.float32).copy()
        self.scores = np.asarray(scores, np.float32).copy()
        self.box = np.asarray(box, np.float32).copy()
        self.centre = centre
        if score is not None:
            self.score = float(score)
        self.missed = 0
        self.hits += 1
        self.smoothed = (None if self.smoother is None
                         else self.smoother(self.keypoints, t, box_height(self.box)))
