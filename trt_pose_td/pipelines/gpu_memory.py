"""What the GPU pipeline keeps in pinned and device memory between launches: frame slots (one per
frame in flight: its host staging, device copy, upload events and stage times) and the staging
buffer of the small tables each launch reads (warp frames, warp items, flip gathers).

Bookkeeping around CUDA objects, created lazily through :mod:`trt_pose_td.cuda.driver` (so the
stand-in of the tests can replace them). The stages that fill them: :mod:`.gpu_detect` (a
detector run: :class:`~.gpu_detect.DetJob`), :mod:`.gpu_keypoints` (a keypoint pass:
:class:`~.gpu_keypoints.PoseJob`), orchestrated by :class:`~.gpu.GpuPipeline`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import EngineError
from ..types import Detections, Frame, StageTimes

if TYPE_CHECKING:
    from ..cuda.driver import Event, Stream
    from .gpu_detect import DetJob

#: Alignment of every table in a :class:`Staging` buffer (and of TensorRT tensor addresses).
ALIGN = 256


def event() -> Event:
    """A new CUDA event (timing enabled)."""
    from ..cuda.driver import Event

    return Event()


@dataclass
class FrameSlot:
    """One frame in flight: host staging (pinned or mapped), its device copy (None when the
    kernels read mapped host memory), events around its upload on the detector stream
    (``events[0]`` before, ``events[1]`` after), its stage times, and while its detection runs
    the :class:`DetJob` it is part of; ``found``: the detector's persons once finished."""

    host: Any = None
    device: Any = None
    nbytes: int = 0
    events: List[Event] = field(default_factory=list)
    frame: Optional[Frame] = None
    times: StageTimes = field(default_factory=StageTimes)
    t0: float = 0.0
    busy: bool = False
    detection: Optional[DetJob] = None
    found: Optional[Detections] = None

    @property
    def current(self) -> Frame:
        """The frame this slot holds (set when it is uploaded)."""
        if self.frame is None:
            raise EngineError("GPU pipeline slot has no frame")
        return self.frame

    @property
    def frame_ptr(self) -> int:
        """Device address of the frame (the mapped host memory's, zero-copy)."""
        return int(self.device.ptr if self.device is not None else self.host.device_ptr)

    @property
    def table_entry(self) -> Tuple[int, int, int, int]:
        """(device address, width, height, row pitch in bytes): one row of a warp frame table."""
        frame = self.current
        return self.frame_ptr, frame.width, frame.height, frame.width * 3

    def buffers(self) -> List[Any]:
        """Everything of this slot to close."""
        return [b for b in (self.host, self.device) if b is not None] + list(self.events)


class Staging:
    """The small host -> device tables of a launch (warp frames and items), packed in one pinned
    buffer at :data:`ALIGN`-byte offsets and sent with ONE copy on the caller's stream. Before
    the host writes the next tables it waits for the previous copy (an event), so a copy never
    sends what a later call wrote; the buffers grow (after the stream is done with them)."""

    def __init__(self) -> None:
        self.host: Any = None
        self.device: Any = None
        self.nbytes = 0
        self._copied: Optional[Event] = None

    def put(self, stream: Stream, arrays: Sequence[np.ndarray]) -> List[int]:
        """Enqueue the upload of ``arrays`` (C-contiguous); returns their device addresses."""
        from ..cuda.driver import DeviceBuffer, PinnedBuffer

        offsets, total = [], 0
        for arr in arrays:
            offsets.append(total)
            total += -(-max(arr.nbytes, 1) // ALIGN) * ALIGN
        if self._copied is None:
            self._copied = event()
        else:
            self._copied.synchronize()
        if total > self.nbytes:
            stream.synchronize()
            self.close_buffers()
            self.nbytes = max(total, 2 * self.nbytes)
            self.host, self.device = PinnedBuffer(self.nbytes), DeviceBuffer(self.nbytes)
        staged = self.host.array(np.uint8, (self.nbytes,))
        for arr, offset in zip(arrays, offsets):
            raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
            staged[offset:offset + raw.nbytes] = raw
        self.device.upload(staged[:total], stream)
        self._copied.record(stream)
        return [int(self.device.ptr) + offset for offset in offsets]

    def close_buffers(self) -> None:
        for buf in (self.host, self.device):
            if buf is not None:
                buf.close()
        self.host = self.device = None
        self.nbytes = 0

    def close(self) -> None:
        self.close_buffers()
        if self._copied is not None:
            self._copied.close()
            self._copied = None
