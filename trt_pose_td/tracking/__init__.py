"""Tracking: stable person IDs (ByteTrack-style association on box IoU + keypoint OKS, a
constant-velocity motion model), skip-frame detection and one-euro keypoint smoothing.

``PoseTracker(TrackerConfig(det_every=5, smooth=True)).step(frame, detect, estimate)``; see
:mod:`.skipframe` for what ``detect`` / ``estimate`` are and what a streaming pipeline must do.
Needs scipy (``pip install 'trt-pose-td[track]'``) for the assignment.
"""

from __future__ import annotations

from .tracker import PoseTracker, TrackerConfig

__all__ = ["PoseTracker", "TrackerConfig"]
