"""The GPU pipeline's in-flight state: a frame slot (host staging, device copy, detector events,
stage times) and a submitted keypoint job. Pure bookkeeping: the CUDA objects are created and
owned by :class:`~.gpu_pipeline.GpuPipeline`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

import numpy as np

from .errors import EngineError
from .types import Detections, Frame, StageTimes


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
