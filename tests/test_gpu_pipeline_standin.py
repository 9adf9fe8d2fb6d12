"""The GPU pipeline's orchestration in CI, on a host-memory STAND-IN for CUDA (no GPU here).

The real :class:`~trt_pose_td.pipelines.gpu.GpuPipeline` runs on :mod:`tests.gpu_standin`: fake
device memory with real pointer arithmetic, lazily run streams ordered only by events and waits,
the real kernel host code with the numpy twins as kernel bodies, ONNX Runtime behind TensorRT's
device interface. What this proves: buffers, offsets, chunking at the profile max, stream/event
ordering, the two-slot overlap, zero-copy vs pinned upload, given boxes and the capacity error.
What it cannot: GPU speed, TensorRT numerics, the kernels themselves —
``tests/test_gpu_pipeline.py`` (markers gpu + trt) still needs a GPU for those.

Reference and tolerance: :mod:`tests.gpu_standin.pipelines` (CpuPipeline with the crop kernel's
twin sampling on the same ONNX Runtime sessions; keypoints 1e-3 px, scores 1e-5). Measured on the
packaged photo (23 persons, 6 chunks): 0.0 (bitwise equal). Several cameras in one batch:
``tests/test_gpu_batch_standin.py``; --flip, --recrop and tracking: ``test_gpu_parity_standin.py``.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

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
from trt_pose_td.cuda.driver import CudaError
from trt_pose_td.errors import ConfigError, SourceError
from trt_pose_td.io.inputs import as_frame, as_frames
from trt_pose_td.pipelines.gpu_memory import FrameSlot, event
from trt_pose_td.types import Detections

POSE_BATCH = 4
STAGES = {"upload", "det_pre", "det_infer", "det_post", "crop", "pose_infer", "pose_post",
          "total"}


models = models_fixture(POSE_BATCH)
machine = machine_fixture()


@pytest.fixture(scope="module")
def cpu(models):
    return cpu_reference(models, POSE_BATCH)


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



# -- against the CPU pipeline ------------------------------------------------------------------
@pytest.mark.slow
def test_keypoints_match_the_cpu_pipeline_on_the_sample_photo(models, machine, cpu, photo):
    """23 persons through a profile max of 4: one letterbox and one crop launch, 6 engine +
    decode chunks."""
    expected = cpu(photo)
    with opened(models, machine, pose_batch=POSE_BATCH, max_persons=32) as gpu:
        result = gpu(photo)
        assert len(result.poses) > 3 * POSE_BATCH
        assert gpu.kernels.launches == {"warp_frames_f32": 2, "decode_heatmaps": 6}
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


@pytest.mark.parametrize("kind, like, pose_batch, decode", [
    ("heatmap", "pp_tinypose_256x192", 3, "decode_heatmaps"),  # 3 crops: 64 bytes off 256
    ("simcc", "rtmpose_s", 4, "decode_simcc"),
], ids=["heatmap-unaligned-chunks", "simcc"])
def test_other_keypoint_models_and_unaligned_chunks_match_the_cpu_estimator(
        models, machine, standins, given, photo, kind, like, pose_batch, decode):
    """Tiny generated models (tests/models/fixtures.py) at a 20x36 input: the SimCC decode
    launch, and chunks whose byte size is not a multiple of TensorRT's 256-byte address
    alignment (still one crop launch: every crop carries its output offset, chunk starts
    padded)."""
    from tests.models import fixtures
    from trt_pose_td.cuda.twins import TwinPreprocessor
    from trt_pose_td.engines.onnxruntime import OrtEngine
    from trt_pose_td.models import spec_for_file
    from trt_pose_td.pipelines.stages import PoseEstimator

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
            assert gpu.kernels.launches == {"warp_frames_f32": 1, decode: chunks}
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
        gpu = gpu_standin.gpu_pipeline(det, pose, plan, max_persons=3, params=few(models, 3))
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
    with opened(models, machine, max_persons=3, params=few(models, 3)) as gpu:
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


def test_stream_drains_the_frame_in_flight_when_the_source_fails(models, machine, clip,
                                                                 clip_singles):
    def source():
        yield from clip[:2]
        raise SourceError("camera unplugged")

    results = []
    with opened(models, machine, max_persons=3, params=few(models, 3)) as gpu:
        with pytest.raises(SourceError, match="unplugged"):
            for result in gpu.stream(source()):
                results.append(result)
    assert [r.frame.index for r in results] == [0, 1]
    for result, single in zip(results, clip_singles):
        assert_same_poses(single, result.poses)


def test_zero_copy_frames_match_the_pinned_upload(models, machine, clip, clip_singles):
    poses = {}
    for integrated in (False, True):  # the default follows the device: mapped on Jetson
        with opened(models, machine, max_persons=3, params=few(models, 3),
                    integrated=integrated) as gpu:
            assert gpu.zero_copy is integrated
            poses[integrated] = gpu(clip[0]).poses
            assert (gpu._slots[0].device is None) is integrated
    assert_same_poses(poses[False], poses[True])
    assert_same_poses(clip_singles[0], poses[True])


# -- negative controls: the stand-in sees orchestration bugs -------------------------------------
def _crops_written_in_the_wrong_places(gpu):
    offsets = gpu._keypoints._offsets
    gpu._keypoints._offsets = lambda persons: offsets(persons)[::-1]


def _no_wait_for_the_upload(gpu):
    gpu.pose_stream.wait = lambda event: None


def _no_sync_before_reading(gpu):
    gpu._keypoints._events[3].synchronize = lambda: None


@pytest.mark.parametrize("bug", [_crops_written_in_the_wrong_places, _no_wait_for_the_upload,
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
    with opened(models, machine, max_persons=3, params=few(models, 3)) as gpu:
        gpu.det_stream.eager = True
        gpu(clip[0])  # sizes slot 0's buffers
        (first,) = gpu._slots
        second = FrameSlot(events=[event(), event()])
        second.host = gpu_standin.driver.PinnedBuffer(first.nbytes)
        second.device, second.nbytes = first.device, first.nbytes
        gpu._slots.append(second)
        try:
            results = list(gpu.stream(clip[:2]))
        finally:
            second.device = None  # one owner again for close()
    assert [r.frame.index for r in results] == [0, 1]
    with pytest.raises(AssertionError):
        assert_same_poses(clip_singles[0], results[0].poses)


def test_close_makes_the_device_current_before_releasing_anything(models, machine):
    """close() may run on another thread than the one that ran the pipeline (a service's
    shutdown): the device's context is made current before any stream or buffer is touched."""
    order = []
    with opened(models, machine) as gpu:
        make_current, sync = gpu.device.make_current, gpu.det_stream.synchronize
        gpu.device.make_current = lambda: (order.append("make_current"), make_current())[1]
        gpu.det_stream.synchronize = lambda: (order.append("synchronize"), sync())[1]
        gpu.close()
    assert order[:2] == ["make_current", "synchronize"]
