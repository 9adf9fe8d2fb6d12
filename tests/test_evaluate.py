"""COCO evaluation with known answers (synthetic ground truth), rescoring, OKS-NMS and the gate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trt_pose_td.benchmarks import evaluate as ev
from trt_pose_td.errors import ConfigError
from trt_pose_td.types import Detections, Poses

pytest.importorskip("pycocotools")

KEYPOINT_NAMES = [f"k{i}" for i in range(17)]


def _person(rng, image_id, ann_id, x, y, w, h):
    kx = rng.uniform(x + 0.1 * w, x + 0.9 * w, 17)
    ky = rng.uniform(y + 0.1 * h, y + 0.9 * h, 17)
    kps = np.stack([kx, ky, np.full(17, 2.0)], 1).reshape(-1).round(1).tolist()
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "bbox": [x, y, w, h], "area": w * h * 0.6, "num_keypoints": 17, "keypoints": kps}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """3 images, 5 persons with all 17 keypoints labelled, one crowd region, one empty image."""
    rng = np.random.default_rng(0)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in (1, 2, 3)]
    anns = [_person(rng, 1, 1, 50, 40, 120, 300), _person(rng, 1, 2, 300, 60, 100, 260),
            _person(rng, 2, 3, 20, 20, 200, 400), _person(rng, 2, 4, 400, 100, 80, 200),
            _person(rng, 2, 5, 250, 150, 90, 220)]
    anns.append({"id": 6, "image_id": 1, "category_id": 1, "iscrowd": 1,
                 "bbox": [500, 300, 100, 100], "area": 5000.0, "num_keypoints": 0,
                 "keypoints": [0] * 51, "segmentation": {"counts": [0], "size": [480, 640]}})
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": 1, "name": "person", "keypoints": KEYPOINT_NAMES,
                           "skeleton": []}]}
    path = tmp_path_factory.mktemp("coco") / "person_keypoints.json"
    path.write_text(json.dumps(doc))
    return path, ev.load_coco(path), anns[:5]


def _results(anns, noise=0.0, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for a in anns:
        kp = np.asarray(a["keypoints"], np.float64).reshape(17, 3).copy()
        kp[:, :2] += rng.normal(0, noise, (17, 2))
        kp[:, 2] = 0.9
        out.append({"image_id": a["image_id"], "category_id": 1,
                    "keypoints": kp.reshape(-1).tolist(), "score": 0.9})
    return out


def test_perfect_predictions_score_ap_one(synthetic):
    _, coco, anns = synthetic
    stats, table = ev.coco_metrics(coco, _results(anns), "keypoints", [1, 2, 3])
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)
    assert "Average Precision" in table and "maxDets= 20" in table


def test_perturbed_predictions_score_lower_and_monotonically(synthetic):
    _, coco, anns = synthetic
    aps = [ev.coco_metrics(coco, _results(anns, n), "keypoints", [1, 2, 3])[0]["AP"]
           for n in (0.0, 4.0, 12.0)]
    assert aps[0] > aps[1] > aps[2]
    missing = ev.coco_metrics(coco, _results(anns[:2]), "keypoints", [1, 2, 3])[0]
    assert missing["AP"] < 0.5 and missing["AR"] == pytest.approx(0.4)


def test_empty_predictions_score_zero_without_crashing(synthetic):
    _, coco, _ = synthetic
    stats, table = ev.coco_metrics(coco, [], "keypoints", [1, 2, 3])
    assert stats["AP"] == 0.0 and set(stats) == set(ev.KEYPOINT_METRICS)
    boxes, _ = ev.coco_metrics(coco, [], "bbox", [1, 2, 3])
    assert boxes["AP"] == 0.0 and set(boxes) == set(ev.BBOX_METRICS)
    assert "every metric is 0" in table


def test_box_ap_of_ground_truth_boxes_is_one(synthetic):
    _, coco, _ = synthetic
    dets = [ev.box_results(i, ev.gt_detections(coco, i)) for i in (1, 2, 3)]
    assert len(dets[2]) == 0  # image 3 has no person; the crowd region is not a gt box
    stats, _ = ev.coco_metrics(coco, sum(dets, []), "bbox", [1, 2, 3])
    assert stats["AP"] == pytest.approx(1.0)


def test_box_file_filters_category_images_and_score(synthetic, tmp_path):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 20], "score": 0.5},
        {"image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 20], "score": 0.9},
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 20], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 20], "score": 0.1},
        {"image_id": 9, "category_id": 1, "bbox": [0, 0, 10, 20], "score": 0.9}]))
    dets = ev.load_box_file(path, [1, 2, 3], score_threshold=0.2)
    assert set(dets) == {1}
    np.testing.assert_allclose(dets[1].boxes, [[5, 5, 15, 25], [0, 0, 10, 20]])
    np.testing.assert_allclose(dets[1].scores, [0.9, 0.5])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a COCO detection-results list"):
        ev.load_box_file(tmp_path / "bad.json", [1])


def _poses(n=3):
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 100, (n, 17, 2)).astype(np.float32)
    ks = np.full((n, 17), 0.8, np.float32)
    ks[0, :10] = 0.1                              # person 0: 7 visible keypoints at 0.8
    boxes = np.tile(np.array([[0, 0, 100, 100]], np.float32), (n, 1))
    return Poses(kp, ks, boxes, np.array([0.5, 1.0, 0.9], np.float32)[:n])


def test_instance_scores():
    p = _poses()
    np.testing.assert_allclose(ev.instance_scores(p, "box"), [0.5, 1.0, 0.9])
    np.testing.assert_allclose(ev.instance_scores(p, "kpt"), [0.8, 0.8, 0.8], rtol=1e-6)
    np.testing.assert_allclose(ev.instance_scores(p, "box_kpt"), [0.4, 0.8, 0.72], rtol=1e-6)
    with pytest.raises(ConfigError, match="instance score"):
        ev.EvalOptions(instance_score="max")


def test_oks_nms_drops_duplicates_keeps_distinct_people():
    p = _poses()
    kp = p.keypoints.copy()
    kp[2] = kp[1] + 0.5                            # person 2 duplicates person 1
    scores = np.array([0.5, 1.0, 0.9], np.float32)
    keep = ev.oks_nms(kp, scores, p.boxes, 0.9)
    assert keep.tolist() == [1, 0]
    results = ev.pose_results(7, Poses(kp, p.keypoint_scores, p.boxes, p.box_scores),
                              ev.EvalOptions(oks_nms=0.9))
    assert len(results) == 2 and all(len(r["keypoints"]) == 51 for r in results)
    assert len(ev.pose_results(7, Poses(kp, p.keypoint_scores, p.boxes, p.box_scores),
                               ev.EvalOptions())) == 3


def test_compare_gate_passes_within_budget_and_fails_beyond():
    base = {"keypoints": {"AP": 0.650}, "bbox": {"AP": 0.40}, "annotations": "/a/dev.json",
            "images": 225}
    cur = dict(base, keypoints={"AP": 0.642}, bbox={"AP": 0.30})
    ok, lines = ev.compare(cur, base, 1.0)
    assert ok and "-0.80 AP points" in lines[0]
    ok, lines = ev.compare(cur, base, 0.5)
    assert not ok and lines[0].startswith("FAIL")
    ok, lines = ev.compare(cur, base, 1.0, ("keypoints.AP", "bbox.AP", "bbox.AR"))
    assert not ok and "FAIL bbox.AP" in lines[1] and "skipped" in lines[2]
    with pytest.raises(ConfigError, match="not comparable"):
        ev.compare(dict(cur, images=10), base, 1.0)


def test_summary_and_outputs_round_trip(tmp_path):
    result = ev.EvalResult({"AP": 0.5}, None, {"keypoints": ""}, [{"image_id": 1}], [], 3, 1)
    doc = ev.summary_doc(result, {"detector": "d"}, ev.EvalOptions(), tmp_path / "a.json", {})
    path = ev.write_outputs(tmp_path / "out", doc, result)
    back = ev.read_summary(path)
    assert back["keypoints"]["AP"] == 0.5 and back["config"]["eval"]["boxes"] == "own"
    assert json.loads((tmp_path / "out" / "keypoint_results.json").read_text()) == [
        {"image_id": 1}]
    (tmp_path / "x.json").write_text("[]")
    with pytest.raises(ConfigError, match="not an eval summary"):
        ev.read_summary(tmp_path / "x.json")


def test_gt_detections_skip_persons_without_keypoints(synthetic):
    _, coco, _ = synthetic
    d = ev.gt_detections(coco, 1)
    assert isinstance(d, Detections) and len(d) == 2
    np.testing.assert_allclose(d.boxes[0], [50, 40, 170, 340])
