"""The GPU pipeline does what the CPU pipeline does: ``--flip``, ``--recrop`` and tracking with
``--det-every K > 1`` keeping the detector/keypoint overlap, on the host-memory STAND-IN for CUDA
(:mod:`tests.gpu_standin`: fake device memory, lazily run streams ordered only by events, the real
kernel host code with the numpy twins as kernel bodies, ONNX Runtime behind TensorRT's device
interface). Not a GPU: no speed, no TensorRT numerics, no kernel arithmetic is proven here.

Reference: ``CpuPipeline(preprocessor="twin")`` with the same flip / recrop on the same sessions,
keypoints within 1e-3 px and scores within 1e-5 (:mod:`tests.gpu_standin.pipelines`); measured
0.0 (bitwise equal) on the packaged photo and clip.
"""

from __future__ import annotations

from dataclasses import replace
from typing import List

import numpy as np
import pytest

from tests import gpu_standin
from tests.gpu_standin.pipelines import (
    assert_same_poses,
    cpu_reference,
    few,
    machine_fixture,
    models_fixture,
    opened,
)
from trt_pose_td.config import PipelineConfig
from trt_pose_td.errors import SourceError
from trt_pose_td.io.inputs import as_frame, as_frames
from trt_pose_td.pipelines.plan import resolve
from trt_pose_td.pipelines.tracked import TrackedPipeline
from trt_pose_td.tracking import TrackerConfig
from trt_pose_td.types import Detections

POSE_BATCH = 4


models = models_fixture(POSE_BATCH)
machine = machine_fixture()


@pytest.fixture(scope="module")
def photo(sample_photo):
    return as_frame(str(sample_photo))


@pytest.fixture(scope="module")
def clip(sample_clip):
    """The packaged photo panning 6 px a frame: 8 frames of a real MP4."""
    return list(as_frames(str(sample_clip)))


def keypoint_runs(cpu, frames):
    """The size of every keypoint run the CPU reference makes for ``frames`` in one batch."""
    info = cpu.batch(frames)[0].batch
    return info.keypoint_batches


# -- --flip and --recrop ------------------------------------------------------------------------
@pytest.mark.parametrize("flip, recrop", [(True, False), (False, True), (True, True)],
                         ids=["flip", "recrop", "flip+recrop"])
