"""The pipeline's plumbing on the tiny stand-ins: where a bright spot is, keypoints must be."""

import numpy as np
import pytest

from trt_pose_td.decode import DetectorParams
from trt_pose_td.engines.onnxruntime import OrtEngine
from trt_pose_td.errors import ConfigError, EngineError
from trt_pose_td.models import get_spec, spec_for_file
from trt_pose_td.pipelines.cpu import CpuPipeline
from trt_pose_td.pipelines.stages import Detector, PoseEstimator
from trt_pose_td.types import Detections, Frame, StageTimes

pytest.importorskip("cv2")


def _frame_with_dots(dots, size=(480, 640)):
    img = np.zeros((*size, 3), np.uint8)
    for x, y in dots:
        img[y - 1:y + 2, x - 1:x + 2] = 255  # 3x3 block centred on pixel (x, y)
    return Frame(img)


@pytest.fixture()
def detector(standins):
    spec = spec_for_file(str(standins["detector"]), "rtmdet_nano_person").with_input_size(
        (320, 320))
    return Detector(OrtEngine(standins["detector"]), spec, DetectorParams(score_threshold=0.3))


def test_detector_maps_boxes_to_frame_and_thresholds(detector):
    # 640x480 frame -> 320x320 letterbox at scale 0.5: input boxes x2 in the frame
    dets = detector(_frame_with_dots([]))
    np.testing.assert_allclose(dets.boxes, [[80, 120, 240, 480], [400, 40, 520, 200]], atol=1e-3)
    np.testing.assert_allclose(dets.scores, [0.9, 0.8])


@pytest.mark.parametrize("key, like", [("heatmap", "pp_tinypose_256x192"),
                                       ("heatmap_128", "pp_tinypose_128x96"),
                                       ("simcc", "rtmpose_s")])
def test_keypoints_land_on_the_bright_spot(standins, key, like):
    spec = spec_for_file(str(standins[key]), like)
    est = PoseEstimator(OrtEngine(standins[key]), spec, max_batch=2, refine="none")
    dots = [(100, 200), (400, 100), (300, 300)]
    boxes = np.array([[60, 120, 140, 300], [360, 20, 440, 180], [250, 220, 350, 420]], np.float32)
    times = StageTimes()
    poses = est(_frame_with_dots(dots), Detections(boxes, [0.9, 0.8, 0.7]), times)
    assert len(poses) == 3 and set(times) == {"crop", "pose_infer", "pose_post"}
    # tolerance: one heatmap cell (stride 4 in crop pixels) mapped back to the frame
    for i, (x, y) in enumerate(dots):
        crop_scale = (boxes[i, 3] - boxes[i, 1]) * 1.25 / spec.preprocess.input_size[1]
        tol = (2.5 if spec.decoder == "heatmap" else 1.0) * crop_scale + 0.5
        np.testing.assert_allclose(poses.keypoints[i], np.tile([[x + 0.5, y + 0.5]], (17, 1)),
                                   atol=tol)


def test_batched_equals_one_at_a_time(standins):
    spec = get_spec("pp_tinypose_256x192")
    engine = OrtEngine(standins["heatmap"])
    frame = _frame_with_dots([(50, 60), (200, 210), (500, 400), (600, 50), (320, 240)])
    boxes = np.array([[20, 20, 100, 120], [150, 150, 260, 300], [450, 300, 560, 470],
                      [560, 0, 640, 120], [280, 180, 360, 320]], np.float32)
    dets = Detections(boxes, np.linspace(0.9, 0.5, 5))
    batched = PoseEstimator(engine, spec, max_batch=3)(frame, dets)
    single = PoseEstimator(engine, spec, max_batch=1)(frame, dets)
    np.testing.assert_allclose(batched.keypoints, single.keypoints, atol=1e-3)
    np.testing.assert_allclose(batched.keypoint_scores, single.keypoint_scores, atol=1e-5)


