"""The CPU pipeline: detector, every person cropped in one warp, the keypoint model once per
chunk, on ONNX Runtime (or any :class:`~.engines.Engine`).

:class:`CpuPipeline` and :class:`~.gpu_pipeline.GpuPipeline` satisfy one protocol
(:class:`trt_pose_td.api.Pipeline`): ``pipeline(frame, detections=None) -> FrameResult`` for one
frame, ``pipeline.stream(frames) -> Iterator[FrameResult]`` for a sequence (what ``run``,
``serve``, ``eval`` and ``bench`` use), ``close()``. :func:`trt_pose_td.api.open_pipeline` is the
only code that builds either.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Iterator, Optional, Union

from .engines import load_engine
from .io.inputs import ImageLike, as_frame, as_frames
from .plan import Plan
from .stages import Detector, PoseEstimator, make_preprocessor
from .types import Detections, Frame, FrameResult, StageTimes

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

    def stream(self, frames: Union[Iterable[Frame], Any]) -> Iterator[FrameResult]:
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