def test_a_frame_equals_the_cpu_pipeline(models, machine, photo, flip, recrop):
    """10 persons: mirrored crops in the same crop launch and a second engine run per chunk
    whose outputs the flip kernel averages in; the re-crop pass as a second crop launch."""
    params = few(models, 10)
    cpu = cpu_reference(models, POSE_BATCH, flip, recrop, params)
    want, runs = cpu(photo), keypoint_runs(cpu, [photo])
    with opened(models, machine, max_persons=10, params=params, flip=flip, recrop=recrop) as gpu:
        got = gpu(photo)
        launches, submitted = dict(gpu.kernels.launches), gpu._pose.submitted
    with opened(models, machine, max_persons=10, params=params) as gpu:
        plain = gpu(photo)
    first = -(-len(got.poses) // POSE_BATCH)
    assert launches == {"warp_frames_f32": 2 + (len(runs) > first),
                        **({"flip_average": len(runs)} if flip else {}),
                        "decode_heatmaps": len(runs)}
    assert submitted == len(runs) * (2 if flip else 1)
    assert (len(runs) > first) is recrop  # the re-crop pass ran (on the CPU too)
    assert_same_poses(want.poses, got.poses)
    moved = np.abs(got.poses.keypoints - plain.poses.keypoints).max()
    assert moved > 0.5, "flip / recrop changed nothing: the comparison proves nothing"


def test_stream_and_batch_with_flip_and_recrop_equal_the_cpu_pipeline(models, machine, clip):
    frames, params = clip[:3], few(models, 3)
    cpu = cpu_reference(models, POSE_BATCH, True, True, params)
    one_by_one, together = [cpu(f) for f in frames], cpu.batch(frames)
    with opened(models, machine, max_persons=3, params=params, flip=True, recrop=True) as gpu:
        streamed = list(gpu.stream(iter(frames)))
        batched = gpu.batch(frames)
    assert [r.frame.index for r in streamed] == [f.index for f in frames]
    for s, b, want, want_b in zip(streamed, batched, one_by_one, together):
        assert_same_poses(want.poses, s.poses)
        assert_same_poses(want_b.poses, b.poses)
    assert batched[0].batch is not None
    assert batched[0].batch.keypoint_batches == together[0].batch.keypoint_batches


@pytest.mark.parametrize("broken", [False, True], ids=["flip-back", "no-flip-back"])
def test_simcc_flip_matches_the_cpu_estimator(models, machine, monkeypatch, standins, photo,
                                              broken):
    """SimCC's flip-back (x bins reversed, y kept) through the same gather kernel, on the tiny
    generated RTMPose-contract model at a 20x36 input: one flip launch per output per chunk.
    Negative control: identity gather tables (the mirrored outputs averaged in unflipped) must
    not pass."""
    from tests.models import fixtures
    from trt_pose_td.cuda.twins import TwinPreprocessor
    from trt_pose_td.engines.onnxruntime import OrtEngine
    from trt_pose_td.models import spec_for_file
    from trt_pose_td.pipelines import gpu_keypoints
    from trt_pose_td.pipelines.stages import PoseEstimator

    if broken:
        monkeypatch.setattr(gpu_keypoints, "flip_gathers", lambda flip_back, shapes, perm: {
            role: np.arange(int(np.prod(shape)), dtype=np.int32) for role, shape in shapes.items()})
    path = fixtures.simcc_pose_model(standins["simcc"].parent / "simcc_flip_36x20.onnx", (36, 20))
    ort = OrtEngine(path)
    base = spec_for_file(str(path), "rtmpose_s")
    spec = replace(base, preprocess=replace(base.preprocess, input_size=(20, 36)))
    found = cpu_reference(models, POSE_BATCH, params=few(models, 6))(photo).poses
    dets = Detections(found.boxes, found.box_scores)
    try:
        want = PoseEstimator(ort, spec, POSE_BATCH, models[0].cfg.refine, TwinPreprocessor(),
                             flip=True)(photo, dets)
        with opened(models, machine, pose=ort, pose_spec=spec, max_persons=8, flip=True) as gpu:
            got = gpu(photo, dets).poses
            chunks = -(-len(dets) // POSE_BATCH)
            assert gpu.kernels.launches == {"warp_frames_f32": 1, "flip_average": 2 * chunks,
                                            "decode_simcc": chunks}
    finally:
        ort.close()
    if broken:
        with pytest.raises(AssertionError):
            assert_same_poses(want, got)
    else:
        assert_same_poses(want, got)


def test_the_gpu_plan_takes_flip_and_recrop(models, machine, monkeypatch, tmp_path, photo):
    """``plan.resolve`` no longer refuses them, and ``GpuPipeline.from_plan`` hands them to the
    keypoint stage (TensorRT, the kernels and the engines replaced by the stand-in's)."""
    from trt_pose_td.cuda import launchers
    from trt_pose_td.engines import tensorrt, trt_api
    from trt_pose_td.pipelines import gpu as gpu_pipeline

    cfg = PipelineConfig(backend="tensorrt", engine_dir=str(tmp_path), flip=True, recrop=True,
                         max_persons=5)
    plan = resolve(cfg, progress=False)
    assert plan.backend == "tensorrt" and plan.cfg.flip and plan.cfg.recrop
    for path in (plan.detector_file, plan.pose_file):
        path.write_bytes(b"stand-in engine")
    _, det, pose = models
    sessions = {plan.detector_file: (det, 2), plan.pose_file: (pose, POSE_BATCH)}

    def engine(path, device, sha256, spec):
        ort, batch = sessions[path]
        w, h = spec.preprocess.input_size
        return gpu_standin.StandinEngine(ort, batch, (h, w))

    monkeypatch.setattr(trt_api, "import_tensorrt", lambda: None)
    monkeypatch.setattr(launchers, "Kernels", gpu_standin.StandinKernels)
    monkeypatch.setattr(tensorrt, "TrtEngine", engine)
    with gpu_pipeline.GpuPipeline.from_plan(plan) as gpu:
        assert gpu.pose.flip and gpu.pose.recrop and gpu._detect.max_batch == 2
        result = gpu(photo)
        assert gpu.kernels.launches["flip_average"] >= 2
    want = cpu_reference(models, POSE_BATCH, True, True, plan.params)(photo)
    assert len(result.poses) == 5
    assert_same_poses(want.poses, result.poses)
    assert machine.live() == []


# -- tracking with --det-every K > 1 -----------------------------------------------------------
def _positions(trace, kind, handle, what):
    return [i for i, entry in enumerate(trace) if entry == (kind, handle, what)]


def _tracked(gpu, det_every=3):
    return TrackedPipeline(gpu, TrackerConfig(det_every=det_every))


def _assert_same_tracks(want, got):
    assert [r.frame.index for r in got] == [r.frame.index for r in want]
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a.poses.track_ids, b.poses.track_ids)
        assert_same_poses(a.poses, b.poses)


@pytest.mark.parametrize("detector_first", [False, True], ids=["lazy", "detector-eager"])
def test_tracked_stream_overlaps_and_equals_frame_by_frame(models, machine, clip,
                                                           detector_first):
    """det_every 3 over 8 frames (detections on frames 0, 3, 6). The host's order of work,
    from the stand-in's trace: frame t+1's upload is enqueued after frame t's keypoint run and
    before the host waits for frame t's keypoints; a detection frame's detector is enqueued
    then too; a frame between detections enqueues its keypoint run only after that wait (its
    boxes come from frame t's keypoints). Both stream schedules: lazy, and the detector stream
    running at enqueue (a slot reused too early would be overwritten under the keypoints)."""
    params = few(models, 3)
    with opened(models, machine, max_persons=3, params=params) as gpu:
        tracked = _tracked(gpu)
        want = [tracked(f) for f in clip]
    with opened(models, machine, max_persons=3, params=params) as gpu:
        gpu.det_stream.eager = detector_first
        machine.trace.clear()
        got = list(_tracked(gpu).stream(iter(clip)))
        trace = list(machine.trace)
        det, pose = gpu.det_stream.handle, gpu.pose_stream.handle
        uploads = _positions(trace, "enqueue", det, f"HtoD copy of {clip[0].image.nbytes} bytes")
        detects = _positions(trace, "enqueue", det, f"execute {gpu._det.source}")
        runs = _positions(trace, "enqueue", pose, f"execute {gpu._pose.source}")
        waits = _positions(trace, "sync", gpu._keypoints._events[3].handle, "event")
        assert len(gpu._slots) == 2
    _assert_same_tracks(want, got)
    assert ["det_infer" in r.times for r in got] == [i % 3 == 0 for i in range(8)]
    assert all(len(r.poses) == 3 for r in got)
    assert len(uploads) == len(runs) == len(waits) == 8 and len(detects) == 3
    for t in range(7):
        assert runs[t] < uploads[t + 1] < waits[t], f"frame {t + 1} not uploaded during {t}"
        if (t + 1) % 3:
            assert runs[t + 1] > waits[t]  # pose-guided boxes: after frame t's keypoints
    assert detects[1] < waits[2] and detects[2] < waits[5]  # detections 3 and 6 enqueued early


def test_tracked_stream_detects_an_empty_scene_late_and_drains_on_a_source_error(
        models, machine, clip):
    """A black first frame leaves no track, so frame 1 detects although the count says no (its
    detection is enqueued once frame 0 is done); the source failing after 4 frames: the frame
    in flight is finished and yielded, then the error propagates, and the pipeline is free."""
    black = replace(clip[0], image=np.zeros_like(clip[0].image))
    frames = [black, *clip[1:4]]

    def source():
        yield from frames
        raise SourceError("camera unplugged")

    params = few(models, 3)
    with opened(models, machine, max_persons=3, params=params) as gpu:
        tracked = _tracked(gpu)
        want = [tracked(f) for f in frames]
    got: List = []
    with opened(models, machine, max_persons=3, params=params) as gpu:
        with pytest.raises(SourceError, match="unplugged"):
            for result in _tracked(gpu).stream(source()):
                got.append(result)
        assert not any(slot.busy for slot in gpu._slots)
        stopped = _tracked(gpu).stream(iter(clip))
        next(stopped)
        stopped.close()  # a consumer that stops early: the frame in flight is dropped
        assert not any(slot.busy for slot in gpu._slots)
        assert_same_poses(want[1].poses, gpu(frames[1]).poses)
    _assert_same_tracks(want, got)
    assert ["det_infer" in r.times for r in got] == [True, True, False, False]
    assert len(got[0].poses) == 0 and len(got[1].poses) == 3


def test_tracked_batch_across_cameras_on_the_gpu(models, machine, clip):
    """TrackedPipeline.batch with det_every 1 goes through GpuPipeline.batch: one detector run
    and one keypoint batch for both cameras per tick, track ids per camera."""
    cams = [[replace(f, camera=c) for f in clip[:3]] for c in ("a", "b")]
    params = few(models, 3)
    with opened(models, machine, max_persons=3, params=params, det_batch=2) as gpu:
        tracked = _tracked(gpu, 1)
        ticks = [tracked.batch([a, b]) for a, b in zip(*cams)]
        assert gpu._det.submitted == 3 and gpu._pose.submitted == 3 * 2  # 6 crops, batch 4
    for tick in ticks:
        info = tick[0].batch
        assert info is not None and info.detector_calls == 1 and info.keypoint_batches == [4, 2]
        for result in tick:
            assert result.poses.track_ids is not None and len(result.poses) == 3
    for camera in range(2):  # each camera its own tracker: the same ids in both, every tick
        assert [sorted(t[camera].poses.track_ids.tolist()) for t in ticks] == [[1, 2, 3]] * 3
