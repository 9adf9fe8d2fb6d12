"""``GpuPipeline.batch``: several cameras in one GPU batch, on the host-memory STAND-IN for CUDA
(:mod:`tests.gpu_standin`; no GPU here, and none of this proves GPU speed or the kernels' own
arithmetic — ``tests/cuda/test_kernels_gpu.py`` needs a GPU for that).

What it shows: every frame letterboxed by ONE multi-frame warp launch into one detector enqueue
per profile-max chunk (a static batch-1 engine loops), every person of every frame cropped by ONE
launch into one keypoint enqueue per profile-max chunk (counted on the stand-in kernels and
engines), results equal to ``CpuPipeline(preprocessor="twin").batch`` on the same sessions and
to one GPU call per frame (keypoints 1e-3 px, scores 1e-5: :mod:`tests.gpu_standin.pipelines`),
given boxes per frame (some None) as on the CPU, an honest ``BatchInfo``, and the camera service
running its ticks through it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.gpu_standin.pipelines import (
    assert_same_poses,
    cpu_reference,
    few,
    machine_fixture,
    models_fixture,
    opened,
)
from trt_pose_td.errors import ConfigError
from trt_pose_td.io.inputs import as_frames
from trt_pose_td.types import Detections, Frame

cv2 = pytest.importorskip("cv2")

POSE_BATCH = 7  # chunks straddle the cameras
#: Pixels a box may move between a detector run on 3 frames and one on 1 (ONNX Runtime may round
#: another batch size differently; measured here: 0.0, boxes and keypoints bitwise equal).
BOX_ATOL = 1e-3


models = models_fixture(POSE_BATCH)
machine = machine_fixture()


@pytest.fixture(scope="module")
def cpu(models):
    return cpu_reference(models, POSE_BATCH)


@pytest.fixture(scope="module")
def cameras(sample_photo):
    """Three "cameras": the photo, a shifted copy, and a 400x300 cut of it (another size)."""
    image = cv2.imread(str(sample_photo))
    h, w = image.shape[:2]
    shifted = cv2.warpAffine(image, np.float32([[1, 0, -30], [0, 1, 12]]), (w, h),
                             borderMode=cv2.BORDER_REPLICATE)
    cut = np.ascontiguousarray(image[100:400, 120:520])
    return [Frame(image, 0, 0.0, camera="cam1"), Frame(shifted, 0, 0.0, camera="cam2"),
            Frame(cut, 0, 0.0, camera="cam3")]


@pytest.fixture(scope="module")
def expected(cpu, cameras):
    """The CPU reference's batch of the three cameras."""
    return cpu.batch(cameras)


def test_one_letterbox_one_crop_launch_and_one_keypoint_enqueue_per_chunk(
        models, machine, cameras, expected):
    with opened(models, machine, pose_batch=POSE_BATCH, det_batch=4, max_persons=32) as gpu:
        results = gpu.batch(cameras)
        persons = [len(r.poses) for r in results]
        total = sum(persons)
        chunks = math.ceil(total / POSE_BATCH)
        assert gpu.kernels.launches == {"warp_frames_f32": 2, "decode_heatmaps": chunks}
        assert gpu._det.submitted == 1 and gpu._pose.submitted == chunks
        singles = [gpu(f) for f in cameras]  # the same frames one call each
    assert min(persons) >= 5 and chunks < sum(math.ceil(n / POSE_BATCH) for n in persons)
    assert [r.frame.camera for r in results] == ["cam1", "cam2", "cam3"]
    info = results[0].batch
    assert info is not None and all(r.batch is info for r in results)
    assert info.persons == persons and info.detector_calls == 1
    assert info.keypoint_batches == expected[0].batch.keypoint_batches
    assert info.keypoint_batches == [POSE_BATCH] * (chunks - 1) + [total - POSE_BATCH *
                                                                   (chunks - 1)]
    for got, want, single in zip(results, expected, singles):
        assert_same_poses(want.poses, got.poses)
        assert_same_poses(single.poses, got.poses, box_atol=BOX_ATOL)
        assert got.times["total"] == pytest.approx(info.ms)
        assert {"upload", "det_pre", "det_infer", "det_post", "crop", "pose_infer",
                "pose_post"} <= set(got.times)
    assert sum(r.times["pose_infer"] for r in results) < info.ms


def test_given_boxes_replace_the_detector_for_their_frame(models, machine, cameras, cpu,
                                                          expected):
    own = expected[1].poses
    given = [None, Detections(own.boxes[:3] + 2, own.box_scores[:3]), None]
    want = cpu.batch(cameras, given)
    with opened(models, machine, pose_batch=POSE_BATCH, det_batch=4, max_persons=32) as gpu:
        got = gpu.batch(cameras, given)
        assert gpu._det.submitted == 1  # frames 0 and 2 in one run
        assert got[0].batch is not None and got[0].batch.detector_calls == 1
        assert got[0].batch.keypoint_batches == want[0].batch.keypoint_batches
    np.testing.assert_array_equal(got[1].poses.boxes, given[1].boxes)
    assert "det_infer" not in got[1].times and "det_infer" in got[0].times
    for g, w in zip(got, want):
        assert_same_poses(w.poses, g.poses)
    with pytest.raises(ValueError, match="3 frames but 1 detections"):
        with opened(models, machine) as gpu:
            gpu.batch(cameras, [None])


