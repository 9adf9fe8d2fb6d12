import numpy as np
import pytest

from trt_pose_td.types import Detections, Frame, FrameResult, Poses, StageTimes


def test_frame_validates_image():
    with pytest.raises(ValueError, match="uint8 BGR"):
        Frame(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8 BGR"):
        Frame(np.zeros((4, 4, 3), np.float32))
    f = Frame(np.zeros((4, 6, 3), np.uint8))
    assert (f.width, f.height) == (6, 4)


def test_detections_slicing_and_validation():
    d = Detections(np.arange(12).reshape(3, 4), [0.1, 0.2, 0.3])
    assert len(d) == 3 and d.boxes.dtype == np.float32 and d.labels.tolist() == [0, 0, 0]
    assert len(d[1:]) == 2 and d[-1].scores.tolist() == pytest.approx([0.3])
    assert len(Detections.empty()) == 0
    with pytest.raises(ValueError, match="lengths differ"):
        Detections(np.zeros((2, 4)), [0.5])
    with pytest.raises(ValueError, match="shape"):
        Detections(np.zeros((2, 3)), [0.5, 0.5])


def test_poses_json():
    kp = np.zeros((2, 17, 2), np.float32)
    ks = np.full((2, 17), 0.1, np.float32)
    ks[0, :4] = 0.8
    p = Poses(kp, ks, np.zeros((2, 4)), [0.5, 1.0])
    persons = p.to_list()
    assert len(persons) == 2 and len(persons[0]["keypoints"]) == 17
    assert persons[0]["keypoints"][0] == [0.0, 0.0, 0.8]
    assert len(Poses.empty()) == 0 and len(list(p)) == 2


def test_frame_result_json_schema():
    times = StageTimes()
    times.add("crop", 1.0)
    times.add("crop", 2.0)
    times.add("total", 3.5)
    assert times == {"crop": 3.0, "total": 3.5}
    assert not hasattr(times, "total")  # the frame time is the "total" entry, never a sum
    r = FrameResult(Frame(np.zeros((2, 2, 3), np.uint8), 7, 1.5, "a.jpg"), Poses.empty(), times)
    assert r.to_dict() == {"frame": 7, "source": "a.jpg", "timestamp": 1.5, "persons": []}
    assert r.to_json() == '{"frame":7,"source":"a.jpg","timestamp":1.5,"persons":[]}'
    tagged = FrameResult(Frame(np.zeros((2, 2, 3), np.uint8), 7, 1.5, "a.jpg", "door"),
                         Poses.empty(), times)
    assert list(tagged.to_dict()) == ["frame", "source", "camera", "timestamp", "persons"]
    assert tagged.to_dict()["camera"] == "door"


def test_keypoints_as_one_array_match_the_json():
    kp = np.arange(2 * 17 * 2, dtype=np.float32).reshape(2, 17, 2) + 0.25
    ks = np.linspace(0, 1, 34, dtype=np.float32).reshape(2, 17)
    p = Poses(kp, ks, np.zeros((2, 4)), [0.5, 1.0])
    xys = p.to_array()
    assert xys.shape == (2, 17, 3) and xys.dtype == np.float32
    assert np.array_equal(xys[..., :2], kp) and np.array_equal(xys[..., 2], ks)
    assert np.allclose(np.array([q["keypoints"] for q in p.to_list()]), xys, atol=1e-4)
    assert Poses.empty().to_array().shape == (0, 17, 3)
    back = Poses.from_list(p.to_list())
    assert np.allclose(back.to_array(), xys, atol=1e-4) and back.box_scores.tolist() == [0.5, 1]
    assert len(Poses.from_list([])) == 0
