"""Poses with track ids / raw keypoints: validation, slicing, empty(), the JSONL fields."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trt_pose_td.io.sinks import JsonlSink
from trt_pose_td.types import Frame, FrameResult, Poses, StageTimes


def poses(n: int = 3, raw: bool = True) -> Poses:
    kp = np.arange(n * 34, dtype=np.float32).reshape(n, 17, 2)
    return Poses(kp, np.full((n, 17), 0.5), np.zeros((n, 4)), np.ones(n),
                 np.arange(10, 10 + n), kp + 0.25 if raw else None)


def test_track_fields_slice_with_the_persons():
    p = poses()
    assert p.track_ids.dtype == np.int64 and p.keypoints_raw.dtype == np.float32
    assert p[1].track_ids.tolist() == [11] and p[1:].keypoints_raw.shape == (2, 17, 2)
    assert [q.track_ids[0] for q in p] == [10, 11, 12]
    assert p[np.array([2, 0])].track_ids.tolist() == [12, 10]
    assert Poses.empty().track_ids is None and Poses.empty(tracked=True).track_ids.shape == (0,)


def test_track_fields_are_validated():
    with pytest.raises(ValueError, match="track_ids has 2 entries for 3"):
        Poses(np.zeros((3, 17, 2)), np.zeros((3, 17)), np.zeros((3, 4)), np.zeros(3), [1, 2])
    with pytest.raises(ValueError, match="keypoints_raw"):
        Poses(np.zeros((1, 17, 2)), np.zeros((1, 17)), np.zeros((1, 4)), np.zeros(1), [1],
              np.zeros((1, 16, 2)))


def test_jsonl_writes_track_id_and_raw_keypoints(tmp_path):
    path = tmp_path / "poses.jsonl"
    sink = JsonlSink(str(path))
    frame = Frame(np.zeros((4, 4, 3), np.uint8), 3, 0.3, "v.avi")
    sink.write(FrameResult(frame, poses(2), StageTimes()))
    sink.write(FrameResult(frame, poses(1, raw=False), StageTimes()))
    sink.write(FrameResult(frame, poses(1, raw=False)[0:0], StageTimes()))
    sink.close()
    first, second, third = (json.loads(line) for line in path.read_text().splitlines())
    a, b = first["persons"]
    assert (a["track_id"], b["track_id"]) == (10, 11)
    assert a["keypoints_raw"][1] == [2.25, 3.25, 0.5] and a["keypoints"][1] == [2.0, 3.0, 0.5]
    assert "keypoints_raw" not in second["persons"][0] and third["persons"] == []
    untracked = Poses(np.zeros((1, 17, 2)), np.zeros((1, 17)), np.zeros((1, 4)), np.zeros(1))
    assert "track_id" not in untracked.to_list()[0]


def test_tracked_persons_are_drawn_in_their_track_colour():
    pytest.importorskip("cv2")
    from trt_pose_td.io.draw import draw_poses, track_color

    image = np.zeros((100, 100, 3), np.uint8)
    p = Poses(np.zeros((2, 17, 2)), np.zeros((2, 17)),
              np.array([[10, 10, 40, 90], [50, 10, 90, 90]]), np.ones(2), [3, 4])
    out = draw_poses(image, p, draw_boxes=True)
    assert tuple(out[50, 10]) == track_color(3) and tuple(out[50, 90]) == track_color(4)
    assert track_color(3) != track_color(4)
