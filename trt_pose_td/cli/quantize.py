"""``trt-pose-td quantize``: INT8 Q/DQ ONNX models calibrated on COCO train2017 images."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from ..assets import path_or_mirror
from ..errors import ConfigError
from ..io.paths import check_output_file
from ..quantize import METHODS, OP_SETS
from .common import format_table, nonneg_int, parse_size

CALIB_IMAGES = "coco/calib_train2017"
CALIB_ANNOTATIONS = "coco/calib_train2017/person_keypoints_train2017_calib_subset.json"

EPILOG = """\
Writes <cache>/quantized/<model>.int8-<method>.onnx (cache: $TRT_POSE_TD_CACHE, else
~/.cache/trt_pose_td), which `--precision int8` on run/eval/bench picks up for registry models
(the method each model measured best with unless --method is given). Calibration tensors are
made by the run-time preprocessing (letterboxed frames for detectors, person crops from the
annotation boxes for keypoint models) and cached in <cache>/calib/ under a key of model sha256,
preprocessing and image set (calib/README.md). Calibrate on train images, never on the set you
evaluate on.

examples:
  trt-pose-td quantize                                 # default detector + keypoint model
  trt-pose-td quantize pp_tinypose_256x192 --method minmax -o tinypose.int8.onnx
  trt-pose-td quantize rtmdet_nano_person_raw --keep-float @first-conv
  trt-pose-td eval --precision int8 --compare out/eval/summary.json --max-drop 1.0
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize", help="make INT8 Q/DQ ONNX models (TensorRT explicit quantization; runs on "
                         "ONNX Runtime CPU)",
        description="Calibrate registry models on COCO train2017 images and write Q/DQ ONNX "
                    "models: symmetric int8 activations and per-channel int8 weights on every "
                    "Conv, opset >= 13, biases in float.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", default=None, metavar="MODEL",
                   help="registry models (default: the default detector and keypoint model)")
    p.add_argument("--method", choices=METHODS, default=None,
                   help="activation calibration (default: each model's measured best)")
    p.add_argument("--calib-images", metavar="DIR", default=None,
                   help=f"calibration images (default: $TRT_POSE_TD_MIRROR/{CALIB_IMAGES})")
    p.add_argument("--calib-annotations", metavar="FILE", default=None,
                   help="COCO person annotations of those images, for keypoint-model crops "
                        f"(default: $TRT_POSE_TD_MIRROR/{CALIB_ANNOTATIONS})")
    p.add_argument("--det-size", type=parse_size, default=None, metavar="N|WxH",
                   help="detector input size to calibrate at (default: the model's own)")
    p.add_argument("--keep-float", default=None, metavar="NODES",
                   help="comma-separated node names kept in float ('@first-conv', "
                        "'@last-conv' allowed; default: the measured choice per model; '' = "
                        "none)")
    p.add_argument("--ops", choices=tuple(OP_SETS), default="conv",
                   help="which operators get Q/DQ inputs (default: %(default)s)")
    p.add_argument("--per-tensor", action="store_true",
                   help="per-tensor instead of per-channel weight scales")
    p.add_argument("-o", "--output", metavar="PATH", default=None,
                   help="output file (one model only; default: the cache path above)")
    p.add_argument("--sensitivity", type=nonneg_int, default=0, metavar="N",
                   help="after quantizing, rank the Convs by the output error each causes "
                        "alone in int8, on N calibration tensors, and write the ranking to "
                        "<output>.sensitivity.json (how the default --keep-float was chosen; "
                        "slow: one model run per Conv)")
    p.add_argument("--manifest", metavar="FILE", default=None,
                   help="also write the calibration set's manifest (ids, sha256, persons) to "
                        "FILE, as calib/coco_train2017_calib.json was made")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


HOW_CHOSEN = ("the data mirror's coco/calib_train2017: COCO train2017 images (never val) taken "
              "whole from two public COCO subsets (COCO-MINI, tiny_coco), with their person "
              "keypoint annotations; images with and without people are both kept, so the "
              "detector also calibrates on background; keypoint crops come from every "
              "non-crowd person box of at least min_person_side pixels")


