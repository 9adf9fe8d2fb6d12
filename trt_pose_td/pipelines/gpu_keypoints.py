"""The keypoint stage on the GPU: every person of every frame in ONE crop launch, the keypoint
engine once per profile-max chunk, decoded on the GPU, split back per frame.

Crops: one multi-frame warp launch (``warp_frames``) reads each person from its own frame (a
table of the frames' device copies) and writes chunk c's crops from byte ``c * stride`` of the
crop buffer, ``stride`` = the profile max's crops rounded up to TensorRT's 256-byte alignment.
With ``--flip`` the same launch also writes every person's mirrored crop
(:func:`~..geometry.mirror_affines`) into a second region laid out the same way; each chunk then
runs the engine twice (crops -> the engine's outputs, mirrored crops -> scratch outputs) and the
``flip_average`` kernel turns the pair into ``(outputs + flip_back(mirrored)) * 0.5`` by a gather
table built from the decoder's own CPU flip-back, before the decode kernel reduces every map to
(x, y, score). Only N x K x 3 floats come back. ``--recrop`` (:meth:`GpuKeypoints.complete`) is
a second pass of the same kind on the keypoint boxes :func:`~.stages.recrop_boxes` picks, the
rule the CPU pipeline uses. Everything runs on the keypoint stream; it waits for each frame's
upload event first.

Stage times: ``crop`` (tables up + the launch), ``pose_infer`` (per chunk: engine run(s) and the
flip average), ``pose_post`` (decode kernel, the download, the host mapping) are CUDA event
times shared among the frames by their persons, plus each frame's own mapping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import geometry
from ..cuda.twins import flip_gathers, warp_frame_table, warp_items
from ..decode import KEYPOINT_DECODERS
from ..errors import ConfigError
from ..skeleton import flip_permutation
from .gpu_memory import ALIGN, FrameSlot, Staging, event
from .stages import PoseEstimator, apply_recrop, no_keypoints, recrop_boxes, share_ms

if TYPE_CHECKING:
    from ..cuda.driver import Event, Stream
    from ..cuda.launchers import Kernels
    from ..engines.tensorrt import TrtEngine

Found = List[Tuple[np.ndarray, np.ndarray]]


@dataclass
class PoseJob:
    """One keypoint pass over the persons of ``slots``: per frame its boxes (N_i, 4) and crop
    maps (N_i, 2, 3); ``owner``: the frame of every person (N,); ``chunks``: the size of every
    keypoint engine run, in order (a --flip run counts once)."""

    slots: List[FrameSlot]
    boxes: List[np.ndarray]
    affines: List[np.ndarray]
    owner: np.ndarray
    chunks: List[int]

    @property
    def persons(self) -> int:
        return len(self.owner)


class GpuKeypoints:
    """``pose`` (crop rule, refinement, flip, recrop) over its TensorRT ``engine`` on ``stream``.

    max_persons: the most persons one frame may bring (a one-line error beyond); the crop and
    result buffers start at one frame of that and grow with a batch of frames. One pass in flight
    at a time (:meth:`submit`, then :meth:`finish` or :meth:`complete`). Owns its buffers: close().
    """

    def __init__(self, pose: PoseEstimator, engine: TrtEngine, kernels: Kernels, stream: Stream,
                 max_persons: int) -> None:
        from ..cuda.driver import DeviceBuffer

        self.pose, self.engine, self.kernels, self.stream = pose, engine, kernels, stream
        self.max_persons = int(max_persons)
        spec = pose.spec
        self.crop_dtype = np.dtype(engine.inputs[spec.input_name].dtype)
        w, h = spec.preprocess.input_size
        self.crop_bytes = 3 * h * w * self.crop_dtype.itemsize
        self.batch = pose.max_batch
        self.stride = -(-self.batch * self.crop_bytes // ALIGN) * ALIGN
        first = next(iter(spec.outputs.values()))
        self.keypoints = int(engine.outputs[first].shape[1])
        self._crops: Any = None
        self._results: Tuple[Any, Any] = (None, None)
        self._grow(self.max_persons)
        self._staging = Staging()
        self._events = [event() for _ in range(4)]  # start, kernel start, crops done, downloaded
        self._chunk_events: List[Tuple[Event, Event]] = []  # (inferred, decoded) per chunk
        self._scratch: Dict[str, Any] = {}  # --flip: the mirrored crops' outputs, per graph name
        if pose.flip:
            self._scratch = {name: DeviceBuffer(engine.capacity(name))
                             for name in spec.outputs.values()}
        self._gathers: Dict[str, Tuple[Tuple[int, ...], int]] = {}  # role -> (item shape, ptr)
        self._gather_staging = Staging()
        #: The crop kernel alone (CUDA events), last pass (benchmarks).
        self.last_crop_kernel_ms = 0.0

    # -- buffers ----------------------------------------------------------------------------
    def _regions(self, persons: int) -> int:
        return -(-persons // self.batch) * (2 if self.pose.flip else 1)

    def _grow(self, persons: int) -> None:
        """Crop and result buffers for ``persons`` (after the stream is done with the old)."""
        from ..cuda.driver import DeviceBuffer, PinnedBuffer

        crops = self._regions(persons) * self.stride
        if self._crops is None or self._crops.nbytes < crops:
            if self._crops is not None:
                self.stream.synchronize()
                self._crops.close()
            self._crops = DeviceBuffer(max(crops, ALIGN))
        results = max(persons, 1) * self.keypoints * 12
        host, dev = self._results
        if dev is None or dev.nbytes < results:
            if dev is not None:
                self.stream.synchronize()
                host.close()
                dev.close()
            self._results = (PinnedBuffer(results), DeviceBuffer(results))

    def _offsets(self, persons: int) -> np.ndarray:
        """Element offset of every crop in the crop buffer (the mirrored ones after, --flip)."""
        chunk, j = np.divmod(np.arange(persons), self.batch)
        start = chunk * self.stride + j * self.crop_bytes
        if self.pose.flip:
            start = np.concatenate([start, start + self._regions(persons) // 2 * self.stride])
        return start // self.crop_dtype.itemsize

    # -- one pass ---------------------------------------------------------------------------
    def submit(self, slots: Sequence[FrameSlot], boxes: Sequence[np.ndarray]) -> PoseJob:
        """Enqueue crops, keypoint runs and decoding for ``boxes`` (per frame (N_i, 4), frame
        pixels) on the uploaded frames of ``slots``; nothing is enqueued without persons."""
        counts = [len(b) for b in boxes]
        for n in counts:
            if n > self.max_persons:
                raise ConfigError(f"{n} persons exceed the GPU pipeline's capacity "
                                  f"{self.max_persons} (--max-persons)")
        affines = [self.pose.crop_affines(np.asarray(b, np.float32).reshape(-1, 4))
                   for b in boxes]
        owner = np.repeat(np.arange(len(boxes)), counts)
        n = len(owner)
        chunks = [min(self.batch, n - start) for start in range(0, n, self.batch)]
        job = PoseJob(list(slots), [np.asarray(b) for b in boxes], affines, owner, chunks)
        if not n:
            return job
        self._grow(n)
        s, ev, p = self.stream, self._events, self.pose.spec.preprocess
        for slot in slots:
            s.wait(slot.events[1])  # the frame is on the device
        ev[0].record(s)
        maps, frames = np.concatenate(affines), owner
        if self.pose.flip:
            maps = np.concatenate([maps, geometry.mirror_affines(maps, p.input_size[0])])
            frames = np.concatenate([owner, owner])
        offsets = self._offsets(n)
        frames_ptr, items_ptr = self._staging.put(s, [
            warp_frame_table([slot.table_entry for slot in slots]),
            warp_items(maps, frames, offsets)])
        ev[1].record(s)
        extent = int(offsets.max()) + self.crop_bytes // self.crop_dtype.itemsize
        self.kernels.warp_frames(s, frames_ptr, items_ptr, len(offsets), self._crops.ptr,
                                 p.input_size, p.mean, p.std, p.channel_order, p.pad_value,
                                 self.crop_dtype, out_extent=extent,
                                 out_capacity=self._crops.nbytes)
        ev[2].record(s)
        start = 0
        for index, count in enumerate(chunks):
            self._run_chunk(index, len(chunks), start, count)
            start += count
        return job

    def _run_chunk(self, index: int, chunks: int, start: int, count: int) -> None:
        """Keypoint engine (twice with --flip, then the flip average) and decode kernel for
        crops [start, start + count) on the keypoint stream."""
        s, spec, engine = self.stream, self.pose.spec, self.engine
        while len(self._chunk_events) <= index:
            self._chunk_events.append((event(), event()))
        w, h = spec.preprocess.input_size
        shape = {spec.input_name: (count, 3, h, w)}
        crops = self._crops.ptr + index * self.stride
        shapes = engine.infer_device(shape, s, {spec.input_name: crops})
        if self.pose.flip:
            mirrored = {spec.input_name: crops + chunks * self.stride,
                        **{name: buf.ptr for name, buf in self._scratch.items()}}
            engine.infer_device(shape, s, mirrored)
            gathers = self._gather_tables({role: tuple(shapes[name][1:])
                                           for role, name in spec.outputs.items()})
            for role, name in spec.outputs.items():
                item, ptr = int(np.prod(shapes[name][1:])), gathers[role]
                self.kernels.flip_average(s, engine.device_ptr(name), self._scratch[name].ptr,
                                          ptr, item, count, min(engine.capacity(name),
                                                                self._scratch[name].nbytes))
        self._chunk_events[index][0].record(s)
        k = self.keypoints
        out = self._results[1].ptr + start * k * 12
        outputs = {role: (engine.device_ptr(name), tuple(shapes[name]))
                   for role, name in spec.outputs.items()}
        KEYPOINT_DECODERS[spec.decoder].gpu_decode(
            self.kernels, s, outputs, count * k, spec.preprocess.input_size, self.pose.refine,
            spec.decoder_options, out, self._results[1].nbytes - start * k * 12)
        self._chunk_events[index][1].record(s)

    def _gather_tables(self, shapes: Dict[str, Tuple[int, ...]]) -> Dict[str, int]:
        """Device addresses of the flip gather tables for one crop's output ``shapes`` (per
        role), built from the decoder's flip-back once per shape."""
        if any(self._gathers.get(role, ((), 0))[0] != shape for role, shape in shapes.items()):
            tables = flip_gathers(KEYPOINT_DECODERS[self.pose.spec.decoder].flip_back, shapes,
                                  flip_permutation())
            roles = list(shapes)
            ptrs = self._gather_staging.put(self.stream, [tables[r] for r in roles])
            self._gathers = {r: (shapes[r], ptr) for r, ptr in zip(roles, ptrs)}
        return {role: ptr for role, (_, ptr) in self._gathers.items()}

    def finish(self, job: PoseJob) -> Found:
        """Wait for ``job``; per frame keypoints (N_i, K, 2) float32 (pixels, that frame) and
        scores (N_i, K) float32. Adds the pass's ``crop`` / ``pose_infer`` / ``pose_post``
        shares to each slot's times."""
        n, k = job.persons, self.keypoints
        if not n:
            return [no_keypoints() for _ in job.slots]
        s, ev, ce = self.stream, self._events, self._chunk_events
        host = self._results[0].array(np.float32, (n, k, 3))
        self._results[1].download(host, s)
        ev[3].record(s)
        ev[3].synchronize()
        times = [slot.times for slot in job.slots]
        frames = len(job.slots)
        persons = np.bincount(job.owner, minlength=frames)
        share_ms(times, "crop", ev[2].elapsed_ms(ev[0]), persons)
        self.last_crop_kernel_ms = ev[2].elapsed_ms(ev[1])
        before, start = ev[2], 0
        for index, count in enumerate(job.chunks):
            weights = np.bincount(job.owner[start:start + count], minlength=frames)
            share_ms(times, "pose_infer", ce[index][0].elapsed_ms(before), weights)
            share_ms(times, "pose_post", ce[index][1].elapsed_ms(ce[index][0]), weights)
            before, start = ce[index][1], start + count
        share_ms(times, "pose_post", ev[3].elapsed_ms(before), persons)  # the N x K x 3 copy
        found: Found = []
        start = 0
        for slot, affines in zip(job.slots, job.affines):
            rows = host[start:start + len(affines)]
            start += len(affines)
            if not len(affines):
                found.append((rows[..., :2].copy(), rows[..., 2].copy()))
                continue
            t0 = time.perf_counter()
            found.append((geometry.apply_affines(rows[..., :2], geometry.invert_affines(affines)),
                          rows[..., 2].copy()))
            slot.times.add("pose_post", (time.perf_counter() - t0) * 1e3)
        return found

    def complete(self, job: PoseJob, calls: Optional[List[int]] = None) -> Found:
        """:meth:`finish`, then with ``--recrop`` the second pass (submitted and finished here);
        ``calls`` (if given) gets every keypoint run's batch size."""
        found = self.finish(job)
        if calls is not None:
            calls += job.chunks
        if self.pose.recrop and job.persons:
            redo, kboxes = recrop_boxes(found, job.boxes)
            if any(len(r) for r in redo):
                again = self.submit(job.slots, kboxes)
                apply_recrop(found, redo, self.finish(again))
                if calls is not None:
                    calls += again.chunks
        return found

    def resources(self) -> List[Any]:
        """Everything to close (after the stream is synchronized)."""
        return [self._crops, *self._results, self._staging, self._gather_staging,
                *self._events, *[e for pair in self._chunk_events for e in pair],
                *self._scratch.values()]
