"""The top-down loop on the GPU: both TensorRT engines resident, one crop launch per frame.

Per frame: the frame goes to the GPU once (pinned copy; on integrated GPUs the kernels read mapped
host memory, no copy), the warp kernel letterboxes it into the detector's input, the detector runs,
its small outputs come back for box decoding (+ NMS) on the host, the crop affines go up, ONE warp
launch crops every person into the keypoint engine's input, the keypoint engine runs once per
profile-max chunk, the decode kernel reduces heatmaps / SimCC vectors to N x K x 3 floats, and only
those come back. :meth:`GpuPipeline.stream` overlaps frame t+1's upload and detection (detector
stream) with frame t's keypoints (keypoint stream), with two frame slots. Stage times are CUDA
event times (``upload``, ``det_pre``, ``det_infer``, ``crop``, ``pose_infer``) plus host time for
``det_post`` (D2H + decode) and ``pose_post`` (decode kernel + D2H + mapping to the frame).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Sequence, Tuple, cast

import numpy as np

from . import geometry
from .decode import KEYPOINT_DECODERS
from .errors import ConfigError, EngineError, TrtPoseError
from .gpu_slots import FrameSlot, PoseJob, per_frame_batch
from .io.inputs import ImageLike, as_frame, as_frames
from .plan import Plan
from .stages import Detector, PoseEstimator
from .types import Detections, Frame, FrameResult, Poses, StageTimes

if TYPE_CHECKING:
    from .engines.tensorrt import TrtEngine

log = logging.getLogger(__name__)


class GpuPipeline:
    """Detector + keypoint TensorRT engines on one GPU; the same protocol as
    :class:`~.pipeline.CpuPipeline` (``pipeline(frame, detections=None)``, ``stream(frames)``).

    detector / pose: :class:`Detector` / :class:`PoseEstimator` over
    :class:`~trt_pose_td.engines.tensorrt.TrtEngine` s (their host paths stay usable);
    max_persons: crop capacity per frame; zero_copy: mapped host frames (default: on integrated
    GPUs). Owns the engines, device, streams and buffers: call :meth:`close`.
    """

    backend = "tensorrt"

    def __init__(self, detector: Detector, pose: PoseEstimator, device: Any, kernels: Any,
                 max_persons: int = 100, zero_copy: Optional[bool] = None) -> None:
        from .cuda.driver import DeviceBuffer, PinnedBuffer, Stream

        self.detector, self.pose = detector, pose
        self.device, self.kernels = device, kernels
        info = device.info
        self.zero_copy = bool(info.integrated and info.can_map_host_memory) \
            if zero_copy is None else bool(zero_copy)
        self.max_persons = int(max_persons)
        for engine in (detector.engine, pose.engine):
            if not hasattr(engine, "infer_device"):
                raise ConfigError(f"{engine.source}: the GPU pipeline needs TensorRT engines")
        self._det = cast("TrtEngine", detector.engine)
        self._pose = cast("TrtEngine", pose.engine)
        self._check_engines()
        self.det_stream, self.pose_stream = Stream(), Stream()
        pspec = pose.spec
        self.crop_dtype = self._pose.inputs[pspec.input_name].dtype
        w, h = pspec.preprocess.input_size
        self._crop_bytes = 3 * h * w * self.crop_dtype.itemsize
        batch = self.pose.max_batch
        self._chunk_stride = -(-batch * self._crop_bytes // 256) * 256
        self._crops = DeviceBuffer(-(-self.max_persons // batch) * self._chunk_stride)
        self._params = (PinnedBuffer(self.max_persons * 24), DeviceBuffer(self.max_persons * 24))
        k = self._keypoints
        self._results = (PinnedBuffer(self.max_persons * k * 12),
                         DeviceBuffer(self.max_persons * k * 12))
        self._slots = [self._new_slot(), self._new_slot()]
        # start, crop end, crop-kernel start, keypoints downloaded
        self._pose_events = [self._event() for _ in range(4)]
        self._chunk_events: List[Tuple[Any, Any]] = []
        self.last_crop_kernel_ms = 0.0  # the crop kernel alone, last frame (benchmarks)
        self._closed = False
        log.info("GPU pipeline on %s: %s, max %d persons, keypoint batch %d", info.name,
                 "zero-copy frames" if self.zero_copy else "pinned frame upload",
                 self.max_persons, self.pose.max_batch)

    @property
    def _keypoints(self) -> int:
        spec = self.pose.spec
        first = next(iter(spec.outputs.values()))
        return int(self._pose.outputs[first].shape[1])

    def _check_engines(self) -> None:
        """Refuse engines this pipeline cannot drive: a profile must take each model's configured
        input size (one line naming the rebuild command), heatmaps float32, inputs float."""
        for engine, s in ((self._det, self.detector.spec), (self._pose, self.pose.spec)):
            engine.check_input_size(s)
        spec = self.pose.spec
        for role, name in spec.outputs.items():
            if self._pose.outputs[name].dtype != np.float32:
                raise ConfigError(f"{self._pose.source}: output {name} ({role}) is "
                                  f"{self._pose.outputs[name].dtype}; the decode kernels need "
                                  "float32 outputs (rebuild with float32 I/O)")
        for engine, s in ((self._det, self.detector.spec), (self._pose, spec)):
            dtype = engine.inputs[s.input_name].dtype
            if dtype not in (np.float32, np.float16):
                raise ConfigError(f"{engine.source}: input {s.input_name} is {dtype}; the warp "
                                  "kernel writes float32 or float16")

    def _event(self) -> Any:
        from .cuda.driver import Event

        return Event()

    def _new_slot(self) -> FrameSlot:
        from .cuda.driver import DeviceBuffer, PinnedBuffer

        return FrameSlot(det_params=(PinnedBuffer(24), DeviceBuffer(24)),
                     events=[self._event() for _ in range(5)])

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_plan(cls, plan: Plan, zero_copy: Optional[bool] = None) -> GpuPipeline:
        """Load the plan's two engines (engine_dir, precision) on GPU 0."""
        from .cuda.driver import Device
        from .cuda.launchers import Kernels
        from .engines.tensorrt import TrtEngine
        from .trt_api import import_tensorrt

        cfg = plan.cfg
        import_tensorrt()
        device = Device(0)  # no TensorRT / no GPU: say so before asking for engines
        paths = [plan.detector_file, plan.pose_file]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            device.close()
            raise EngineError(f"no TensorRT engine {', '.join(missing)}: build it on this "
                              "device with `trt-pose-td build` (or pass --engine-dir)")
        int8 = plan.precision == "int8"
        opened: List[Any] = [device]
        try:
            kernels = Kernels(device)
            opened.append(kernels)
            engines = []
            for path, spec in zip(paths, (plan.detector, plan.pose)):
                engines.append(TrtEngine(path, device, None if int8 else spec.sha256, spec))
                opened.append(engines[-1])
            pose = PoseEstimator(engines[1], plan.pose, engines[1].max_batch, cfg.refine)
            return cls(Detector(engines[0], plan.detector, plan.params), pose, device, kernels,
                       cfg.max_persons, zero_copy)
        except BaseException:
            for thing in reversed(opened):
                thing.close()
            raise

    # ----------------------------------------------------------------------------------------
    def _stage_frame(self, slot: FrameSlot, frame: Frame) -> None:
        """Copy the frame into the slot's host staging (growing it) and, unless zero-copy,
        enqueue the upload on the detector stream."""
        from .cuda.driver import DeviceBuffer, MappedBuffer, PinnedBuffer

        nbytes = frame.image.nbytes
        if slot.nbytes < nbytes:
            for buf in (slot.host, slot.device):
                if buf is not None:
                    buf.close()
            slot.host = MappedBuffer(nbytes) if self.zero_copy else PinnedBuffer(nbytes)
            slot.device = None if self.zero_copy else DeviceBuffer(nbytes)
            slot.nbytes = nbytes
        view = slot.host.array(np.uint8, frame.image.shape)
        np.copyto(view, frame.image)
        if slot.device is not None:
            slot.device.upload(view, self.det_stream)

    def _submit_detect(self, slot: FrameSlot, frame: Frame) -> None:
        slot.frame, slot.times, slot.t0 = frame, StageTimes(), time.perf_counter()
        ev, s = slot.events, self.det_stream
        spec = self.detector.spec
        ev[0].record(s)
        self._stage_frame(slot, frame)
        ev[1].record(s)
        slot.affine = self.detector.input_affine(frame)
        from .cuda.twins import warp_params

        host, dev = slot.det_params
        staged = host.array(np.float32, (1, 6))
        staged[...] = warp_params(slot.affine[None])
        dev.upload(staged, s)
        p = spec.preprocess
        self.kernels.warp(s, slot.frame_ptr, (frame.width, frame.height), frame.width * 3,
                          dev.ptr, 1, self._det.device_ptr(spec.input_name), p.input_size,
                          p.mean, p.std, p.channel_order, p.pad_value,
                          self._det.inputs[spec.input_name].dtype,
                          self._det.capacity(spec.input_name))
        ev[2].record(s)
        w, h = p.input_size
        shapes = self._det.infer_device({spec.input_name: (1, 3, h, w)}, s)
        ev[3].record(s)
        slot.outputs = self._det.fetch_outputs(s, shapes)
        ev[4].record(s)

    def _submit_upload(self, slot: FrameSlot, frame: Frame) -> None:
        """Only the frame upload (given boxes: the detector is not enqueued)."""
        slot.frame, slot.times, slot.t0 = frame, StageTimes(), time.perf_counter()
        ev = slot.events
        ev[0].record(self.det_stream)
        self._stage_frame(slot, frame)
        ev[1].record(self.det_stream)

    def _finish_detect(self, slot: FrameSlot) -> Detections:
        ev, t = slot.events, slot.times
        ev[4].synchronize()
        t0 = time.perf_counter()
        t["upload"] = ev[1].elapsed_ms(ev[0])
        t["det_pre"] = ev[2].elapsed_ms(ev[1])
        t["det_infer"] = ev[3].elapsed_ms(ev[2])
        dets = self.detector.postprocess(slot.outputs, slot.affine, slot.current)
        t["det_post"] = ev[4].elapsed_ms(ev[3]) + (time.perf_counter() - t0) * 1e3
        return dets

    def _submit_pose(self, slot: FrameSlot, detections: Detections) -> PoseJob:
        from .cuda.twins import warp_params

        n = len(detections)
        if n > self.max_persons:
            raise ConfigError(f"{n} persons exceed the GPU pipeline's capacity "
                              f"{self.max_persons} (--max-persons)")
        s, spec = self.pose_stream, self.pose.spec
        affines = self.pose.crop_affines(detections.boxes)
        s.wait(slot.events[1])                   # the frame is on the device
        self._pose_events[0].record(s)
        staged = self._params[0].array(np.float32, (n, 6))
        staged[...] = warp_params(affines)
        self._params[1].upload(staged, s)
        self._pose_events[2].record(s)
        p, frame = spec.preprocess, slot.current
        batch = self.pose.max_batch
        # One launch for every person; one per chunk only if chunk starts would break the
        # 256-byte alignment TensorRT wants for tensor addresses.
        launches = [(0, n)] if self._chunk_stride == batch * self._crop_bytes else \
            [(i, min(n, i + batch)) for i in range(0, n, batch)]
        for start, stop in launches:
            out = self._crops.ptr + (start // batch) * self._chunk_stride
            self.kernels.warp(s, slot.frame_ptr, (frame.width, frame.height), frame.width * 3,
                              self._params[1].ptr + start * 24, stop - start, out, p.input_size,
                              p.mean, p.std, p.channel_order, p.pad_value, self.crop_dtype,
                              self._crops.ptr + self._crops.nbytes - out)
        self._pose_events[1].record(s)
        chunks = 0
        for start in range(0, n, self.pose.max_batch):
            self._run_chunk(chunks, start, min(n, start + self.pose.max_batch))
            chunks += 1
        return PoseJob(slot, detections, affines, chunks)

    def _run_chunk(self, index: int, start: int, stop: int) -> None:
        """Keypoint engine + decode kernel for crops [start, stop) on the keypoint stream."""
        s, spec = self.pose_stream, self.pose.spec
        while len(self._chunk_events) <= index:
            self._chunk_events.append((self._event(), self._event()))
        w, h = spec.preprocess.input_size
        count = stop - start
        shapes = self._pose.infer_device(
            {spec.input_name: (count, 3, h, w)}, s,
            {spec.input_name: self._crops.ptr + index * self._chunk_stride})
        self._chunk_events[index][0].record(s)
        k = self._keypoints
        out = self._results[1].ptr + start * k * 12
        outputs = {role: (self._pose.device_ptr(name), tuple(shapes[name]))
                   for role, name in spec.outputs.items()}
        KEYPOINT_DECODERS[spec.decoder].gpu_decode(
            self.kernels, s, outputs, count * k, spec.preprocess.input_size, self.pose.refine,
            spec.decoder_options, out, self._results[1].nbytes - start * k * 12)
        self._chunk_events[index][1].record(s)

    def _finish_pose(self, job: PoseJob) -> Poses:
        n, k, t = len(job.detections), self._keypoints, job.slot.times
        host = self._results[0].array(np.float32, (n, k, 3))
        pe, ce = self._pose_events, self._chunk_events
        self._results[1].download(host, self.pose_stream)
        pe[3].record(self.pose_stream)
        pe[3].synchronize()
        t0 = time.perf_counter()
        t["crop"] = pe[1].elapsed_ms(pe[0])
        self.last_crop_kernel_ms = pe[1].elapsed_ms(pe[2])
        starts = [pe[1]] + [ce[i][1] for i in range(job.chunks - 1)]
        t["pose_infer"] = sum(ce[i][0].elapsed_ms(starts[i]) for i in range(job.chunks))
        decode_ms = sum(ce[i][1].elapsed_ms(ce[i][0]) for i in range(job.chunks))
        decode_ms += pe[3].elapsed_ms(ce[job.chunks - 1][1])  # + the N x K x 3 download
        kpts = geometry.apply_affines(host[..., :2], geometry.invert_affines(job.affines))
        poses = Poses(kpts, host[..., 2].copy(), job.detections.boxes, job.detections.scores)
        t["pose_post"] = decode_ms + (time.perf_counter() - t0) * 1e3
        return poses

    # ----------------------------------------------------------------------------------------
    def __call__(self, image: ImageLike, detections: Optional[Detections] = None
                 ) -> FrameResult:
        """One frame, start to end; ``detections`` (frame pixels) replace the detector, which
        is then not enqueued at all (the frame is only uploaded for the crop kernel)."""
        if self._closed:
            raise EngineError("GPU pipeline is closed")
        frame = as_frame(image)
        self.device.make_current()
        slot = self._slots[0]
        if detections is None:
            self._submit_detect(slot, frame)
            dets = self._finish_detect(slot)
        else:
            self._submit_upload(slot, frame)
            dets = detections
        poses = self._finish_pose(self._submit_pose(slot, dets)) if len(dets) else Poses.empty()
        slot.times["total"] = (time.perf_counter() - slot.t0) * 1e3
        return FrameResult(frame, poses, slot.times)

    def batch(self, images: Sequence[ImageLike],
              detections: Optional[Sequence[Optional[Detections]]] = None) -> List[FrameResult]:
        """Several frames (cameras): for now one :meth:`__call__` per frame, not yet one
        detector batch and one keypoint batch across them as on the CPU (``gpu_slots``)."""
        return per_frame_batch(self, images, detections, self.pose.max_batch)

    def stream(self, frames: Any) -> Iterator[FrameResult]:
        """Results in frame order, frame t+1's upload + detection (detector stream) overlapping
        frame t's keypoints (keypoint stream), two frame slots. When ``frames`` ends or raises,
        the frame in flight is finished and yielded first (then the error propagates)."""
        if self._closed:
            raise EngineError("GPU pipeline is closed")
        self.device.make_current()
        pending: Optional[Tuple[FrameSlot, Optional[PoseJob]]] = None
        source = iter(as_frames(frames))
        error: Optional[Exception] = None
        i = 0
        while True:
            try:
                frame = next(source)
            except StopIteration:
                break
            except Exception as exc:  # drain what is in flight, then re-raise
                error = exc
                break
            slot = self._slots[i % 2]
            i += 1
            self._submit_detect(slot, frame)
            if pending is not None:
                done, pending = pending, None
                yield self._complete(*done)
            dets = self._finish_detect(slot)
            pending = (slot, self._submit_pose(slot, dets) if len(dets) else None)
        if pending is not None:
            yield self._complete(*pending)
        if error is not None:
            raise error

    def _complete(self, slot: FrameSlot, job: Optional[PoseJob]) -> FrameResult:
        poses = self._finish_pose(job) if job is not None else Poses.empty()
        slot.times["total"] = (time.perf_counter() - slot.t0) * 1e3
        return FrameResult(slot.current, poses, slot.times)

    def __enter__(self) -> GpuPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        errors: List[BaseException] = []
        for stream in (self.det_stream, self.pose_stream):
            try:
                stream.synchronize()  # nothing may still use the buffers freed below
            except TrtPoseError as exc:
                errors.append(exc)
        things: List[Any] = [self.det_stream, self.pose_stream, self._crops, *self._params,
                             *self._results, *self._pose_events]
        things += [e for pair in self._chunk_events for e in pair]
        for slot in self._slots:
            things += [b for b in (slot.host, slot.device, *slot.det_params) if b is not None]
            things += slot.events
        things += [self._det, self._pose, self.kernels, self.device]
        for thing in things:
            try:
                thing.close()
            except TrtPoseError as exc:  # keep releasing the rest
                errors.append(exc)
        if errors:
            log.warning("errors while closing the GPU pipeline: %s", errors[0])

