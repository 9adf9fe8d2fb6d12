"""Options shared by run / bench / eval / serve, and table printing."""

from __future__ import annotations

import argparse
import math
from dataclasses import fields
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .. import config_checks
from ..config import BACKENDS, PREPROCESSORS, PipelineConfig
from ..decode import REFINEMENTS
from ..engine_meta import INT8_MODES, PRECISIONS
from ..models import DEFAULT_DETECTOR, DEFAULT_POSE, REGISTRY


def parse_size(text: str) -> Tuple[int, int]:
    """``320`` -> (320, 320); ``416x320`` -> (416, 320) as (W, H)."""
    try:
        return config_checks.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _number(text: str, kind: type) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, not {text!r}")
    return value


def unit_float(text: str) -> float:
    """A score threshold: a number in [0, 1]."""
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], not {text}")
    return value


def nonneg_int(text: str) -> int:
    """A count where 0 means none / all: an integer >= 0."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {text}")
    return value


def finite_float(text: str) -> float:
    return float(_number(text, float))


def parse_int_list(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, not {text!r}"
                                         ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, not {text!r}")
    return values


#: The pipeline flags' names in parsed arguments: the :class:`PipelineConfig` fields.
PIPELINE_FIELDS = frozenset(f.name for f in fields(PipelineConfig))


class _FlagGroup:
    """An argument group; with ``explicit_only`` its flags stay out of the parsed arguments
    unless given (``serve`` lays them over the config file), their help still stating the real
    default."""

    def __init__(self, group: argparse._ArgumentGroup, explicit_only: bool) -> None:
        self.group, self.explicit_only = group, explicit_only

    def add_argument(self, *names: str, **kw: object) -> argparse.Action:
        if self.explicit_only:
            real = kw.get("default", False if kw.get("action") == "store_true" else None)
            if isinstance(kw.get("help"), str):
                kw["help"] = str(kw["help"]).replace("%(default)s", str(real))
            kw["default"] = argparse.SUPPRESS
        return self.group.add_argument(*names, **kw)  # type: ignore[arg-type]


def add_pipeline_args(p: argparse.ArgumentParser, det_every_list: bool = False,
                      explicit_only: bool = False) -> None:
    """Model selection and tuning flags (defaults = :class:`PipelineConfig`; their names are its
    fields, :data:`PIPELINE_FIELDS`); ``det_every_list``: ``--det-every`` takes K,K,... (the
    tracking bench compares several); ``explicit_only``: only the flags given appear in the
    parsed arguments (``serve``: flags beat the config file, which beats the defaults)."""
    d = PipelineConfig()
    dets = ", ".join(n for n, s in REGISTRY.items() if s.task == "detector")
    poses = ", ".join(n for n, s in REGISTRY.items() if s.task == "pose")
    g = _FlagGroup(p.add_argument_group("models"), explicit_only)
    g.add_argument("--detector", default=DEFAULT_DETECTOR, metavar="NAME|PATH",
                   help=f"person detector: {dets}; or an .onnx path (default: %(default)s)")
    g.add_argument("--pose", default=DEFAULT_POSE, metavar="NAME|PATH",
                   help=f"keypoint model: {poses}; or an .onnx path (default: %(default)s)")
    g.add_argument("--detector-like", default=d.detector_like, metavar="NAME",
                   help="registry model whose input/output contract a --detector path follows")
    g.add_argument("--pose-like", default=d.pose_like, metavar="NAME",
                   help="registry model whose contract a --pose path follows")
    g.add_argument("--backend", choices=BACKENDS, default=d.backend,
                   help="inference backend: onnxruntime (CPU), tensorrt (the GPU pipeline, "
                        "engines from `trt-pose-td build`) or auto (tensorrt when TensorRT, a "
                        "GPU and both engines are here) (default: %(default)s)")
    g.add_argument("--engine-dir", default=d.engine_dir, metavar="DIR",
                   help="TensorRT engine folder (default: <cache>/engines)")
    g.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="fp32 | fp16 | int8 (default: fp32 on onnxruntime, fp16 on tensorrt). "
                        "onnxruntime int8 runs the Q/DQ ONNX files `trt-pose-td quantize` wrote "
                        "to <cache>/quantized; tensorrt loads <model>.<precision>.engine")
    g.add_argument("--int8-mode", choices=INT8_MODES, default=d.int8_mode,
                   help="with --precision int8: qdq or calibrator engines (default: qdq)")
    g.add_argument("--preprocessor", choices=PREPROCESSORS, default=d.preprocessor,
                   help="CPU warp: cv2, or twin = the numpy twin of the GPU crop kernel (same "
                        "sampling as --backend tensorrt) (default: %(default)s)")
    g.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime threads (default: one per physical core)")
    t = _FlagGroup(p.add_argument_group("tuning"), explicit_only)
    t.add_argument("--det-size", type=parse_size, default=None, metavar="N|WxH",
                   help="detector input size, multiple of 32 (RTMDet: 320, 416, 640; "
                        "default: the model's own)")
    t.add_argument("--score-threshold", type=float, default=d.score_threshold,
                   help="minimum person score (default: %(default)s)")
    t.add_argument("--iou-threshold", type=float, default=d.iou_threshold,
                   help="NMS IoU for detectors without NMS in the graph (default: %(default)s)")
    t.add_argument("--max-persons", type=int, default=d.max_persons,
                   help="most persons per frame (default: %(default)s)")
    t.add_argument("--max-batch", type=int, default=d.max_batch,
                   help="persons per keypoint-model call (default: %(default)s, measured best "
                        "on a 2-core CPU; GPUs want the engine profile's max)")
    t.add_argument("--refine", choices=REFINEMENTS, default=d.refine,
                   help="heatmap sub-pixel refinement (default: %(default)s)")
    t.add_argument("--box-padding", type=float, default=d.box_padding,
                   help="crop = box x this, at the model's aspect (default: %(default)s)")
    t.add_argument("--flip", action="store_true",
                   help="flip test-time augmentation: also run the mirrored crops and average "
                        "(2x keypoint-model cost; off by default)")
    k = _FlagGroup(p.add_argument_group("tracking (docs/tracking.md)"), explicit_only)
    k.add_argument("--track", action="store_true",
                   help="give every person a track_id that stays while they are in view "
                        "(ByteTrack-style IoU + OKS association, Kalman motion)")
    det_help = ("run the detector every K-th frame and follow the tracks by their keypoints "
                "in between (implies --track; K=5: 2x the FPS on CPU, median OKS 0.99 vs every "
                "frame) (default: %(default)s)")
    if det_every_list:
        k.add_argument("--det-every", type=parse_int_list, default=[d.det_every],
                       metavar="K,K,...", help="with --video: compare these K (e.g. 1,3,5,10; "
                       "K=1, every frame, is the reference)")
    else:
        k.add_argument("--det-every", type=positive_int, default=d.det_every, metavar="K",
                       help=det_help)
    k.add_argument("--smooth", action="store_true",
                   help="one-euro filter on each track's keypoints (implies --track; halves the "
                        "frame-to-frame jitter; keypoints_raw keeps the unfiltered ones)")
    t.add_argument("--recrop", action="store_true",
                   help="pose-guided re-crop: run the keypoint model again on the box around "
                        "each person's confident keypoints (+2 AP on COCO, about 1.5x the "
                        "keypoint time; off by default)")


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The :class:`PipelineConfig` of the pipeline flags (flag = field name; validated there)."""
    return PipelineConfig(**{f.name: getattr(args, f.name) for f in fields(PipelineConfig)})


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]],
                 title: Optional[str] = None) -> str:
    """A plain-text table; floats to 2 decimals, right-aligned numbers."""
    cells = [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths)))

    out = [title] if title else []
    out += [line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells]
    return "\n".join(out)


def stage_table(summary: Dict[str, Dict[str, float]], title: Optional[str] = None) -> str:
    rows = [(stage, v["mean"], v["median"], v["p90"]) for stage, v in summary.items()]
    return format_table(("stage", "mean ms", "median ms", "p90 ms"), rows, title)
