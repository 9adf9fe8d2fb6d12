"""The person detector on the GPU, for one frame or several cameras' frames at once.

One run takes up to the engine profile's max batch of uploaded frames: ONE multi-frame warp
launch letterboxes every frame into its slice of the engine's (B, 3, H, W) input, the engine is
enqueued once, its small outputs come back to pinned host memory, and each frame's boxes are
decoded on the host (+ NMS) by the same :class:`~.stages.Detector` code as on the CPU. More
frames than the profile takes run as several such runs, one after another (a static batch-1
engine: one per frame), because the outputs of a run land in the engine's one set of pinned
host views. Stage times (``det_pre`` letterbox, ``det_infer``, ``det_post`` = copy back + host
decode) are CUDA event times split equally among the run's frames, plus each frame's own decode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import numpy as np

from ..cuda.twins import warp_frame_table, warp_items
from ..errors import EngineError
from .gpu_memory import FrameSlot, Staging, event
from .stages import Detector

if TYPE_CHECKING:
    from ..cuda.driver import Stream
    from ..cuda.launchers import Kernels
    from ..engines.tensorrt import TrtEngine


@dataclass
class DetJob:
    """One detector run on the frames of ``slots`` (at most the engine profile's max batch):
    their letterbox maps (2, 3) and the pinned host views its outputs are copied into."""

    slots: List[FrameSlot]
    affines: List[np.ndarray]
    outputs: Dict[str, np.ndarray]


class GpuDetector:
    """``detector`` (host decoding) over its TensorRT ``engine`` on ``stream``; at most one run
    in flight (:meth:`submit`, then :meth:`finish`). Owns its staging and events: close()."""

    def __init__(self, detector: Detector, engine: TrtEngine, kernels: Kernels, stream: Stream
                 ) -> None:
        self.detector, self.engine, self.kernels, self.stream = detector, engine, kernels, stream
        spec = detector.spec
        self._input = spec.input_name
        self._dtype = engine.inputs[self._input].dtype
        #: Frames per engine run: the largest batch a profile takes (1: a static engine).
        self.max_batch = max(1, int(engine.max_batch or 1))
        self._staging = Staging()
        self._events = [event() for _ in range(4)]  # start, letterboxed, inferred, fetched
        self._pending: Optional[DetJob] = None

    def submit(self, slots: Sequence[FrameSlot]) -> DetJob:
        """Enqueue one run on the (uploaded, in this stream's order) frames of ``slots``."""
        if self._pending is not None:
            raise EngineError("a detector run is still in flight (finish it first)")
        if not 1 <= len(slots) <= self.max_batch:
            raise ValueError(f"{len(slots)} frames for a detector run of 1..{self.max_batch}")
        s, ev, p = self.stream, self._events, self.detector.spec.preprocess
        w, h = p.input_size
        ev[0].record(s)
        affines = [self.detector.input_affine(slot.current) for slot in slots]
        count = len(slots)
        items = warp_items(np.stack(affines), np.arange(count), np.arange(count) * (3 * h * w))
        frames_ptr, items_ptr = self._staging.put(
            s, [warp_frame_table([slot.table_entry for slot in slots]), items])
        self.kernels.warp_frames(s, frames_ptr, items_ptr, count,
                                 self.engine.device_ptr(self._input), p.input_size, p.mean, p.std,
                                 p.channel_order, p.pad_value, self._dtype,
                                 out_capacity=self.engine.capacity(self._input))
        ev[1].record(s)
        shapes = self.engine.infer_device({self._input: (count, 3, h, w)}, s)
        ev[2].record(s)
        job = DetJob(list(slots), affines, self.engine.fetch_outputs(s, shapes))
        ev[3].record(s)
        for slot in slots:
            slot.detection = job
        self._pending = job
        return job

    def finish(self, job: DetJob) -> None:
        """Wait for ``job``; each of its slots gets ``found`` (boxes in its frame's pixels) and
        its ``det_*`` times."""
        if job is not self._pending:
            raise EngineError("this detector run is not the one in flight")
        ev = self._events
        ev[3].synchronize()
        n = len(job.slots)
        shared = {"det_pre": ev[1].elapsed_ms(ev[0]), "det_infer": ev[2].elapsed_ms(ev[1]),
                  "det_post": ev[3].elapsed_ms(ev[2])}
        for i, slot in enumerate(job.slots):
            t0 = time.perf_counter()
            item = {name: value[i:i + 1] for name, value in job.outputs.items()}
            slot.found = self.detector.postprocess(item, job.affines[i], slot.current)
            for stage, ms in shared.items():
                slot.times.add(stage, ms / n)
            slot.times.add("det_post", (time.perf_counter() - t0) * 1e3)
            slot.detection = None
        self._pending = None

    def run(self, slots: Sequence[FrameSlot]) -> int:
        """Detect the frames of ``slots``, one run per profile-max chunk; returns the runs."""
        runs = 0
        for start in range(0, len(slots), self.max_batch):
            self.finish(self.submit(slots[start:start + self.max_batch]))
            runs += 1
        return runs

    def cancel(self) -> None:
        """Forget the run in flight (its stream must have been synchronized)."""
        if self._pending is not None:
            for slot in self._pending.slots:
                slot.detection = None
            self._pending = None

    def resources(self) -> List[Any]:
        return [self._staging, *self._events]
