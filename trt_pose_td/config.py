"""The pipeline's configuration: one frozen, validated dataclass (pure data, no model loading).

Field name = ``trt-pose-td run`` flag without dashes = ``[pipeline]`` TOML key (``det_size`` is
``--det-size``, ``max_batch`` is ``--max-batch``). Invalid values raise :class:`ConfigError` at
construction, so the CLI, the service's TOML and the Python API all get the same one-line error.
:func:`trt_pose_td.plan.resolve` turns a config into the concrete plan (specs, files, backend).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

from .decode import REFINEMENTS
from .engine_meta import INT8_MODES, PRECISIONS
from .errors import ConfigError
from .models import DEFAULT_DETECTOR, DEFAULT_POSE

#: Inference backends (``auto``: TensorRT when it, a GPU and both engines are here).
BACKENDS = ("auto", "onnxruntime", "tensorrt")
#: CPU warp implementations: OpenCV, or the numpy twin of the GPU crop kernel.
PREPROCESSORS = ("cv2", "twin")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that selects and tunes the pipeline.

    detector / pose: registry names or ONNX paths (a path follows the contract of the registry
    model ``detector_like`` / ``pose_like``); det_size: detector input (W, H), a multiple of 32,
    or None for the model's default (RTMDet: 416; measured, docs/accuracy.md); score_threshold:
    minimum person score in [0, 1] (0.2, measured); iou_threshold: NMS IoU in (0, 1];
    max_persons: most persons per frame; max_batch: persons per keypoint-model call (CPU: 8,
    measured; the GPU pipeline uses its engine profile's max); refine: heatmap sub-pixel
    refinement (``none``, ``quarter``, ``dark``); box_padding: crop = box x this, > 0;
    flip: flip test-time augmentation; recrop: pose-guided second keypoint pass.

    backend: ``onnxruntime``, ``tensorrt`` or ``auto``; threads: ONNX Runtime intra-op threads
    (None: one per physical core); preprocessor: ``cv2`` or ``twin`` (CPU pipeline);
    engine_dir: TensorRT engine folder (None: ``<cache>/engines``); precision: ``fp32``,
    ``fp16``, ``int8`` or None (fp32 on ONNX Runtime, fp16 on TensorRT); int8_mode: ``qdq``
    (default) or ``calibrator`` engines for TensorRT INT8.
    """

    detector: str = DEFAULT_DETECTOR
    pose: str = DEFAULT_POSE
    detector_like: str = DEFAULT_DETECTOR
    pose_like: str = DEFAULT_POSE
    det_size: Optional[Tuple[int, int]] = None
    score_threshold: float = 0.2
    iou_threshold: float = 0.6
    max_persons: int = 100
    max_batch: int = 8
    refine: str = "dark"
    box_padding: float = 1.25
    flip: bool = False
    recrop: bool = False
    backend: str = "onnxruntime"
    threads: Optional[int] = None
    preprocessor: str = "cv2"
    engine_dir: Optional[str] = None
    precision: Optional[str] = None
    int8_mode: Optional[str] = None

    def __post_init__(self) -> None:
        _check_range("score_threshold", self.score_threshold, 0.0, 1.0)
        _check_range("iou_threshold", self.iou_threshold, 0.0, 1.0, low_open=True)
        _check_range("box_padding", self.box_padding, 0.0, 10.0, low_open=True)
        for name in ("max_persons", "max_batch"):
            _check_int(name, getattr(self, name), 1)
        if self.threads is not None:
            _check_int("threads", self.threads, 1)
        if self.det_size is not None:
            size = tuple(self.det_size)
            if len(size) != 2 or not all(isinstance(v, int) and v > 0 and v % 32 == 0
                                         for v in size):
                raise ConfigError(f"{_key('det_size')} must be two positive multiples of 32 "
                                  f"(W, H), not {self.det_size!r}")
            object.__setattr__(self, "det_size", (int(size[0]), int(size[1])))
        for name, allowed in (("refine", REFINEMENTS), ("backend", BACKENDS),
                              ("preprocessor", PREPROCESSORS)):
            _check_choice(name, getattr(self, name), allowed)
        for name, allowed in (("precision", PRECISIONS), ("int8_mode", INT8_MODES)):
            if getattr(self, name) is not None:
                _check_choice(name, getattr(self, name), allowed)
        for name in ("detector", "pose", "detector_like", "pose_like"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{name} must name a registry model or an ONNX file")

    def as_dict(self) -> dict:
        return asdict(self)


def _key(name: str) -> str:
    """``max_batch (--max-batch)``: the TOML key and the flag, so either user finds it."""
    return f"{name} (--{name.replace('_', '-')})"


def _check_range(name: str, value: float, low: float, high: float, low_open: bool = False
                 ) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(f"{_key(name)} must be in {bracket}{low:g}, {high:g}], not {value!r}")


def _check_int(name: str, value: int, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{_key(name)} must be an integer >= {low}, not {value!r}")


def _check_choice(name: str, value: str, allowed: Tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {_key(name)} {value!r}; expected one of {', '.join(allowed)}")