@pytest.mark.parametrize("det_batch, runs", [(2, 2), (1, 3)], ids=["chunked", "static"])
def test_more_cameras_than_the_detector_profile_run_in_chunks(models, machine, cameras,
                                                              expected, det_batch, runs):
    with opened(models, machine, pose_batch=POSE_BATCH, det_batch=det_batch,
                max_persons=32) as gpu:
        results = gpu.batch(cameras)
        assert gpu._det.submitted == runs
        assert gpu.kernels.launches["warp_frames_f32"] == runs + 1  # letterboxes + one crop
    assert results[0].batch is not None and results[0].batch.detector_calls == runs
    for got, want in zip(results, expected):
        assert_same_poses(want.poses, got.poses, box_atol=BOX_ATOL)


def test_frames_without_persons_and_no_frames(models, machine, cameras, expected):
    black = Frame(np.zeros((240, 320, 3), np.uint8), 0, 0.0, "dark")
    with opened(models, machine, pose_batch=POSE_BATCH, det_batch=4, max_persons=32) as gpu:
        results = gpu.batch([black, cameras[2], black])
        assert gpu.batch([]) == []
        again = gpu.batch([cameras[2]])  # the slots of the first call are free again
        assert len(gpu._slots) == 3
    assert [len(r.poses) for r in results] == [0, len(expected[2].poses), 0]
    assert results[0].batch is not None and results[0].batch.persons[0] == 0
    assert set(results[0].times) == {"upload", "det_pre", "det_infer", "det_post", "total"}
    assert_same_poses(expected[2].poses, results[1].poses, box_atol=BOX_ATOL)
    assert_same_poses(results[1].poses, again[0].poses, box_atol=BOX_ATOL)


def test_a_capacity_error_in_a_batch_loses_nothing(models, machine, cameras, expected):
    with opened(models, machine, pose_batch=POSE_BATCH, det_batch=4, max_persons=8,
                params=few(models, 8)) as gpu:
        many = Detections(np.tile(expected[0].poses.boxes[:1], (9, 1)), np.ones(9, np.float32))
        with pytest.raises(ConfigError, match="9 persons exceed .* capacity 8"):
            gpu.batch(cameras[:2], [None, many])
        assert not any(slot.busy for slot in gpu._slots)
        eight = Detections(expected[2].poses.boxes[:8], expected[2].poses.box_scores[:8])
        result = gpu.batch([cameras[2]], [eight])[0]
    assert_same_poses(expected[2].poses[:8], result.poses)


def test_the_camera_service_runs_its_ticks_through_one_gpu_batch(models, machine, monkeypatch,
                                                                 sample_clip, tmp_path):
    """``serve`` with two cameras (the packaged clip twice) on the stand-in GpuPipeline: every
    tick with both cameras is one detector run and one keypoint batch across them, and what
    the service writes equals the CPU reference frame by frame (JSONL rounds to 0.01 px)."""
    import argparse
    import json

    from trt_pose_td.cli import serve as serve_cli
    from trt_pose_td.service import loop

    parser = argparse.ArgumentParser()
    serve_cli.add_parser(parser.add_subparsers())
    jsonl = tmp_path / "poses.jsonl"
    cfg = serve_cli.resolve(parser.parse_args([
        "serve", f"cam1={sample_clip}", f"cam2={sample_clip}", "--jsonl", str(jsonl),
        "--no-http", "--max-frames", "8"]))
    params = few(models, 3)
    ticks = []
    with opened(models, machine, pose_batch=4, det_batch=4, max_persons=3, params=params) as gpu:
        batch = gpu.batch

        def counted(frames, detections=None):
            before = (gpu._det.submitted, gpu._pose.submitted)
            results = batch(frames, detections)
            ticks.append((len(frames), gpu._det.submitted - before[0],
                          gpu._pose.submitted - before[1], results[0].batch))
            return results

        monkeypatch.setattr(gpu, "batch", counted)
        monkeypatch.setattr(loop, "open_pipeline", lambda config: gpu)
        assert loop.Service(cfg).run(install_signals=False, tame_logs=False) == 0
    both = [t for t in ticks if t[0] == 2]
    assert both, f"no tick had both cameras: {ticks}"
    for _, det_runs, pose_runs, info in both:
        assert det_runs == 1 and info.detector_calls == 1
        assert info.persons == [3, 3] and pose_runs == len(info.keypoint_batches) == 2
    docs = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert {d["camera"] for d in docs} == {"cam1", "cam2"}
    frames = list(as_frames(str(sample_clip)))
    cpu = cpu_reference(models, 4, params=params)
    for doc in docs:
        want = cpu(frames[doc["frame"]]).poses
        got = np.float32([p["keypoints"] for p in doc["persons"]])
        np.testing.assert_allclose(got[..., :2], want.keypoints, rtol=0, atol=0.006)
