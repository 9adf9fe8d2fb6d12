"""The top-down loop on the GPU: both TensorRT engines resident, one crop launch per batch.

Per call: every frame goes to the GPU once (pinned copy; on integrated GPUs the kernels read
mapped host memory, no copy), ONE multi-frame warp launch letterboxes every frame into its slice
of the detector's (B, 3, H, W) input, the detector runs once per profile-max chunk, its small
outputs come back for box decoding (+ NMS) on the host (:mod:`.gpu_detect`); then ONE warp launch
crops every person of every frame into the keypoint engine's input, the keypoint engine runs once
per profile-max chunk, the decode kernel reduces heatmaps / SimCC vectors to N x K x 3 floats,
only those come back and are split per frame (:mod:`.gpu_keypoints`, with ``--flip`` and
``--recrop``). ``pipeline(frame)`` is that for one frame; ``batch(frames)`` for several cameras;
:meth:`GpuPipeline.stream` overlaps frame t+1's upload and detection (detector stream) with frame
t's keypoints (keypoint stream), events ordering the two. The same four steps are public
(:meth:`~GpuPipeline.submit_frame`, :meth:`~GpuPipeline.detections`,
:meth:`~GpuPipeline.submit_keypoints`, :meth:`~GpuPipeline.finish_keypoints`) for
:class:`~.tracked.TrackedPipeline`, whose frames between detections take their boxes from the
previous frame's keypoints. Stage times are CUDA event times (``upload``, ``det_pre``,
``det_infer``, ``crop``, ``pose_infer``) plus host time for ``det_post`` (D2H + decode) and
``pose_post`` (decode kernel + D2H + mapping to the frame), shared by persons within a batch.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Sequence, cast

import numpy as np

from ..errors import ConfigError, EngineError, TrtPoseError
from ..io.inputs import FramesLike, ImageLike, as_frame, as_frames
from ..types import BatchInfo, Detections, Frame, FrameResult, Poses, StageTimes
from .base import given_detections
from .gpu_detect import GpuDetector
from .gpu_keypoints import GpuKeypoints, PoseJob
from .gpu_memory import FrameSlot, event
from .plan import Plan
from .stages import Detector, PoseEstimator

if TYPE_CHECKING:
    from ..cuda.driver import Device
    from ..cuda.launchers import Kernels
    from ..engines.tensorrt import TrtEngine

log = logging.getLogger(__name__)


class GpuPipeline:
    """Detector + keypoint TensorRT engines on one GPU; the same protocol as
    :class:`~.cpu.CpuPipeline` (``pipeline(frame, detections=None)``, ``stream(frames)``,
    ``batch(frames, detections=None)``).

    detector / pose: :class:`Detector` / :class:`PoseEstimator` over
    :class:`~trt_pose_td.engines.tensorrt.TrtEngine` s (their host paths stay usable);
    max_persons: crop capacity per frame; zero_copy: mapped host frames (default: on integrated
    GPUs). Owns the engines, device, streams and buffers: call :meth:`close`.
    """

    backend = "tensorrt"

    def __init__(self, detector: Detector, pose: PoseEstimator, device: Device, kernels: Kernels,
                 max_persons: int = 100, zero_copy: Optional[bool] = None) -> None:
        from ..cuda.driver import Stream

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
        self._closed = True  # until everything below exists
        self.det_stream, self.pose_stream = Stream(), Stream()
        self._slots: List[FrameSlot] = []
        self._detect = GpuDetector(detector, self._det, kernels, self.det_stream)
        self._keypoints = GpuKeypoints(pose, self._pose, kernels, self.pose_stream,
                                       self.max_persons)
        self.crop_dtype = self._keypoints.crop_dtype
        self._closed = False
        log.info("GPU pipeline on %s: %s, max %d persons, detector batch %d, keypoint batch %d%s",
                 info.name, "zero-copy frames" if self.zero_copy else "pinned frame upload",
                 self.max_persons, self._detect.max_batch, self.pose.max_batch,
                 "".join(f", {n}" for n, on in (("flip", pose.flip), ("recrop", pose.recrop))
                         if on))

    @property
    def last_crop_kernel_ms(self) -> float:
        """The crop kernel alone (CUDA events), last keypoint pass (benchmarks)."""
        return self._keypoints.last_crop_kernel_ms

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

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_plan(cls, plan: Plan, zero_copy: Optional[bool] = None) -> GpuPipeline:
        """Load the plan's two engines (engine_dir, precision) on GPU 0."""
        from ..cuda.driver import Device
        from ..cuda.launchers import Kernels
        from ..engines.tensorrt import TrtEngine
        from ..engines.trt_api import import_tensorrt

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
            pose = PoseEstimator(engines[1], plan.pose, engines[1].max_batch, cfg.refine,
                                 flip=cfg.flip, recrop=cfg.recrop)
            return cls(Detector(engines[0], plan.detector, plan.params), pose, device, kernels,
                       cfg.max_persons, zero_copy)
        except BaseException:
            for thing in reversed(opened):
                thing.close()
            raise


    # -- frame slots ------------------------------------------------------------------------
    def _live(self) -> None:
        if self._closed:
            raise EngineError("GPU pipeline is closed")
        self.device.make_current()

    def _upload(self, frame: Frame) -> FrameSlot:
        """A free slot (the pool grows) holding ``frame``: copied into its host staging (grown
        as needed) and, unless zero-copy, uploaded on the detector stream between its events."""
        from ..cuda.driver import DeviceBuffer, MappedBuffer, PinnedBuffer

        slot = next((s for s in self._slots if not s.busy), None)
        if slot is None:
            slot = FrameSlot(events=[event(), event()])
            self._slots.append(slot)
        slot.busy, slot.frame, slot.found = True, frame, None
        slot.times, slot.t0 = StageTimes(), time.perf_counter()
        slot.events[1].synchronize()  # its last upload has been sent (no-op when never used)
        nbytes = frame.image.nbytes
        if slot.nbytes < nbytes:
            for buf in (slot.host, slot.device):
                if buf is not None:
                    buf.close()
            slot.host = MappedBuffer(nbytes) if self.zero_copy else PinnedBuffer(nbytes)
            slot.device = None if self.zero_copy else DeviceBuffer(nbytes)
            slot.nbytes = nbytes
        slot.events[0].record(self.det_stream)
        view = slot.host.array(np.uint8, frame.image.shape)
        np.copyto(view, frame.image)
        if slot.device is not None:
            slot.device.upload(view, self.det_stream)
        slot.events[1].record(self.det_stream)
        return slot

    def _result(self, slot: FrameSlot, poses: Poses, info: Optional[BatchInfo] = None
                ) -> FrameResult:
        """The slot's frame, poses and times (``total``: since its upload, or the batch's wall
        time); frees the slot."""
        ev = slot.events
        ev[1].synchronize()  # a frame without persons: nothing else waited for its upload
        slot.times["upload"] = ev[1].elapsed_ms(ev[0])
        slot.times["total"] = info.ms if info is not None else \
            (time.perf_counter() - slot.t0) * 1e3
        slot.busy = False
        return FrameResult(slot.current, poses, slot.times, info)

    def _reset(self) -> None:
        """After an error or an abandoned stream: wait for all queued work, free every slot."""
        for stream in (self.det_stream, self.pose_stream):
            stream.synchronize()
        self._detect.cancel()
        for slot in self._slots:
            slot.busy, slot.detection = False, None

    # -- the four steps of one frame (stream, TrackedPipeline) --------------------------------
    def submit_frame(self, image: ImageLike, detect: bool = True) -> FrameSlot:
        """Upload a frame and, with ``detect``, enqueue its detection behind it (detector
        stream); returns the frame's slot for the next steps. Only one detection may be in
        flight: call :meth:`detections` on the previous one first."""
        self._live()
        slot = self._upload(as_frame(image))
        if detect:
            self._detect.submit([slot])
        return slot

    def detections(self, slot: FrameSlot) -> Detections:
        """The detector's persons on the slot's frame (boxes in frame pixels), waiting for its
        detection, or enqueueing it first when :meth:`submit_frame` did not."""
        if slot.found is None:
            self._detect.finish(slot.detection or self._detect.submit([slot]))
        if slot.found is None:
            raise EngineError("the detector returned nothing for this frame")
        return slot.found

    def submit_keypoints(self, slot: FrameSlot, detections: Detections) -> PoseJob:
        """Enqueue the crops, keypoint runs and decoding of ``detections`` (frame pixels) on the
        slot's frame (keypoint stream, after its upload)."""
        try:
            job = self._keypoints.submit([slot], [detections.boxes])
        except BaseException:
            self._reset()
            raise
        slot.found = detections
        return job

    def finish_keypoints(self, job: PoseJob) -> FrameResult:
        """Wait for the keypoints of :meth:`submit_keypoints` (and run ``--recrop``'s second
        pass); the frame's :class:`FrameResult`, its slot freed."""
        ((kpts, scores),) = self._keypoints.complete(job)
        slot, dets = job.slots[0], job.slots[0].found
        poses = Poses(kpts, scores, dets.boxes, dets.scores) if dets is not None and len(dets) \
            else Poses.empty()
        return self._result(slot, poses)

    # -- the protocol -----------------------------------------------------------------------
    def __call__(self, image: ImageLike, detections: Optional[Detections] = None
                 ) -> FrameResult:
        """One frame, start to end; ``detections`` (frame pixels) replace the detector, which
        is then not enqueued at all (the frame is only uploaded for the crop kernel)."""
        result = self.batch([image], None if detections is None else [detections])[0]
        result.batch = None
        return result

    def batch(self, images: Sequence[ImageLike],
              detections: Optional[Sequence[Optional[Detections]]] = None) -> List[FrameResult]:
        """Several frames (cameras) at once, equal to one call per frame: every frame uploaded
        into its own slot, the frames needing the detector letterboxed by ONE launch into one
        detector run per profile-max chunk (a static batch-1 engine: one per frame), then every
        person of every frame cropped by ONE launch into one keypoint run per profile-max chunk,
        decoded on the GPU and split back, in the order given.

        ``detections[i]`` (boxes in frame i's pixels, or None) replaces the detector for frame
        i. Each result's ``times`` holds that frame's own upload and decode plus its share of
        the shared runs (by persons; detector runs equally); ``"total"`` is the call's wall
        time; every result's ``batch`` is one :class:`~trt_pose_td.types.BatchInfo`."""
        self._live()
        frames = [as_frame(image) for image in images]
        given = given_detections(detections, len(frames))
        if not frames:
            return []
        t0 = time.perf_counter()
        info = BatchInfo([0] * len(frames))
        try:
            slots = [self._upload(frame) for frame in frames]
            info.detector_calls = self._detect.run([s for s, d in zip(slots, given) if d is None])
            dets = [d if d is not None else cast(Detections, s.found)
                    for s, d in zip(slots, given)]
            job = self._keypoints.submit(slots, [d.boxes for d in dets])
            found = self._keypoints.complete(job, info.keypoint_batches)
        except BaseException:
            self._reset()
            raise
        poses = [Poses(k, s, d.boxes, d.scores) if len(d) else Poses.empty()
                 for (k, s), d in zip(found, dets)]
        info.persons = [len(p) for p in poses]
        info.ms = (time.perf_counter() - t0) * 1e3
        return [self._result(slot, p, info) for slot, p in zip(slots, poses)]

    def stream(self, frames: FramesLike) -> Iterator[FrameResult]:
        """Results in frame order, frame t+1's upload + detection (detector stream) overlapping
        frame t's keypoints (keypoint stream). When ``frames`` ends or raises, the frame in
        flight is finished and yielded first (then the error propagates)."""
        self._live()
        pending: Optional[PoseJob] = None
        source = iter(as_frames(frames))
        error: Optional[Exception] = None
        try:
            while True:
                try:
                    frame = next(source)
                except StopIteration:
                    break
                except Exception as exc:  # drain what is in flight, then re-raise
                    error = exc
                    break
                slot = self.submit_frame(frame)
                if pending is not None:
                    done, pending = pending, None
                    yield self.finish_keypoints(done)
                pending = self.submit_keypoints(slot, self.detections(slot))
            if pending is not None:
                done, pending = pending, None
                yield self.finish_keypoints(done)
        finally:
            self.cancel()
        if error is not None:
            raise error

    def cancel(self) -> None:
        """Drop the frames in flight, if any (a consumer that stopped a stream early): their
        queued work completes first, their slots are freed."""
        if not self._closed and any(slot.busy for slot in self._slots):
            self._reset()

    def __enter__(self) -> GpuPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release everything, the device's context made current first (closing from another
        thread than the one that ran the pipeline must not free in no context)."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        errors: List[BaseException] = []
        try:
            self.device.make_current()
        except TrtPoseError as exc:
            errors.append(exc)
        for stream in (self.det_stream, self.pose_stream):
            try:
                stream.synchronize()  # nothing may still use the buffers freed below
            except TrtPoseError as exc:
                errors.append(exc)
        things: List[Any] = [self.det_stream, self.pose_stream, *self._detect.resources(),
                             *self._keypoints.resources()]
        for slot in self._slots:
            things += slot.buffers()
        things += [self._det, self._pose, self.kernels, self.device]
        for thing in things:
            try:
                thing.close()
            except TrtPoseError as exc:  # keep releasing the rest
                errors.append(exc)
        if errors:
            log.warning("errors while closing the GPU pipeline: %s", errors[0])
