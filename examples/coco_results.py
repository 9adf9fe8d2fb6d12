"""Export poses as a COCO keypoint results file (what pycocotools' ``COCO.loadRes`` and
``COCOeval`` read): one entry per person, 17 (x, y, score) triplets flattened.

    python examples/coco_results.py val2017/000000001000.jpg val2017/000000000139.jpg -o res.json

``image_id`` is the number in the file name (COCO's ``000000001000.jpg`` -> 1000), else the
frame's index in the input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import trt_pose_td as tpt

PERSON = 1  # COCO category id


def image_id(result: tpt.FrameResult) -> int:
    stem = Path(result.frame.source).stem
    return int(stem) if stem.isdigit() else result.frame.index


def coco_results(result: tpt.FrameResult) -> List[Dict[str, Any]]:
    """COCO results of one frame; score = box score x mean keypoint score."""
    xys = result.poses.to_array()  # (N, 17, 3) float32: x, y (pixels), score
    return [{"image_id": image_id(result), "category_id": PERSON,
             "keypoints": [round(float(v), 2) for v in person.reshape(-1)],
             "score": round(float(box_score * person[:, 2].mean()), 5)}
            for person, box_score in zip(xys, result.poses.box_scores)]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write COCO keypoint results JSON.")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("-o", "--output", default="results.json", help="JSON file to write")
    args = parser.parse_args(argv)
    results: List[Dict[str, Any]] = []
    try:
        with tpt.open_pipeline() as pipeline:
            for result in pipeline.stream(args.images):
                results += coco_results(result)
    except tpt.TrtPoseError as exc:
        print(f"coco_results: {exc}", file=sys.stderr)
        return 2
    Path(args.output).write_text(json.dumps(results))
    print(f"{len(results)} persons from {len(args.images)} images -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