def test_pipeline_frame_result_and_empty_frame(detector, standins):
    est = PoseEstimator(OrtEngine(standins["heatmap"]), get_spec("pp_tinypose_256x192"))
    with CpuPipeline(detector, est) as pipe:
        result = pipe(_frame_with_dots([(160, 300)]))
        assert len(result.poses) == 2 and result.times["total"] > 0
        assert list(result.times)[:3] == ["det_pre", "det_infer", "det_post"]
        empty = est(_frame_with_dots([]), Detections.empty())
        assert len(empty) == 0


def test_wrong_model_for_the_role_is_refused(standins):
    with pytest.raises(EngineError, match="does not look like"):
        PoseEstimator(OrtEngine(standins["detector"]), get_spec("pp_tinypose_256x192"))
    with pytest.raises(EngineError, match="does not look like"):
        Detector(OrtEngine(standins["heatmap"]), get_spec("rtmdet_nano_person"))
    with pytest.raises(ConfigError, match="not a keypoint model"):
        PoseEstimator(OrtEngine(standins["heatmap"]), get_spec("rtmdet_nano_person"))
    with pytest.raises(EngineError, match="expected 128x96"):
        PoseEstimator(OrtEngine(standins["heatmap"]), get_spec("pp_tinypose_128x96"))


def test_unknown_model_and_fixed_input_size():
    with pytest.raises(ConfigError, match="unknown model"):
        get_spec("posenet")
    with pytest.raises(ConfigError, match="fixed input"):
        get_spec("yolox_nano_416").with_input_size((320, 320))
    assert get_spec("rtmdet_nano_person").with_input_size((640, 640)).preprocess.input_size == \
        (640, 640)


# -- the pipeline protocol: one frame, given boxes, streams -------------------------------------
@pytest.fixture()
def pipe(detector, standins):
    est = PoseEstimator(OrtEngine(standins["heatmap"]), get_spec("pp_tinypose_256x192"))
    with CpuPipeline(detector, est) as p:
        yield p


def test_given_detections_replace_the_detector(pipe):
    frame = _frame_with_dots([(100, 200)])
    boxes = Detections(np.array([[60, 120, 140, 300]], np.float32), np.array([0.7], np.float32))
    result = pipe(frame, detections=boxes)
    assert len(result.poses) == 1 and "det_infer" not in result.times
    np.testing.assert_array_equal(result.poses.boxes, boxes.boxes)
    assert len(pipe(frame).poses) == 2  # the stand-in detector's two boxes


def test_one_frame_from_an_array_or_a_path(pipe, tmp_path):
    import cv2

    frame = _frame_with_dots([(100, 200)])
    cv2.imwrite(str(tmp_path / "f.png"), frame.image)
    by_array = pipe(frame.image).poses
    by_path = pipe(tmp_path / "f.png").poses
    np.testing.assert_array_equal(by_array.keypoints, by_path.keypoints)
    with pytest.raises(TypeError, match="BGR array or an image path"):
        pipe(42)


def test_stream_keeps_frame_order_and_equals_single_calls(pipe):
    frames = [Frame(_frame_with_dots([(100 + 40 * i, 200)]).image, i, float(i))
              for i in range(5)]
    streamed = list(pipe.stream(iter(frames)))
    assert [r.frame.index for r in streamed] == [0, 1, 2, 3, 4]
    for frame, got in zip(frames, streamed):
        np.testing.assert_array_equal(got.poses.keypoints, pipe(frame).poses.keypoints)


def test_stream_of_arrays_numbers_them_and_an_empty_source_yields_nothing(pipe):
    images = [_frame_with_dots([(100, 200)]).image] * 3
    assert [r.frame.index for r in pipe.stream(images)] == [0, 1, 2]
    assert list(pipe.stream([])) == []


def test_stream_delivers_every_frame_before_a_source_error(pipe):
    def failing():
        for _ in range(3):
            yield _frame_with_dots([(100, 200)])
        raise OSError("camera unplugged")

    got = []
    with pytest.raises(OSError, match="camera unplugged"):
        for result in pipe.stream(failing()):
            got.append(result)
    assert len(got) == 3