def _write_manifest(path: Path, images: Path, annotations: Optional[Path]) -> None:
    import json

    from ..quantize.calibration import manifest

    doc = manifest(images, annotations, HOW_CHOSEN)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path} ({len(doc['images'])} images)")


def _write_sensitivity(name: str, qdq: Path, images: Path, annotations: Optional[Path],
                       samples: int, size: Optional[tuple], quiet: bool) -> None:
    import json
    import tempfile

    import numpy as np

    from ..assets import model_path, sha256_file
    from ..models import get_spec
    from ..quantize import conv_sensitivity, pick_float_convs, prepared_float_model
    from ..quantize.calibration import load_or_make

    spec = get_spec(name).with_input_size(size)
    onnx_path = model_path(spec, not quiet)
    data, _ = load_or_make(spec, sha256_file(onnx_path), images, annotations, quiet=quiet)
    pick = np.sort(np.random.default_rng(0).choice(len(data), min(samples, len(data)),
                                                   replace=False))
    with tempfile.TemporaryDirectory(prefix="sens-") as tmp:
        ref = prepared_float_model(onnx_path, Path(tmp))
        ranking = conv_sensitivity(qdq, ref, spec.input_name, data[pick], quiet)
        _, curve = pick_float_convs(qdq, ref, spec.input_name, data[pick], ranking, 0.0)
    out = Path(str(qdq) + ".sensitivity.json")
    out.write_text(json.dumps({"ranking": ranking, "error_with_k_worst_float": curve},
                              indent=1))
    print(format_table(("conv", "error alone in int8"), ranking[:12],
                       f"{name}: most sensitive convs (all: {out})"))
    print(format_table(("k worst in float", "model error"), curve))


def _check_inputs(args: argparse.Namespace, images: Path, annotations: Optional[Path]) -> None:
    """Calibration data and output paths, checked before any model is calibrated."""
    from ..coco_json import read_annotations
    from ..quantize.calibration import calibration_images

    calibration_images(images)  # missing folder / no images: one line
    if annotations is not None:
        read_annotations(annotations, "--calib-annotations", keypoints=False)
    for value, flag in ((args.output, "--output"), (args.manifest, "--manifest")):
        if value:
            check_output_file(Path(value), flag)


def run(args: argparse.Namespace) -> int:
    from ..models import DEFAULT_DETECTOR, DEFAULT_POSE, get_spec
    from ..quantize import int8_source, qdq_summary, quantize_registry_model

    models = list(dict.fromkeys(int8_source(m) for m in (args.models or
                                                        [DEFAULT_DETECTOR, DEFAULT_POSE])))
    if args.output and len(models) != 1:
        raise ConfigError("--output names one file: give exactly one model")
    specs = [get_spec(m) for m in models]
    images = path_or_mirror(args.calib_images, CALIB_IMAGES, "--calib-images")
    annotations = None
    if any(s.task == "pose" for s in specs):
        annotations = path_or_mirror(args.calib_annotations, CALIB_ANNOTATIONS,
                                   "--calib-annotations")
    _check_inputs(args, images, annotations)
    keep = None
    if args.keep_float is not None:
        keep = [n.strip() for n in args.keep_float.split(",") if n.strip()]
    if args.manifest:
        _write_manifest(Path(args.manifest), images, annotations)
    rows = []
    for spec in specs:
        path = quantize_registry_model(
            spec.name, images, annotations, args.method,
            Path(args.output) if args.output else None,
            args.det_size if spec.task == "detector" else None, keep, not args.per_tensor,
            args.ops, args.quiet)
        if args.sensitivity:
            _write_sensitivity(spec.name, path, images, annotations, args.sensitivity,
                               args.det_size if spec.task == "detector" else None, args.quiet)
        info = qdq_summary(path)
        meta = info["metadata"]
        rows.append((spec.name, meta["trt_pose_td.method"],
                     f"{info['quantized_convs']}/{info['convs']}",
                     meta["trt_pose_td.quantize.calibration_samples"],
                     len([n for n in meta["trt_pose_td.excluded"].split(",") if n]), str(path)))
    print(format_table(("model", "method", "int8 convs", "calib tensors", "float convs", "wrote"),
                       rows))
    print("(the float convs are listed in each file's ONNX metadata: trt_pose_td.excluded)")
    return 0
