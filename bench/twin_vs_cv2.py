"""Measure: the GPU crop kernel's sampling (its numpy twin) vs cv2 in the CPU pipeline.

Runs the default CPU pipeline twice over a folder of images, once with ``--preprocessor cv2`` and
once with ``twin``, and reports (1) the max abs difference of the network inputs (detector
letterbox and person crops) and (2) the keypoint distance between the two runs for persons whose
boxes match (IoU >= 0.9). Usage:

    python bench/twin_vs_cv2.py [IMAGES_DIR] [--limit N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trt_pose_td import geometry
from trt_pose_td.api import open_pipeline
from trt_pose_td.benchmarks.evaluate import instance_scores
from trt_pose_td.config import PipelineConfig
from trt_pose_td.io.sources import read_image
from trt_pose_td.pipelines.cpu import CpuPipeline
from trt_pose_td.preprocess import warp_with
from trt_pose_td.types import Frame


def input_difference(pipe: CpuPipeline, twin: CpuPipeline, frame: Frame) -> tuple:
    """Max abs difference of detector input and of all crops, normalised units and gray levels."""
    det, pose = pipe.detector, pipe.pose
    m = det.input_affine(frame)
    a = warp_with(det.pre, frame.image, m[None], det.spec.preprocess)
    b = warp_with(twin.detector.pre, frame.image, m[None], det.spec.preprocess)
    out = [float(np.abs(a - b).max()),
           float((np.abs(a - b) * np.float32(det.spec.preprocess.std).reshape(1, 3, 1, 1)).max())]
    boxes = pipe.detector(frame).boxes
    if len(boxes):
        aff = pose.crop_affines(boxes)
        a = warp_with(pose.pre, frame.image, aff, pose.spec.preprocess)
        b = warp_with(twin.pose.pre, frame.image, aff, pose.spec.preprocess)
        std = np.float32(pose.spec.preprocess.std).reshape(1, 3, 1, 1)
        out += [float(np.abs(a - b).max()), float((np.abs(a - b) * std).max())]
    return tuple(out)


def _image_ids(images: Path, annotations: str) -> dict:
    if not annotations or not Path(annotations).is_file():
        return {}
    doc = json.loads(Path(annotations).read_text())
    return {im["file_name"]: im["id"] for im in doc["images"]}


def _coco_results(image_id: int, poses) -> list:
    """COCO keypoint results; keypoints shifted by -0.5 to COCO's pixel-centre convention."""
    out = []
    scores = instance_scores(poses)  # box score x mean visible-keypoint score
    for i in range(len(poses)):
        kp = np.concatenate([poses.keypoints[i] - 0.5, poses.keypoint_scores[i, :, None]], 1)
        out.append({"image_id": image_id, "category_id": 1, "score": float(scores[i]),
                    "keypoints": [round(float(v), 3) for v in kp.reshape(-1)]})
    return out


def _coco_ap(annotations: str, results: list, image_ids: list) -> dict:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(annotations)
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1]), "AP75": float(ev.stats[2]),
            "AR": float(ev.stats[5])}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="?", default=str(Path(__file__).resolve().parents[2] /
                                                     "shared/coco/val2017"))
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--annotations", default=str(Path(__file__).resolve().parents[2] /
                    "shared/coco/annotations/person_keypoints_val2017_dev.json"),
                    help="COCO keypoint ground truth for the AP of both runs ('' = skip)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    paths = sorted(Path(args.images).glob("*.jpg"))[: args.limit or None]
    cv = open_pipeline(PipelineConfig(preprocessor="cv2"))
    tw = open_pipeline(PipelineConfig(preprocessor="twin"))
    dists, inputs, persons, unmatched, score_d, confident = [], [], 0, 0, [], []
    coco: dict = {"cv2": [], "twin": []}
    ids = _image_ids(Path(args.images), args.annotations)
    for path in paths:
        frame = Frame(read_image(str(path)), 0, 0.0, path.name)
        inputs.append(input_difference(cv, tw, frame))
        a, b = cv(frame).poses, tw(frame).poses
        if path.name in ids:
            coco["cv2"] += _coco_results(ids[path.name], a)
            coco["twin"] += _coco_results(ids[path.name], b)
        persons += len(a)
        if len(a) == 0 or len(b) == 0:
            unmatched += abs(len(a) - len(b))
            continue
        iou = geometry.box_iou(a.boxes, b.boxes)
        for i in range(len(a)):
            j = int(iou[i].argmax())
            if iou[i, j] < 0.9:
                unmatched += 1
                continue
            dists.append(np.linalg.norm(a.keypoints[i] - b.keypoints[j], axis=1))
            score_d.append(np.abs(a.keypoint_scores[i] - b.keypoint_scores[j]))
            confident.append(a.keypoint_scores[i] >= 0.3)
    d = np.concatenate(dists) if dists else np.zeros(0)
    conf = np.concatenate(confident) if confident else np.zeros(0, bool)
    dc = d[conf]
    det_in = max(x[1] for x in inputs)
    crop_in = max((x[3] for x in inputs if len(x) > 2), default=0.0)
    doc = {"images": len(paths), "persons_cv2": persons, "matched_persons": len(dists),
           "unmatched": unmatched, "keypoints": int(d.size),
           "kpt_dist_px": {"median": float(np.median(d)), "p90": float(np.percentile(d, 90)),
                           "p99": float(np.percentile(d, 99)), "max": float(d.max()),
                           "mean": float(d.mean()), "exactly_equal": float(np.mean(d == 0)),
                           "over_1px": float(np.mean(d > 1))},
           "kpt_dist_px_score_ge_0.3": {"n": int(dc.size), "median": float(np.median(dc)),
                                        "p90": float(np.percentile(dc, 90)),
                                        "p99": float(np.percentile(dc, 99)),
                                        "max": float(dc.max()), "over_1px": float(np.mean(dc > 1))},
           "kpt_score_absdiff_max": float(np.concatenate(score_d).max()) if score_d else 0.0,
           "input_maxabs_levels": {"detector": det_in, "crops": crop_in},
           "input_maxabs_normalised": {"detector": max(x[0] for x in inputs),
                                       "crops": max((x[2] for x in inputs if len(x) > 2),
                                                    default=0.0)}}
    if ids:
        doc["keypoint_AP"] = {k: _coco_ap(args.annotations, v, sorted(set(ids.values())))
                              for k, v in coco.items()}
    print(json.dumps(doc, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
