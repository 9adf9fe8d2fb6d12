"""The real pretrained models on real images: the packaged default pair on the packaged photo
(always), and more models and COCO images from the data mirror (skipped without it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trt_pose_td.api import open_pipeline
from trt_pose_td.config import PipelineConfig
from trt_pose_td.io.sources import read_image
from trt_pose_td.models import REGISTRY
from trt_pose_td.oks import oks
from trt_pose_td.types import Frame

pytest.importorskip("onnxruntime")
pytest.importorskip("cv2")

#: Dev-split images with several large, well-labelled persons.
DEV_IMAGES = (1000, 233771, 217285, 8690, 329323, 196141)


@pytest.fixture(scope="module")
def default_pipeline():
    with open_pipeline(PipelineConfig()) as p:
        yield p


@pytest.fixture(scope="module")
def class_photo(shared):
    return Frame(read_image(str(shared / "coco/val2017/000000002299.jpg")), 0, 0.0, "class")


@pytest.fixture(scope="module")
def group_photo(sample_photo):
    return Frame(read_image(str(sample_photo)), 0, 0.0, "sample")


def test_class_photo_yields_a_crowd(default_pipeline, class_photo):
    assert len(default_pipeline(class_photo).poses) >= 40


def test_sample_photo_yields_the_group(default_pipeline, group_photo):
    """12 persons are annotated in COCO for this photo (about 14 visible): the packaged pair
    finds at least 10 with a confident box, keypoints on their bodies, heads above ankles."""
    result = default_pipeline(group_photo)
    poses = result.poses[result.poses.box_scores >= 0.3]
    assert len(poses) >= 10, len(poses)
    assert poses.keypoints.shape == (len(poses), 17, 2)
    h, w = group_photo.image.shape[:2]
    # keypoints of confident persons fall inside (or just outside) their boxes, in the frame
    inside = ((poses.keypoints[..., 0] >= poses.boxes[:, None, 0] - 0.25 * w) &
              (poses.keypoints[..., 0] <= poses.boxes[:, None, 2] + 0.25 * w))
    assert inside.mean() > 0.95
    assert np.all((poses.keypoints >= -w) & (poses.keypoints <= 2 * w))
    # heads above ankles for the upright children
    nose_y, ankle_y = poses.keypoints[:, 0, 1], poses.keypoints[:, 15:17, 1].mean(1)
    assert np.mean(nose_y < ankle_y) > 0.9


def test_ground_truth_persons_reach_oks_half(default_pipeline, shared):
    ann = json.loads((shared / "coco/annotations/person_keypoints_val2017_dev.json").read_text())
    files = {im["id"]: im["file_name"] for im in ann["images"]}
    matched, total = 0, 0
    for image_id in DEV_IMAGES:
        gts = [a for a in ann["annotations"] if a["image_id"] == image_id and
               a["num_keypoints"] >= 10 and a["area"] > 96 * 96 and not a["iscrowd"]]
        frame = Frame(read_image(str(shared / "coco/val2017" / files[image_id])))
        poses = default_pipeline(frame).poses
        gt = np.array([a["keypoints"] for a in gts], np.float64).reshape(-1, 17, 3)
        best = oks(poses.keypoints, gt, np.array([a["area"] for a in gts])).max(axis=0) \
            if len(poses) else np.zeros(len(gts))
        matched += int((best >= 0.5).sum())
        total += len(gts)
    assert total >= 12
    assert matched / total >= 0.75, f"{matched}/{total} persons reach OKS 0.5"


@pytest.mark.parametrize("detector", [n for n, s in REGISTRY.items()
                                      if s.task == "detector" and s.sha256])
def test_every_registered_detector_finds_the_group(group_photo, detector):
    """The packaged detector always; the others need the mirror (they do not ship)."""
    from tests.conftest import mirror_path
    from trt_pose_td.assets import model_asset

    if model_asset(REGISTRY[detector]).packaged_path() is None and mirror_path() is None:
        pytest.skip(f"{detector} is not packaged and there is no data mirror")
    with open_pipeline(PipelineConfig(detector=detector)) as p:
        result = p(group_photo)
    confident = int((result.poses.box_scores >= 0.3).sum())
    assert confident >= 8, f"{detector}: {confident} confident persons"


def test_nms_in_graph_and_raw_head_agree(shared, class_photo):
    """Same network, NMS inside the graph vs our decoder + NMS: same boxes."""
    boxes = {}
    for name in ("rtmdet_nano_person", "rtmdet_nano_person_raw"):
        with open_pipeline(PipelineConfig(detector=name)) as p:
            boxes[name] = p.detector(class_photo).boxes
    a, b = boxes["rtmdet_nano_person"], boxes["rtmdet_nano_person_raw"]
    assert abs(len(a) - len(b)) <= 2
    from trt_pose_td.geometry import box_iou

    assert np.median(box_iou(a, b).max(axis=1)) > 0.95


def test_pose_guided_recrop_frames_people_better(shared):
    """The second pass on keypoint boxes raises the OKS of ground-truth persons on average."""
    ann = json.loads((shared / "coco/annotations/person_keypoints_val2017_dev.json").read_text())
    files = {im["id"]: im["file_name"] for im in ann["images"]}
    best = {}
    for recrop in (False, True):
        with open_pipeline(PipelineConfig(recrop=recrop)) as p:
            values = []
            for image_id in DEV_IMAGES:
                gts = [a for a in ann["annotations"] if a["image_id"] == image_id and
                       a["num_keypoints"] >= 10 and not a["iscrowd"]]
                poses = p(Frame(read_image(str(shared / "coco/val2017" / files[image_id])))).poses
                gt = np.array([a["keypoints"] for a in gts], np.float64).reshape(-1, 17, 3)
                values.extend(oks(poses.keypoints, gt, np.array([a["area"] for a in gts]))
                              .max(axis=0))
            best[recrop] = float(np.mean(values))
    assert best[True] > best[False] + 0.005, best
