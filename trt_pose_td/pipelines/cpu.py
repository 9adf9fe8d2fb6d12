"""The CPU pipeline: detector, every person cropped in one warp, the keypoint model once per
chunk, on ONNX Runtime (or any :class:`~.engines.Engine`).

:class:`CpuPipeline` and :class:`~.gpu.GpuPipeline` satisfy one protocol
(:class:`.base.Pipeline`): ``pipeline(frame, detections=None) -> FrameResult`` for one
frame, ``pipeline.stream(frames) -> Iterator[FrameResult]`` for a sequence (what ``run``,
``serve``, ``eval`` and ``bench`` use), ``pipeline.batch(frames) -> List[FrameResult]`` for
several cameras' frames at once (one keypoint batch across them), ``close()``.
:func:`trt_pose_td.api.open_pipeline` is the only code that builds either.
"""

from __future__ import annotations

import logging
import time
from typing import Iterator, List, Optional, Sequence

from ..config_checks import expected_models
from ..engines import load_engine
from ..engines.base import check_pair
from ..io.inputs import FramesLike, ImageLike, as_frame, as_frames
from ..types import BatchInfo, Detections, FrameResult, StageTimes
from .base import given_detections
from .plan import Plan
from .stages import Detector, PoseEstimator, make_preprocessor

log = logging.getLogger(__name__)


class CpuPipeline:
    """Detector + keypoint model on the host. Owns both engines: ``close()`` releases them."""

    backend = "onnxruntime"

    def __init__(self, detector: Detector, pose: PoseEstimator) -> None:
        self.detector, self.pose = detector, pose

    @classmethod
    def from_plan(cls, plan: Plan) -> CpuPipeline:
        """Load the plan's two ONNX files on ONNX Runtime."""
        cfg = plan.cfg
        pre = make_preprocessor(cfg.preprocessor)
        det_engine = load_engine(plan.detector_file, "onnxruntime", cfg.threads)
        try:
            pose_engine = load_engine(plan.pose_file, "onnxruntime", cfg.threads)
        except BaseException:
            det_engine.close()
            raise
        try:
            check_pair(det_engine, plan.detector, pose_engine, plan.pose, expected_models(cfg))
            return cls(Detector(det_engine, plan.detector, plan.params, pre),
                       PoseEstimator(pose_engine, plan.pose, cfg.max_batch, cfg.refine, pre,
                                     flip=cfg.flip, recrop=cfg.recrop))
        except BaseException:
            det_engine.close()
            pose_engine.close()
            raise

    def __call__(self, image: ImageLike, detections: Optional[Detections] = None
                 ) -> FrameResult:
        """Poses of one frame (a Frame, BGR array or image path); ``detections`` (boxes in frame
        pixels) replace the detector's."""
        frame = as_frame(image)
        times = StageTimes()
        t0 = time.perf_counter()
        if detections is None:
            detections = self.detector(frame, times)
        poses = self.pose(frame, detections, times)
        times["total"] = (time.perf_counter() - t0) * 1e3
        return FrameResult(frame, poses, times)

    def batch(self, images: Sequence[ImageLike],
              detections: Optional[Sequence[Optional[Detections]]] = None) -> List[FrameResult]:
        """Poses of several frames (cameras) at once, equal to one call per frame up to ONNX
        Runtime's float rounding for other batch sizes: the detector on all frames needing it
        (one run for a dynamic-batch detector such as the default raw-head RTMDet; a static
        one loops), then every person of every frame cropped into ONE keypoint batch (chunked
        by ``max_batch``) and the results split back, in the order given.

        ``detections[i]`` (boxes in frame i's pixels, or None) replaces the detector for frame
        i. Each result's ``times`` holds that frame's own warps and decodes plus its share of
        the shared runs (its persons' share of a keypoint chunk), so the frames' times add up
        to the batch's cost; ``"total"`` is the wall time of the whole call. Every result's
        ``batch`` is one :class:`~trt_pose_td.types.BatchInfo` (persons per frame, run sizes)."""
        frames = [as_frame(image) for image in images]
        given = given_detections(detections, len(frames))
        t0 = time.perf_counter()
        times = [StageTimes() for _ in frames]
        info = BatchInfo([0] * len(frames))
        todo = [i for i, d in enumerate(given) if d is None]
        if todo:
            det_calls: List[int] = []
            found = self.detector.detect_many([frames[i] for i in todo],
                                              [times[i] for i in todo], det_calls)
            for i, d in zip(todo, found):
                given[i] = d
            info.detector_calls = len(det_calls)
        dets = [d if d is not None else Detections.empty() for d in given]
        poses = self.pose.call_many(frames, dets, times, info.keypoint_batches)
        info.persons = [len(p) for p in poses]
        info.ms = (time.perf_counter() - t0) * 1e3
        for t in times:
            t["total"] = info.ms
        return [FrameResult(f, p, t, info) for f, p, t in zip(frames, poses, times)]

    def stream(self, frames: FramesLike) -> Iterator[FrameResult]:
        """Results in frame order, one per frame. Sequential: on this 2-core CPU, running frame
        t+1's detection in a thread beside frame t's keypoints was measured slower (both models
        already use every core; docs/architecture.md), so there is nothing in flight to drain
        when ``frames`` ends or raises (the error propagates after the last result)."""
        for frame in as_frames(frames):
            yield self(frame)

    def close(self) -> None:
        self.detector.engine.close()
        self.pose.engine.close()

    def __enter__(self) -> CpuPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
