"""Tracking on top of any pipeline (CPU or GPU): stable ``track_id`` s, detection every K frames,
smoothed keypoints — with the same ``__call__`` / ``stream`` protocol.

- Detection frames run the inner pipeline as usual and :meth:`PoseTracker.update` associates its
  persons with the tracks.
- Frames between detections (``det_every`` > 1) run ``inner(frame, detections=boxes)`` on each
  live track's pose-guided box, predicted forward by the motion model: the detector is not run
  (on the GPU not even enqueued; the crop kernel takes the boxes) and only the keypoint model does
  work. Those boxes come from the previous frame's keypoints, so such a frame cannot start before
  the previous one has finished: with ``det_every`` > 1, ``stream`` runs frame by frame and the
  GPU's two-slot overlap (frame t+1's detection beside frame t's keypoints) is given up — on a
  frame without detection there is no detection to overlap. With ``det_every`` = 1, ``stream``
  keeps the inner pipeline's own stream (overlap included) and only associates its results.
"""

from __future__ import annotations

import time
from typing import Any, Iterator, Optional, Tuple

import numpy as np

from .io.inputs import ImageLike, as_frame, as_frames
from .tracking import PoseTracker, TrackerConfig
from .types import Detections, Frame, FrameResult, StageTimes


class TrackedPipeline:
    """``inner`` with a :class:`PoseTracker`. Owns ``inner``: ``close()`` closes it."""

    def __init__(self, inner: Any, config: TrackerConfig = TrackerConfig()) -> None:
        self.inner = inner
        self.tracker = PoseTracker(config)
        self.backend: str = str(inner.backend)

    def __call__(self, image: ImageLike, detections: Optional[Detections] = None
                 ) -> FrameResult:
        """The next frame of a sequence: detection or keypoints-only as the schedule says
        (given ``detections`` always count as a detection frame)."""
        frame = as_frame(image)
        active = sum(tr.active for tr in self.tracker.tracks)
        if detections is not None or self.tracker.schedule.due(active):
            return self._associate(self.inner(frame, detections))
        return self._follow(frame)

    def stream(self, frames: Any) -> Iterator[FrameResult]:
        """Tracked results in frame order (see the module docstring for what overlaps)."""
        if self.tracker.config.det_every == 1:
            for result in self.inner.stream(frames):
                yield self._associate(result)
            return
        for frame in as_frames(frames):
            yield self(frame)

    def _associate(self, result: FrameResult) -> FrameResult:
        self.tracker.detections_run += 1
        poses = self.tracker.update(result.poses, result.frame.timestamp)
        return FrameResult(result.frame, poses, result.times)

    def _follow(self, frame: Frame) -> FrameResult:
        times = StageTimes()
        t0 = time.perf_counter()

        def estimate(f: Frame, boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
            given = Detections(boxes, np.ones(len(boxes), np.float32))
            result = self.inner(f, given)
            for stage, ms in result.times.items():
                if stage != "total":
                    times.add(stage, ms)
            return result.poses.keypoints, result.poses.keypoint_scores

        poses = self.tracker.follow(frame, estimate)
        times["total"] = (time.perf_counter() - t0) * 1e3
        return FrameResult(frame, poses, times)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> TrackedPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tracker_config(track: bool, det_every: int, smooth: bool) -> Optional[TrackerConfig]:
    """The tracker a pipeline config asks for, or None (``det_every`` > 1 and ``smooth`` need
    tracks, so either turns tracking on)."""
    if not (track or det_every > 1 or smooth):
        return None
    return TrackerConfig(det_every=det_every, smooth=smooth)
