"""The GPU pipeline's orchestration in CI, on a host-memory STAND-IN for CUDA (no GPU here).

The real :class:`~trt_pose_td.gpu_pipeline.GpuPipeline` runs on :mod:`tests.gpu_standin`: fake
device memory with real pointer arithmetic, lazily run streams ordered only by events and waits,
the real kernel host code with the numpy twins as kernel bodies, ONNX Runtime behind TensorRT's
device interface. What this proves: buffers, offsets, chunking at the profile max, stream/event
ordering, the two-slot overlap, zero-copy vs pinned upload, given boxes and the capacity error.
What it cannot: GPU speed, TensorRT numerics, the kernels themselves —
``tests/test_gpu_pipeline.py`` (markers gpu + trt) still needs a GPU for those.

Reference: :class:`~trt_pose_td.pipeline.CpuPipeline` with ``preprocessor="twin"`` (the crop
kernel's sampling) on the same ONNX Runtime sessions, keypoint chunks of the same size. Tolerance:
keypoints 1e-3 px, scores 1e-5. Both sides run the same float32 arithmetic on the same ONNX
Runtime calls, so the only licensed difference is DARK's float64 blur (numpy matmul on the CPU,
a sequential sum in the twin) rounding to float32: ~1e-5 px. Measured on the packaged photo
(23 persons, 6 chunks): 0.0 (bitwise equal). Any orchestration bug (wrong crop, chunk, person or
frame; a read before its write) moves keypoints by pixels, so 1e-3 px separates them.
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest

from tests import gpu_standin
from trt_pose_td.config import PipelineConfig
from trt_pose_td.cuda.driver import CudaError
from trt_pose_td.errors import ConfigError, SourceError
from trt_pose_td.io.inputs import as_frame, as_frames
from trt_pose_td.plan import resolve
from trt_pose_td.types import Detections

KEYPOINT_ATOL, SCORE_ATOL = 1e-3, 1e-5
POSE_BATCH = 4
STAGES = {"upload", "det_pre", "det_infer", "det_post", "crop", "pose_infer", "pose_post",
          "total"}


@pytest.fixture(scope="module")
def models():
    """The default packaged models (no mirror): plan + one ONNX Runtime session each."""
    from trt_pose_td.engines.onnxruntime import OrtEngine

    plan = resolve(PipelineConfig(preprocessor="twin", max_batch=POSE_BATCH), progress=False)
    det, pose = OrtEngine(plan.detector_file), OrtEngine(plan.pose_file)
    yield plan, det, pose
    det.close()
    pose.close()


@pytest.fixture(scope="module")
def cpu(models):
    """The reference: CPU pipeline, twin sampling, on the same sessions (not closed here)."""
    from trt_pose_td.cuda.twins import TwinPreprocessor
    from trt_pose_td.pipeline import CpuPipeline
    from trt_pose_td.stages import Detector, PoseEstimator

    plan, det, pose = models
    return CpuPipeline(Detector(det, plan.detector, plan.params, TwinPreprocessor()),
                       PoseEstimator(pose, plan.pose, POSE_BATCH, plan.cfg.refine,
                                     TwinPreprocessor()))


@pytest.fixture(scope="module")
def photo(sample_photo):
    return as_frame(str(sample_photo))


@pytest.fixture(scope="module")
def given(cpu, photo):
    """6 person boxes unlike the detector's (shifted, grown) and the CPU's poses for them."""
    found = cpu(photo).poses
    boxes = found.boxes[:6] + np.float32([-3, -5, 4, 6])
    dets = Detections(np.clip(boxes, 0, [639, 479, 639, 479]).astype(np.float32),
                      found.box_scores[:6])
    return dets, cpu(photo, dets).poses


@pytest.fixture(scope="module")
def clip(sample_clip):
    """The first 3 frames of the packaged photo panning (a real MP4)."""
    return list(itertools.islice(as_frames(str(sample_clip)), 3))


@pytest.fixture
def machine(monkeypatch):
    return gpu_standin.install(monkeypatch)


@contextmanager
def opened(models, machine, pose=None, **kw):
    """A stand-in GpuPipeline (``pose``: another keypoint session, with ``pose_spec``); on exit
    it is closed and must have released everything."""
    plan, det, default_pose = models
    pipe = gpu_standin.gpu_pipeline(det, pose or default_pose, plan, **kw)
    try:
        yield pipe
    finally:
        pipe.close()
    assert machine.live() == [], "GpuPipeline.close() left these behind"


def _few(models, n):
    """Detector thresholds keeping the n best persons (cheap frames)."""
    return replace(models[0].params, max_detections=n)


def assert_same_poses(a, b):
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_allclose(a.keypoints, b.keypoints, rtol=0, atol=KEYPOINT_ATOL)
    np.testing.assert_allclose(a.keypoint_scores, b.keypoint_scores, rtol=0, atol=SCORE_ATOL)


# -- against the CPU pipeline ------------------------------------------------------------------
@pytest.mark.slow
def test_keypoints_match_the_cpu_pipeline_on_the_sample_photo(models, machine, cpu, photo):
    """23 persons through a profile max of 4: one crop launch, 6 engine + decode chunks."""
    expected = cpu(photo)
    with opened(models, machine, pose_batch=POSE_BATCH, max_persons=32) as gpu:
        result = gpu(photo)
        assert len(result.poses) > 3 * POSE_BATCH
        assert gpu.kernels.launches == {"warp_affine_f32": 2, "decode_heatmaps": 6}
        assert gpu._pose.runs == 6
    assert_same_poses(expected.poses, result.poses)
    assert set(result.times) == STAGES and all(v >= 0 for v in result.times.values())


def test_given_detections_replace_the_detector(models, machine, given, photo):
    dets, expected = given
    with opened(models, machine) as gpu:
        result = gpu(photo, dets)
        assert gpu._det.submitted == 0, "the detector ran although boxes were given"
    np.testing.assert_array_equal(result.poses.boxes, dets.boxes)
    assert_same_poses(expected, result.poses)


@pytest.mark.parametrize("pose_batch", [1, 4, 32])
def test_chunking_at_the_profile_max_does_not_change_keypoints(models, machine, given, photo,
                                                               pose_batch):
    dets, expected = given
    with opened(models, machine, pose_batch=pose_batch, max_persons=8) as gpu:
        result = gpu(photo, dets)
        chunks = -(-len(dets) // pose_batch)
        assert gpu._pose.runs == gpu.kernels.launches["decode_heatmaps"] == chunks
    assert_same_poses(expected, result.poses)


@pytest.mark.parametrize("kind, like, pose_batch, warps, decode", [
    ("heatmap", "pp_tinypose_256x192", 3, 2, "decode_heatmaps"),  # 3 crops: 64 bytes off 256
    ("simcc", "rtmpose_s", 4, 1, "decode_simcc"),
], ids=["heatmap-unaligned-chunks", "simcc"])
def test_other_keypoint_models_and_unaligned_chunks_match_the_cpu_estimator(
        models, machine, standins, given, photo, kind, like, pose_batch, warps, decode):
    """Tiny generated models (tests/models/fixtures.py) at a 20x36 input: the SimCC decode
    launch, and chunks whose byte size is not a multiple of TensorRT's 256-byte address
    alignment (one crop launch per chunk, chunk starts padded)."""
    from tests.models import fixtures
    from trt_pose_td.cuda.twins import TwinPreprocessor
    from trt_pose_td.engines.onnxruntime import OrtEngine
    from trt_pose_td.models import spec_for_file
    from trt_pose_td.stages import PoseEstimator

    path = standins[kind].parent / f"{kind}_36x20.onnx"
    maker = fixtures.heatmap_pose_model if kind == "heatmap" else fixtures.simcc_pose_model
    ort = OrtEngine(maker(path, (36, 20)))
    base = spec_for_file(str(path), like)
    spec = replace(base, preprocess=replace(base.preprocess, input_size=(20, 36)))
    dets = given[0]
    expected = PoseEstimator(ort, spec, pose_batch, models[0].cfg.refine,
                             TwinPreprocessor())(photo, dets)
    try:
        with opened(models, machine, pose=ort, pose_spec=spec, pose_batch=pose_batch,
                    max_persons=8) as gpu:
            result = gpu(photo, dets)
            chunks = -(-len(dets) // pose_batch)
            assert gpu.kernels.launches == {"warp_affine_f32": warps, decode: chunks}
            assert gpu._pose.runs == chunks
    finally:
        ort.close()
    assert_same_poses(expected, result.poses)
    assert np.ptp(result.poses.keypoints[..., 0]) > 10, "degenerate keypoints prove nothing"


def test_more_persons_than_capacity_is_a_one_line_error_and_loses_nothing(
        models, machine, given, photo):
    dets, expected = given
    with opened(models, machine, max_persons=2) as gpu:
        with pytest.raises(ConfigError, match="3 persons exceed .* capacity 2") as err:
            gpu(photo, dets[:3])
        assert "\n" not in str(err.value)
        assert_same_poses(expected[:2], gpu(photo, dets[:2]).poses)


# -- streaming: the two-slot overlap -----------------------------------------------------------
@pytest.fixture(scope="module")
def clip_singles(models, clip):
    """Per-frame results of the clip, one ``pipeline(frame)`` call each (3 persons a frame)."""
    with pytest.MonkeyPatch.context() as mp:
        gpu_standin.install(mp)
        plan, det, pose = models
        gpu = gpu_standin.gpu_pipeline(det, pose, plan, max_persons=3, params=_few(models, 3))
        try:
            return [gpu(f).poses for f in clip]
        finally:
            gpu.close()


@pytest.mark.parametrize("detector_first", [False, True], ids=["lazy", "detector-eager"])
def test_stream_overlaps_and_equals_one_frame_at_a_time(models, machine, clip, clip_singles,
                                                        detector_first):
    """Both schedules: keypoint work before the next frame's detection, and the detector stream
    running ahead (a slot reused too early would then be overwritten under the keypoints). A
    frame without persons (black) in the middle has no keypoint job in flight."""
    black = replace(clip[0], image=np.zeros_like(clip[0].image), index=99)
    frames = [clip[0], black, *clip[1:]]
    submitted = []
    with opened(models, machine, max_persons=3, params=_few(models, 3)) as gpu:
        gpu.det_stream.eager = detector_first
        results = []
        for result in gpu.stream(iter(frames)):
            submitted.append(gpu._det.submitted)
            results.append(result)
    assert submitted == [2, 3, 4, 4], "frame t+1's detection was not queued before t's result"
    assert [r.frame.index for r in results] == [f.index for f in frames]
    assert len(results[1].poses) == 0
    for result, single in zip(results[:1] + results[2:], clip_singles):
        assert len(single) == 3
        assert_same_poses(single, result.poses)
    moved = np.abs(clip_singles[1].keypoints - clip_singles[0].keypoints).max()
    assert moved > 1.0, "the frames are too alike to show the order"


def test_batch_is_one_frame_after_another_with_the_same_results(models, machine, clip,
                                                                  clip_singles):
    """GpuPipeline.batch (for now one __call__ per frame: gpu_slots.per_frame_batch): the
    per-frame poses, in order, and a BatchInfo saying how it ran (one detector run and 3
    persons in one keypoint run per frame; no batch across the frames yet)."""
    with opened(models, machine, max_persons=3, params=_few(models, 3)) as gpu:
        results = gpu.batch(clip)
        assert gpu._det.submitted == 3
    assert [r.frame.index for r in results] == [f.index for f in clip]
    for result, single in zip(results, clip_singles):
        assert_same_poses(single, result.poses)
    info = results[0].batch
    assert info is not None and all(r.batch is info for r in results)
    assert info.persons == [3, 3, 3] and info.detector_calls == 3
    assert info.keypoint_batches == [3, 3, 3]


def test_stream_drains_the_frame_in_flight_when_the_source_fails(models, machine, clip,
                                                                 clip_singles):
    def source():
        yield from clip[:2]
        raise SourceError("camera unplugged")

    results = []
    with opened(models, machine, max_persons=3, params=_few(models, 3)) as gpu:
        with pytest.raises(SourceError, match="unplugged"):
            for result in gpu.stream(source()):
                results.append(result)
    assert [r.frame.index for r in results] == [0, 1]
    for result, single in zip(results, clip_singles):
        assert_same_poses(single, result.poses)


def test_zero_copy_frames_match_the_pinned_upload(models, machine, clip, clip_singles):
    poses = {}
    for integrated in (False, True):  # the default follows the device: mapped on Jetson
        with opened(models, machine, max_persons=3, params=_few(models, 3),
                    integrated=integrated) as gpu:
            assert gpu.zero_copy is integrated
            poses[integrated] = gpu(clip[0]).poses
            assert (gpu._slots[0].device is None) is integrated
    assert_same_poses(poses[False], poses[True])
    assert_same_poses(clip_singles[0], poses[True])


# -- negative controls: the stand-in sees orchestration bugs -------------------------------------
def _chunk_stride_of_one_crop(gpu):
    gpu._chunk_stride = gpu._crop_bytes


def _no_wait_for_the_upload(gpu):
    gpu.pose_stream.wait = lambda event: None


def _no_sync_before_reading(gpu):
    gpu._pose_events[3].synchronize = lambda: None


@pytest.mark.parametrize("bug", [_chunk_stride_of_one_crop, _no_wait_for_the_upload,
                                 _no_sync_before_reading])
def test_a_broken_pipeline_is_caught(models, machine, given, photo, bug):
    dets, expected = given
    with opened(models, machine, max_persons=8) as gpu:
        bug(gpu)
        try:
            poses = gpu(photo, dets).poses
        except CudaError:
            return  # e.g. an event read before it completed: CUDA_ERROR_NOT_READY
    with pytest.raises(AssertionError):
        assert_same_poses(expected, poses)


def test_a_frame_buffer_shared_by_both_slots_is_caught_when_the_detector_runs_ahead(
        models, machine, clip, clip_singles):
    """Write-after-read across streams: frame t+1's upload lands on frame t's device copy
    before frame t's crop kernel has read it."""
    with opened(models, machine, max_persons=3, params=_few(models, 3)) as gpu:
        gpu.det_stream.eager = True
        first, second = gpu._slots
        gpu(clip[0])  # sizes slot 0's buffers
        second.host = gpu_standin.driver.PinnedBuffer(first.nbytes)
        second.device, second.nbytes = first.device, first.nbytes
        try:
            results = list(gpu.stream(clip[:2]))
        finally:
            second.device = None  # one owner again for close()
    assert [r.frame.index for r in results] == [0, 1]
    with pytest.raises(AssertionError):
        assert_same_poses(clip_singles[0], results[0].poses)
