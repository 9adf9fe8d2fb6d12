"""The GPU pipeline's in-flight state: a frame slot (host staging, device copy, detector events,
stage times) and a submitted keypoint job; :func:`per_frame_batch`, its ``batch(frames)`` (one
frame after another). Pure bookkeeping: the CUDA objects are created and owned by
:class:`~.gpu_pipeline.GpuPipeline`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from .errors import EngineError
from .types import BatchInfo, Detections, Frame, FrameResult, StageTimes, given_detections


@dataclass
class FrameSlot:
    """One frame in flight: host staging (pinned or mapped), its device copy, detector events."""

    host: Any = None
    device: Any = None
    nbytes: int = 0
    det_params: Any = None      # (pinned, device) 6 floats of the letterbox map
    events: List[Any] = field(default_factory=list)
    frame: Optional[Frame] = None
    affine: Any = None
    outputs: Any = None
    times: StageTimes = field(default_factory=StageTimes)
    t0: float = 0.0

    @property
    def current(self) -> Frame:
        """The frame this slot holds (set when its detection is submitted)."""
        if self.frame is None:
            raise EngineError("GPU pipeline slot has no frame")
        return self.frame

    @property
    def frame_ptr(self) -> int:
        return int(self.device.ptr if self.device is not None else self.host.device_ptr)


@dataclass
class PoseJob:
    slot: FrameSlot
    detections: Detections
    affines: np.ndarray
    chunks: int


def per_frame_batch(call: Callable[[Any, Optional[Detections]], FrameResult],
                    images: Sequence[Any], detections: Optional[Sequence[Optional[Detections]]],
                    max_batch: int) -> List[FrameResult]:
    """``batch(frames)`` as one ``call(image, detections)`` per frame: the GPU pipeline's
    fallback (one detector run and ``ceil(persons / max_batch)`` keypoint runs per frame, not
    one keypoint batch across frames). Results as :meth:`.pipeline.CpuPipeline.batch` gives
    them: in order, all sharing one :class:`~.types.BatchInfo` (each frame keeps its own
    stage times and ``"total"``)."""
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
