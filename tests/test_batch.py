"""``pipeline.batch(frames)``: several cameras' frames through one detector batch and ONE keypoint
batch, with the real packaged models on the packaged photo. The results must equal one call per
frame (the same crops through the same model: only ONNX Runtime's float rounding for another
batch size may differ), and the batch composition must show the shared runs."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Dict, List, Mapping

import numpy as np
import pytest

from trt_pose_td.api import open_pipeline
from trt_pose_td.engines import Engine
from trt_pose_td.engines.base import TensorSpec
from trt_pose_td.io.inputs import as_frames
from trt_pose_td.io.sources import read_image
from trt_pose_td.pipelines.base import per_frame_batch
from trt_pose_td.pipelines.cpu import CpuPipeline
from trt_pose_td.pipelines.stages import Detector
from trt_pose_td.types import Detections, Frame, FrameResult

pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

#: Pixels: what float rounding of another batch size may move a keypoint or box by.
TOLERANCE = 1e-2


@pytest.fixture(scope="module")
def pipeline():
    """The packaged default pair, keypoint chunks of 7 so that chunks straddle frames."""
    with open_pipeline(max_batch=7) as p:
        yield p


@pytest.fixture(scope="module")
def cameras(sample_photo) -> List[Frame]:
    """Three "cameras": the photo, a shifted copy, and a 400x300 cut of it (another size)."""
    image = read_image(str(sample_photo))
    h, w = image.shape[:2]
    shifted = cv2.warpAffine(image, np.float32([[1, 0, -30], [0, 1, 12]]), (w, h),
                             borderMode=cv2.BORDER_REPLICATE)
    cut = np.ascontiguousarray(image[100:400, 120:520])
    return [Frame(image, 0, 0.0, "cam1"), Frame(shifted, 0, 0.0, "cam2"),
            Frame(cut, 0, 0.0, "cam3")]


@pytest.fixture(scope="module")
def one_by_one(pipeline, cameras) -> List[FrameResult]:
    return [pipeline(f) for f in cameras]


def assert_same(got: List[FrameResult], want: List[FrameResult]) -> None:
    assert [len(r.poses) for r in got] == [len(r.poses) for r in want]
    for g, w in zip(got, want):
        assert g.frame is w.frame or g.frame.source == w.frame.source
        np.testing.assert_allclose(g.poses.boxes, w.poses.boxes, atol=TOLERANCE)
        np.testing.assert_allclose(g.poses.keypoints, w.poses.keypoints, atol=TOLERANCE)
        np.testing.assert_allclose(g.poses.keypoint_scores, w.poses.keypoint_scores, atol=1e-4)


def test_batch_equals_one_call_per_frame(pipeline, cameras, one_by_one):
    results = pipeline.batch(cameras)
    assert [r.frame.source for r in results] == ["cam1", "cam2", "cam3"]
    assert_same(results, one_by_one)
    persons = [len(r.poses) for r in one_by_one]
    assert min(persons) >= 5, persons  # the photo's group, in every camera
    info = results[0].batch
    assert info is not None and all(r.batch is info for r in results)
    assert info.persons == persons and info.detector_calls == 1
    # ONE keypoint batch across the cameras: full chunks of 7, fewer runs than frame by frame
    total = sum(persons)
    assert sum(info.keypoint_batches) == total
    assert info.keypoint_batches[:-1] == [7] * (len(info.keypoint_batches) - 1)
    assert len(info.keypoint_batches) == math.ceil(total / 7)
    assert len(info.keypoint_batches) < sum(math.ceil(n / 7) for n in persons)
    # each frame's share of the shared runs: the frames' keypoint times add up to the runs'
    for r in results:
        assert r.times["total"] == pytest.approx(info.ms)
        assert 0 < r.times["pose_infer"] < info.ms
    assert sum(r.times["pose_infer"] for r in results) < info.ms
    assert info.as_dict()["persons"] == persons


def test_given_boxes_replace_the_detector_for_their_frame(pipeline, cameras, one_by_one):
    boxes = one_by_one[1].poses
    given = Detections(boxes.boxes[:3], boxes.box_scores[:3])
    results = pipeline.batch(cameras[:2], [None, given])
    assert results[0].batch is not None and results[0].batch.detector_calls == 1
    assert_same(results[:1], one_by_one[:1])
    np.testing.assert_allclose(results[1].poses.keypoints, boxes.keypoints[:3], atol=TOLERANCE)
    with pytest.raises(ValueError, match="2 frames but 1 detections"):
        pipeline.batch(cameras[:2], [None])


class StaticBatchEngine(Engine):
    """A real engine presented as a static batch-1 graph, counting its runs."""

    def __init__(self, inner: Engine) -> None:
        self.inner, self.runs = inner, []  # type: ignore[var-annotated]

    @property
    def inputs(self) -> Dict[str, TensorSpec]:
        return self.inner.inputs

    @property
    def outputs(self) -> Dict[str, TensorSpec]:
        return self.inner.outputs

    @property
    def max_batch(self) -> int:
        return 1

    def infer(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self.runs.append(len(next(iter(feeds.values()))))
        return self.inner.infer(feeds)


def test_static_batch_detector_loops_over_frames(pipeline, cameras, one_by_one):
    d = pipeline.detector
    engine = StaticBatchEngine(d.engine)
    static = CpuPipeline(Detector(engine, d.spec, d.params, d.pre), pipeline.pose)
    results = static.batch(cameras)
    assert engine.runs == [1, 1, 1]
    assert results[0].batch is not None and results[0].batch.detector_calls == 3
    assert_same(results, one_by_one)


def test_recrop_and_flip_batch_equal_one_call_per_frame(cameras):
    frames = cameras[2:] + [Frame(cv2.flip(cameras[2].image, 1), 0, 0.0, "mirror")]
    with open_pipeline(max_batch=4, recrop=True, flip=True) as p:
        want = [p(f) for f in frames]
        got = p.batch(frames)
    assert_same(got, want)
    info = got[0].batch
    assert info is not None
    persons = sum(info.persons)
    # the second (re-crop) pass is its own batch across both frames
    assert persons < sum(info.keypoint_batches) <= 2 * persons


def test_per_frame_batch_is_one_call_per_frame(pipeline, cameras, one_by_one):
    """TrackedPipeline.batch with det_every > 1 (per_frame_batch), exercised with the CPU
    pipeline's ``__call__``: same results, honest composition (per-frame keypoint runs)."""
    results = per_frame_batch(pipeline, cameras, None, 7)
    assert_same(results, one_by_one)
    info = results[0].batch
    assert info is not None and info.detector_calls == 3
    assert info.keypoint_batches == [min(7, n - s) for n in info.persons for s in range(0, n, 7)]


