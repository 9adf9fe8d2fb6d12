import json

import numpy as np
import pytest

from trt_pose_td.errors import CalibrationError
from trt_pose_td.models import get_spec
from trt_pose_td.quantize import calibration

cv2 = pytest.importorskip("cv2")


@pytest.fixture()
def calib_set(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.jpg"), np.full((120, 160, 3), 60 * i, np.uint8))
    ann = {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(3)],
           "annotations": [{"image_id": 0, "bbox": [10, 10, 40, 80], "category_id": 1,
                            "iscrowd": 0},
                           {"image_id": 2, "bbox": [50, 5, 30, 100], "category_id": 1,
                            "iscrowd": 0},
                           {"image_id": 2, "bbox": [0, 0, 5, 5], "category_id": 1,
                            "iscrowd": 0}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    return folder, tmp_path / "ann.json"


def test_detector_and_pose_tensors_are_run_time_inputs(calib_set, tmp_path):
    folder, ann = calib_set
    det = get_spec("rtmdet_nano_person").with_input_size((320, 320))
    data, path = calibration.load_or_make(det, "ab" * 32, folder, cache_dir=tmp_path / "c")
    assert data.shape == (3, 3, 320, 320) and data.dtype == np.float32
    # letterbox: 160x120 -> 320x240, rows below 240 are padding (114, normalised)
    pad = (114 - 103.53) / 57.375
    np.testing.assert_allclose(data[0, 0, 300, 10], pad, atol=1e-5)
    again, path2 = calibration.load_or_make(det, "ab" * 32, folder, cache_dir=tmp_path / "c")
    assert path2 == path and np.array_equal(again, data)
    pose = get_spec("pp_tinypose_256x192")
    crops, _ = calibration.load_or_make(pose, "cd" * 32, folder, ann, cache_dir=tmp_path / "c")
    assert crops.shape == (2, 3, 256, 192)  # the 5x5 box is too small to calibrate on


def test_bad_calibration_sets_are_refused(tmp_path, calib_set):
    folder, ann = calib_set
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="holds no images"):
        calibration.load_or_make(get_spec("rtmdet_nano_person"), "0" * 64, empty)
    with pytest.raises(CalibrationError, match="not found"):
        calibration.calibration_images(tmp_path / "missing")
    with pytest.raises(CalibrationError, match="needs the person annotations"):
        calibration.load_or_make(get_spec("pp_tinypose_256x192"), "0" * 64, folder)
    with pytest.raises(CalibrationError, match="empty"):
        next(calibration.batches(np.zeros((0, 3, 4, 4), np.float32), 8))
    sizes = [len(b) for b in calibration.batches(np.zeros((10, 3, 4, 4), np.float32), 4)]
    assert sizes == [4, 4, 2]


def test_committed_manifest_matches_the_mirror(shared):
    from pathlib import Path

    committed = json.loads((Path(__file__).parents[1] / "calib" /
                            "coco_train2017_calib.json").read_text())
    folder = shared / "coco" / "calib_train2017"
    made = calibration.manifest(folder, folder / "person_keypoints_train2017_calib_subset.json",
                                committed["how_chosen"])
    assert made == committed
    assert sum(im["persons"] for im in made["images"]) == 214  # keypoint calibration crops
