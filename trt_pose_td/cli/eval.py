"""``trt-pose-td eval``: COCO keypoint AP (and person-box AP) of the pipeline, with a gate."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, cast

from ..assets import path_or_mirror
from ..benchmarks.evaluate import INSTANCE_SCORES, EvalOptions
from ..errors import ConfigError
from ..io.paths import check_output_dir
from .common import (
    add_pipeline_args,
    config_from_args,
    finite_float,
    format_table,
    nonneg_int,
    positive_int,
    stage_table,
    unit_float,
)

log = logging.getLogger(__name__)

DEV_IMAGES = "coco/val2017"
DEV_ANNOTATIONS = "coco/annotations/person_keypoints_val2017_dev.json"

EPILOG = """\
conventions: instance score = box score x mean score of the keypoints above
--visible-threshold (--instance-score); no OKS-NMS unless --oks-nms; no flip unless --flip.
--boxes gt uses every non-crowd ground-truth person with a labelled keypoint (score 1). A
detection FILE is COCO results JSON (category 1); --score-threshold applies to it (pass
--score-threshold 0 for the model-zoo protocol with HRNet's AP_H_56 boxes).

outputs: DIR/summary.json ({"keypoints": {"AP", "AP50", ...}, "bbox": {...}, "config": {...}}),
DIR/keypoint_results.json and DIR/detections.json (COCO results; the boxes used, reusable with
--boxes DIR/detections.json to re-run only the keypoint side).

gate: --compare BASELINE/summary.json --max-drop 1.0 exits 1 when keypoint AP is more than 1.0
AP points (0.010) below the baseline (same image set required); the verdict is written into
summary.json ("gate").

keypoint batch: --keypoint-batch N makes every keypoint-model run take at most N persons, so
accuracy can be compared at batch 1 and at batch N (a dynamic batch axis has broken FP16 / INT8
engines elsewhere). onnxruntime runs chunks of N; tensorrt runs chunks of its keypoint engine's
profile max, so that max must be <= N (refused otherwise; build one with trt-pose-td build --only
pose --pose-batch 1 --output DIR). summary.json records the batch used ("keypoint_batch").

examples:
  trt-pose-td eval                                   # dev split from $TRT_POSE_TD_MIRROR
  trt-pose-td eval --boxes gt -o out/eval-gt
  trt-pose-td eval --precision int8 -o out/eval-int8 \\
      --compare out/eval/summary.json --max-drop 1.0
  trt-pose-td eval --backend onnxruntime --keypoint-batch 1 -o out/eval-b1 \\
      --compare out/eval/summary.json --max-drop 0
  trt-pose-td eval --images val2017 --annotations person_keypoints_val2017.json \\
      --boxes COCO_val2017_detections_AP_H_56_person.json --score-threshold 0
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="COCO keypoint AP / person-box AP of the pipeline (pycocotools)",
        description="Run the real pipeline over a COCO-format image set and print pycocotools' "
                    "standard keypoint table (and the person-box table of the boxes used), "
                    "then write DIR/summary.json and the raw results.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", metavar="DIR", default=None,
                   help=f"image folder (default: $TRT_POSE_TD_MIRROR/{DEV_IMAGES})")
    p.add_argument("--annotations", metavar="FILE", default=None,
                   help=f"COCO person-keypoints JSON (default: $TRT_POSE_TD_MIRROR/"
                        f"{DEV_ANNOTATIONS})")
    p.add_argument("-o", "--output", metavar="DIR", default="out/eval",
                   help="where summary.json and the results go (default: %(default)s)")
    p.add_argument("--boxes", default="own", metavar="own|gt|FILE",
                   help="person boxes: the pipeline's detector (own), ground truth (gt) or a "
                        "COCO detection-results file (default: %(default)s)")
    p.add_argument("--instance-score", choices=INSTANCE_SCORES, default="box_kpt",
                   help="person score for ranking (default: %(default)s)")
    p.add_argument("--visible-threshold", type=unit_float, default=0.2,
                   help="keypoints above this score count as visible for box_kpt / kpt "
                        "(default: %(default)s)")
    p.add_argument("--oks-nms", type=unit_float, default=0.0, metavar="THR",
                   help="OKS-NMS between persons of an image at THR (0 = off; HRNet uses 0.9)")
    p.add_argument("--max-images", type=nonneg_int, default=0, metavar="N",
                   help="first N images by id (0 = all)")
    p.add_argument("--people-only", action="store_true",
                   help="only images with an annotated person (smoke tests)")
    p.add_argument("--compare", metavar="SUMMARY", default=None,
                   help="baseline summary.json: exit 1 when AP drops more than --max-drop")
    p.add_argument("--max-drop", type=finite_float, default=1.0, metavar="POINTS",
                   help="allowed drop in AP points, x100 (default: %(default)s = 0.010 AP)")
    p.add_argument("--compare-metrics", default="keypoints.AP", metavar="LIST",
                   help="comma-separated summary keys the gate checks (default: %(default)s; "
                        "e.g. keypoints.AP,bbox.AP)")
    p.add_argument("--keypoint-batch", type=positive_int, default=None, metavar="N",
                   help="at most N persons per keypoint-model run (onnxruntime: chunks of N; "
                        "tensorrt: the keypoint engine's profile max must be <= N); recorded "
                        "in summary.json")
    p.add_argument("--heatmap-offset", type=finite_float, default=None, metavar="CELLS",
                   help="override the keypoint model's heatmap cell -> pixel offset (registry "
                        "decoder option cell_offset: 0 = cell corner, 0.5 = cell centre)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_pipeline_args(p)
    p.set_defaults(func=run)


def keypoint_batch(pipeline: Any, limit: Optional[int]) -> int:
    """The most persons one keypoint-model run of ``pipeline`` takes; :class:`ConfigError` when
    that exceeds ``limit`` (--keypoint-batch: on TensorRT it is the engine profile's max)."""
    pose = getattr(pipeline, "inner", pipeline).pose
    batch = int(pose.max_batch)
    if limit is not None and batch > limit:
        raise ConfigError(
            f"--keypoint-batch {limit}: the keypoint engine {pose.engine.source} runs up to "
            f"{batch} persons per call (its profile max); build one whose max is {limit} into "
            f"another folder (trt-pose-td build --only pose --pose-batch 1,{limit},{limit} "
            "--output DIR), copy the detector engine there and pass --engine-dir DIR")
    return batch


def gate(summary: Dict[str, Any], args: argparse.Namespace, baseline: Dict[str, Any]
         ) -> Tuple[bool, List[str]]:
    """The --compare verdict, also recorded in ``summary["gate"]``."""
    from ..benchmarks.evaluate import compare

    metrics = [m.strip() for m in args.compare_metrics.split(",") if m.strip()]
    ok, lines = compare(summary, baseline, args.max_drop, metrics)
    summary["gate"] = {"baseline": str(args.compare), "max_drop": args.max_drop,
                       "metrics": metrics, "passed": ok, "lines": lines}
    return ok, lines


def run(args: argparse.Namespace) -> int:
    from ..api import open_pipeline
    from ..benchmarks.evaluate import evaluate, load_coco, read_summary, summary_doc, write_outputs
    from ..types import summarize_times

    cfg = config_from_args(args)
    if args.keypoint_batch is not None:
        cfg = replace(cfg, max_batch=args.keypoint_batch)
    images = path_or_mirror(args.images, DEV_IMAGES, "--images")
    annotations = path_or_mirror(args.annotations, DEV_ANNOTATIONS, "--annotations")
    if not images.is_dir():
        raise ConfigError(f"image folder not found: {images}")
    if args.boxes not in ("own", "gt") and not Path(args.boxes).is_file():
        raise ConfigError(f"--boxes must be own, gt or a detection file; {args.boxes} not found")
    opts = EvalOptions(args.boxes, args.instance_score, args.visible_threshold, args.oks_nms,
                       args.max_images, args.people_only)
    baseline = read_summary(Path(args.compare)) if args.compare else None
    coco = load_coco(annotations)
    check_output_dir(Path(args.output), "-o/--output")  # before the run, not after it
    log.info("config: %s; eval: %s", cfg.as_dict(), opts)
    # Any: eval reads internals (pose spec, engine files) both pipelines have, beyond the protocol
    with cast(Any, open_pipeline(cfg, progress=not args.quiet)) as pipeline:
        batch = keypoint_batch(pipeline, args.keypoint_batch)  # refused before the long run
        stages = getattr(pipeline, "inner", pipeline)  # under --track: the tracked pipeline
        if args.heatmap_offset is not None:
            spec = stages.pose.spec
            stages.pose.spec = replace(spec, decoder_options=dict(
                spec.decoder_options, cell_offset=args.heatmap_offset))
        result = evaluate(pipeline, images, coco, opts, cfg.score_threshold, args.quiet)
    timing = summarize_times(result.times)
    config = cfg.as_dict()
    config["cell_offset"] = stages.pose.spec.decoder_options.get("cell_offset", 0.5)
    config["detector_file"] = stages.detector.engine.source
    config["pose_file"] = stages.pose.engine.source
    config["keypoint_batch"] = batch
    summary = summary_doc(result, config, opts, annotations, timing)
    verdict, gate_error = None, None
    if baseline is not None:
        try:
            verdict = gate(summary, args, baseline)
        except ConfigError as exc:  # not comparable: keep this run's results, then say so
            gate_error = exc
    path = write_outputs(Path(args.output), summary, result)
    boxes = {"own": f"own boxes ({cfg.detector})", "gt": "ground-truth boxes"}.get(
        args.boxes, f"boxes from {args.boxes}")
    print(f"keypoints, {boxes}, {result.images} images, {result.persons} persons "
          f"({cfg.precision or 'default precision'}, {cfg.backend}, keypoint batch <= {batch}):")
    print(result.tables["keypoints"], end="")
    if "bbox" in result.tables:
        print(f"person boxes ({boxes}):")
        print(result.tables["bbox"], end="")
    print(stage_table(timing, "time per image (ms)"))
    rows = [("keypoints", result.keypoints["AP"], result.keypoints["AP50"],
             result.keypoints["AR"])]
    if result.bbox:
        rows.append(("bbox", result.bbox["AP"], result.bbox["AP50"], result.bbox["AR100"]))
    print(format_table(("", "AP", "AP50", "AR"), [(n, f"{a:.4f}", f"{b:.4f}", f"{c:.4f}")
                                                   for n, a, b, c in rows]))
    print(f"wrote {path}")
    if gate_error is not None:
        raise gate_error
    if verdict is not None:
        ok, lines = verdict
        print(f"gate against {args.compare}:")
        print("\n".join(lines))
        if not ok:
            print(f"trt-pose-td eval: AP fell more than {args.max_drop} points below the "
                  "baseline", file=sys.stderr)
            return 1
    return 0