def test_empty_frame_and_no_frames(pipeline, cameras):
    black = Frame(np.zeros((240, 320, 3), np.uint8), 0, 0.0, "dark")
    results = pipeline.batch([black, cameras[2]])
    assert len(results[0].poses) == 0 and len(results[1].poses) > 0
    assert results[0].batch is not None and results[0].batch.persons[0] == 0
    assert pipeline.batch([]) == []


@pytest.mark.parametrize("det_every", [1, 2])
def test_tracked_batch_keeps_one_tracker_per_camera(sample_clip, det_every):
    """Two cameras through TrackedPipeline.batch: each camera's track ids and keypoints equal
    those of a tracked pipeline that sees only that camera (ids are per camera); det_every 2
    runs the frames one after another through their camera's tracker."""
    frames = list(itertools.islice(as_frames(str(sample_clip)), 3))
    cams = {"a": [replace(f, camera="a") for f in frames],
            "b": [replace(f, camera="b", image=cv2.flip(f.image, 1)) for f in frames]}
    options = dict(track=True, det_every=det_every, max_persons=6)
    with open_pipeline(**options) as p:
        ticks = [p.batch([a, b]) for a, b in zip(cams["a"], cams["b"])]
        assert ticks[1][0].batch is not None
        assert ticks[1][0].batch.detector_calls == (1 if det_every == 1 else 0)  # both frames
    for i, own in enumerate(cams.values()):
        with open_pipeline(**options) as q:
            alone = [q(f) for f in own]
        for tick, want in zip(ticks, alone):
            got = tick[i].poses
            assert got.track_ids is not None and len(got) == len(want.poses) > 0
            np.testing.assert_array_equal(got.track_ids, want.poses.track_ids)
            np.testing.assert_allclose(got.keypoints, want.poses.keypoints, atol=TOLERANCE)
