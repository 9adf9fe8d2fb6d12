import json

import numpy as np
import pytest

from trt_pose_td.io.draw import draw_poses
from trt_pose_td.io.sinks import ImageSink, JsonlSink, VideoSink
from trt_pose_td.types import Frame, FrameResult, Poses, StageTimes

cv2 = pytest.importorskip("cv2")


def _result(index=0, source="dir/pic.jpg"):
    kp = np.tile(np.array([[20.0, 30.0]], np.float32), (17, 1))[None]
    kp[0, 5] = (60, 40)
    kp[0, 6] = (20, 40)
    poses = Poses(kp, np.full((1, 17), 0.9, np.float32), np.array([[10, 10, 70, 90]]), [0.8])
    return FrameResult(Frame(np.zeros((100, 80, 3), np.uint8), index, 2.0, source), poses,
                       StageTimes(total=1.0))


def test_draw_changes_pixels_only_on_a_copy():
    r = _result()
    out = draw_poses(r.frame.image, r.poses)
    assert r.frame.image.max() == 0
    assert out[40, 40].any()  # the shoulder line (20,40)-(60,40)
    hidden = Poses(r.poses.keypoints, np.zeros((1, 17), np.float32), r.poses.boxes,
                   r.poses.box_scores)
    assert not draw_poses(r.frame.image, hidden, draw_boxes=False).any()


def test_jsonl_sink_writes_one_object_per_frame(tmp_path):
    sink = JsonlSink(str(tmp_path / "sub" / "poses.jsonl"))
    sink.write(_result(0))
    sink.write(_result(1))
    sink.close()
    lines = (tmp_path / "sub" / "poses.jsonl").read_text().splitlines()
    docs = [json.loads(x) for x in lines]
    assert [d["frame"] for d in docs] == [0, 1]
    assert docs[0]["persons"][0]["box"] == [10.0, 10.0, 70.0, 90.0]
    assert len(docs[0]["persons"][0]["keypoints"]) == 17


def test_image_sink_names_and_video_sink(tmp_path):
    sink = ImageSink(str(tmp_path))
    sink.write(_result(0))
    sink.write(_result(1))  # same source name -> suffixed
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == ["pic.jpg", "pic_000001.jpg"]
    v = VideoSink(str(tmp_path / "v.mp4"), 5.0)
    for i in range(3):
        v.write(_result(i))
    v.close()
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3


def test_draw_leaves_out_low_scoring_persons():
    r = _result()
    assert not draw_poses(r.frame.image, r.poses, min_person_score=0.81).any()
    assert draw_poses(r.frame.image, r.poses, min_person_score=0.8).any()
