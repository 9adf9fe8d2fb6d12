"""Tracking on top of any pipeline (CPU or GPU): stable ``track_id`` s, detection every K frames,
smoothed keypoints — with the same ``__call__`` / ``stream`` / ``batch`` protocol.

- Detection frames run the inner pipeline as usual and :meth:`PoseTracker.update` associates its
  persons with the tracks.
- Frames between detections (``det_every`` > 1) run the keypoint model only, on each live track's
  pose-guided box predicted forward by the motion model (``inner(frame, detections=boxes)``: the
  detector is not run; on the GPU not even enqueued, the crop kernel takes the boxes).
- ``stream`` with ``det_every`` = 1 keeps the inner pipeline's own stream (on the GPU frame
  t+1's detection overlapping frame t's keypoints) and only associates its results. With
  ``det_every`` > 1 a frame between detections needs the previous frame's keypoints for its
  boxes, so it cannot start earlier; on the GPU pipeline (its four steps ``submit_frame``,
  ``detections``, ``submit_keypoints``, ``finish_keypoints``) frame t+1 is still uploaded — and,
  when the detection schedule's count makes it a detection frame, detected — while frame t's
  keypoints run, and its pose-guided crops are enqueued as soon as frame t's keypoints are on
  the host and the tracker has stepped. Results equal the frame-by-frame run. On the CPU
  pipeline ``stream`` runs frame by frame.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, cast

import numpy as np

from ..io.inputs import FramesLike, ImageLike, as_frame, as_frames
from ..tracking import PoseTracker, TrackerConfig
from ..types import Detections, Frame, FrameResult, StageTimes
from .base import StagedPipeline, per_frame_batch

if TYPE_CHECKING:
    from .gpu import GpuPipeline
    from .gpu_memory import FrameSlot

#: ``run(frame, boxes)``: the inner pipeline's result for given boxes (frame pixels).
KeypointRun = Callable[[Frame, np.ndarray], FrameResult]


class TrackedPipeline:
    """``inner`` with a :class:`PoseTracker`. Owns ``inner``: ``close()`` closes it."""

    def __init__(self, inner: StagedPipeline, config: TrackerConfig = TrackerConfig()) -> None:
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
        return self._follow(frame, tracker, lambda f, boxes: self.inner(f, _given(boxes)))

    def stream(self, frames: FramesLike) -> Iterator[FrameResult]:
        """Tracked results in frame order (see the module docstring for what overlaps)."""
        if self.tracker.config.det_every == 1:
            for result in self.inner.stream(frames):
                yield self._associate(result, self.tracker)
        elif hasattr(self.inner, "submit_frame"):  # the GPU pipeline's four steps
            yield from self._overlapped(cast("GpuPipeline", self.inner), frames)
        else:
            for frame in as_frames(frames):
                yield self(frame)

    def _overlapped(self, inner: GpuPipeline, frames: FramesLike) -> Iterator[FrameResult]:
        """``stream`` with ``det_every`` > 1 on the GPU pipeline's four steps: frame t+1 goes up
        (with its detection when the schedule's count says so) right after frame t's keypoints
        are enqueued; frame t's result is complete before frame t+1's boxes are chosen. When
        ``frames`` ends or raises, the frame in flight is finished first."""
        ahead = _Lookahead(inner, iter(as_frames(frames)), self.tracker)
        try:
            slot = ahead.take()
            while slot is not None:
                yield self._step_submitted(inner, slot, ahead)
                slot = ahead.take()
        finally:
            inner.cancel()
        if ahead.error is not None:
            raise ahead.error

    def _step_submitted(self, inner: GpuPipeline, slot: FrameSlot, ahead: _Lookahead
                        ) -> FrameResult:
        """One tracked frame already uploaded into ``slot`` (see :meth:`_overlapped`)."""
        tracker = self.tracker
        if tracker.schedule.due(sum(tr.active for tr in tracker.tracks)):
            job = inner.submit_keypoints(slot, inner.detections(slot))
            ahead.submit()
            return self._associate(inner.finish_keypoints(job), tracker)

        def run(frame: Frame, boxes: np.ndarray) -> FrameResult:
            job = inner.submit_keypoints(slot, _given(boxes))
            ahead.submit()
            return inner.finish_keypoints(job)

        result = self._follow(slot.current, tracker, run)
        if slot.busy:  # no track to follow in this frame: free its slot
            inner.finish_keypoints(inner.submit_keypoints(slot, Detections.empty()))
        return result

    @staticmethod
    def _associate(result: FrameResult, tracker: PoseTracker) -> FrameResult:
        tracker.detections_run += 1
        poses = tracker.update(result.poses, result.frame.timestamp)
        return FrameResult(result.frame, poses, result.times, result.batch)

    @staticmethod
    def _follow(frame: Frame, tracker: PoseTracker, run: KeypointRun) -> FrameResult:
        """A frame between detections: the tracker follows its tracks with ``run``."""
        times = StageTimes()
        t0 = time.perf_counter()

        def estimate(f: Frame, boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
            result = run(f, boxes)
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


def _given(boxes: np.ndarray) -> Detections:
    """Pose-guided boxes (N, 4) as detections (score 1)."""
    return Detections(boxes, np.ones(len(boxes), np.float32))


class _Lookahead:
    """The next frame of an overlapped tracked stream: taken from the source and submitted to
    the GPU pipeline (upload, and detection when the schedule's count is due) at most once, as
    soon as :meth:`submit` is called. A source error is kept in :attr:`error`, to be raised once
    the frame in flight is finished."""

    def __init__(self, inner: GpuPipeline, source: Iterator[Frame], tracker: PoseTracker
                 ) -> None:
        self.inner, self.source, self.tracker = inner, source, tracker
        self.slot: Optional[FrameSlot] = None
        self.submitted = False
        self.error: Optional[Exception] = None

    def submit(self) -> None:
        if self.submitted:
            return
        self.submitted = True
        try:
            frame = next(self.source)
        except StopIteration:
            return
        except Exception as exc:  # finish the frame in flight first
            self.error = exc
            return
        self.slot = self.inner.submit_frame(frame, self.tracker.schedule.next_is_scheduled())

    def take(self) -> Optional[FrameSlot]:
        """The submitted next frame's slot (None: the source ended or failed)."""
        self.submit()
        slot, self.slot, self.submitted = self.slot, None, False
        return slot


def tracker_config(track: bool, det_every: int, smooth: bool) -> Optional[TrackerConfig]:
    """The tracker a pipeline config asks for, or None (``det_every`` > 1 and ``smooth`` need
    tracks, so either turns tracking on)."""
    if not (track or det_every > 1 or smooth):
        return None
    return TrackerConfig(det_every=det_every, smooth=smooth)
