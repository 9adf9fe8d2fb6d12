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
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .io.inputs import ImageLike, as_frame, as_frames
from .tracking import PoseTracker, TrackerConfig
from .types import BatchInfo, Detections, Frame, FrameResult, StageTimes, given_detections


class TrackedPipeline:
    """``inner`` with a :class:`PoseTracker`. Owns ``inner``: ``close()`` closes it."""

    def __init__(self, inner: Any, config: TrackerConfig = TrackerConfig()) -> None:
        self.inner = inner
        self.tracker = PoseTracker(config)
        self._trackers: Dict[str, PoseTracker] = {}  # per camera, for batch()
        self.backend: str = str(inner.backend)

    def __call__(self, image: ImageLike, detections: Optional[Detections] = None
                 ) -> FrameResult:
        """The next frame of a sequence: detection or keypoints-only as the schedule says
        (given ``detections`` always count as a detection frame)."""
        return self._step(self.tracker, as_frame(image), detections)

    def batch(self, images: Sequence[ImageLike],
              detections: Optional[Sequence[Optional[Detections]]] = None
              ) -> List[FrameResult]:
        """Several cameras' frames at once (``inner.batch``: one detector and one keypoint batch
        across them), each camera (``Frame.camera``; "" is :attr:`tracker`) with its own
        tracker, so track ids are per camera. With ``det_every`` > 1 the frames go one after
        another through their camera's tracker instead (a frame without detection needs its
        camera's previous frame first): no batch across cameras then."""
        frames = [as_frame(image) for image in images]
        if self.tracker.config.det_every == 1:
            return [self._associate(r, self.tracker_of(r.frame.camera))
                    for r in self.inner.batch(frames, detections)]
        before = self._detections_run()
        results = per_frame_batch(lambda f, d: self._step(self.tracker_of(f.camera), f, d),
                                  frames, detections, self.inner.pose.max_batch)
        if results and results[0].batch is not None:  # frames that only followed their tracks
            results[0].batch.detector_calls = self._detections_run() - before
        return results

    def _detections_run(self) -> int:
        return sum(t.detections_run for t in (self.tracker, *self._trackers.values()))

    def tracker_of(self, camera: str) -> PoseTracker:
        """The tracker of ``camera`` (created on its first frame; "" is :attr:`tracker`)."""
        if not camera:
            return self.tracker
        return self._trackers.setdefault(camera, PoseTracker(self.tracker.config))

    def _step(self, tracker: PoseTracker, frame: Frame, detections: Optional[Detections]
              ) -> FrameResult:
        active = sum(tr.active for tr in tracker.tracks)
        if detections is not None or tracker.schedule.due(active):
            return self._associate(self.inner(frame, detections), tracker)
        return self._follow(frame, tracker)

    def stream(self, frames: Any) -> Iterator[FrameResult]:
        """Tracked results in frame order (see the module docstring for what overlaps)."""
        if self.tracker.config.det_every == 1:
            for result in self.inner.stream(frames):
                yield self._associate(result, self.tracker)
            return
        for frame in as_frames(frames):
            yield self(frame)

    @staticmethod
    def _associate(result: FrameResult, tracker: PoseTracker) -> FrameResult:
        tracker.detections_run += 1
        poses = tracker.update(result.poses, result.frame.timestamp)
        return FrameResult(result.frame, poses, result.times, result.batch)

    def _follow(self, frame: Frame, tracker: PoseTracker) -> FrameResult:
        times = StageTimes()
        t0 = time.perf_counter()

        def estimate(f: Frame, boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
            given = Detections(boxes, np.ones(len(boxes), np.float32))
            result = self.inner(f, given)
            for stage, ms in result.times.items():
                if stage != "total":
                    times.add(stage, ms)
            return result.poses.keypoints, result.poses.keypoint_scores

        poses = tracker.follow(frame, estimate)
        times["total"] = (time.perf_counter() - t0) * 1e3
        return FrameResult(frame, poses, times)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> TrackedPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def per_frame_batch(call: Callable[[Any, Optional[Detections]], FrameResult],
                    images: Sequence[Any], detections: Optional[Sequence[Optional[Detections]]],
                    max_batch: int) -> List[FrameResult]:
    """``batch(frames)`` as one ``call(image, detections)`` per frame (a tracked pipeline with
    ``det_every`` > 1: each camera's frame needs that camera's previous one): one detector run
    and ``ceil(persons / max_batch)`` keypoint runs per frame. Results as
    :meth:`.pipeline.CpuPipeline.batch` gives them: in order, all sharing one
    :class:`~.types.BatchInfo` (each frame keeps its own stage times and ``"total"``)."""
    given = given_detections(detections, len(images))
    t0 = time.perf_counter()
    results = [call(image, d) for image, d in zip(images, given)]
    info = BatchInfo([len(r.poses) for r in results], sum(d is None for d in given))
    for n in info.persons:
        info.keypoint_batches += [min(max_batch, n - s) for s in range(0, n, max_batch)]
    info.ms = (time.perf_counter() - t0) * 1e3
    for r in results:
        r.batch = info
    return results


def tracker_config(track: bool, det_every: int, smooth: bool) -> Optional[TrackerConfig]:
    """The tracker a pipeline config asks for, or None (``det_every`` > 1 and ``smooth`` need
    tracks, so either turns tracking on)."""
    if not (track or det_every > 1 or smooth):
        return None
    return TrackerConfig(det_every=det_every, smooth=smooth)
