"""What each model is quantized with, and where its Q/DQ file lives (pure: no ONNX, no engine).

The measured per-model recipe (calibration method, Convs kept in float) comes from
``trt_pose_td/data/int8_choices.json`` (docs/accuracy.md holds the tables and commands).
Files: ``<cache>/quantized/<model>.int8-<method>.onnx`` (:func:`quantized_path`);
:func:`int8_config` points a pipeline configuration at them.

What the quantizer decides and the pipeline's plan needs to know, below both: the plan
(:mod:`trt_pose_td.pipelines.plan`) learns the INT8 twin of a model and its Q/DQ file name here
without importing the quantize tool (:mod:`trt_pose_td.quantize`, which writes those files and
re-exports these names as part of its API).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .assets import cache_dir
from .config import PipelineConfig
from .errors import ConfigError
from .models import get_spec, is_model_path

METHODS = ("entropy", "minmax", "percentile", "mse")
#: Calibration tensors used by the ``mse`` refinement (evenly spaced over the set).
MSE_SAMPLES = 16
#: Operator sets to quantize: ``conv`` (weighted layers only, TensorRT's recommendation) or
#: ``all`` (every operator ONNX Runtime can quantize).
OP_SETS: Dict[str, Optional[Tuple[str, ...]]] = {
    "conv": ("Conv", "ConvTranspose", "Gemm", "MatMul"),
    "all": None,
}
DEFAULT_METHOD = "mse"
#: Registry models whose INT8 file is made from another registry model: the NMS-in-graph
#: RTMDet is quantized as its raw-head twin (same network; our NMS stays outside int8).
INT8_SOURCE = {"rtmdet_nano_person": "rtmdet_nano_person_raw"}


def _load_choices() -> Dict[str, Dict[str, Any]]:
    """Per-model calibration method and Convs kept in float, chosen by measurement
    (``data/int8_choices.json``; see docs/accuracy.md for the tables and commands)."""
    path = Path(__file__).parent / "data" / "int8_choices.json"
    return dict(json.loads(path.read_text())["models"])


CHOICES = _load_choices()
DEFAULT_METHODS: Dict[str, str] = {m: c["method"] for m, c in CHOICES.items()}
DEFAULT_EXCLUDES: Dict[str, Tuple[str, ...]] = {
    m: tuple(c["keep_float"]) for m, c in CHOICES.items()}


def int8_source(model: str) -> str:
    """The registry model whose Q/DQ file serves ``model`` at INT8."""
    return INT8_SOURCE.get(model, model)


def default_method(model: str) -> str:
    """The calibration method measured best for ``model`` (:data:`DEFAULT_METHOD` otherwise)."""
    return DEFAULT_METHODS.get(int8_source(model), DEFAULT_METHOD)


def quantized_path(model: str, method: Optional[str] = None, cache: Optional[Path] = None
                   ) -> Path:
    """``<cache>/quantized/<model>.int8-<method>.onnx`` (method: the model's measured default)."""
    method = method or default_method(model)
    if method not in METHODS:
        raise ConfigError(f"calibration method must be one of {METHODS}, not {method!r}")
    return Path(cache or cache_dir()) / "quantized" / f"{int8_source(model)}.int8-{method}.onnx"


def int8_config(cfg: PipelineConfig) -> PipelineConfig:
    """``cfg`` with its registry models pointed at their Q/DQ files (what
    :func:`trt_pose_td.pipelines.plan.resolve` runs on ONNX Runtime at int8).

    Paths given by the user are kept (they may already be Q/DQ models). Raises
    :class:`ConfigError` with the command that makes a missing file.
    """
    changes: Dict[str, Any] = {}  # field -> its new value (a str), for replace()
    for role, task in (("detector", "detector"), ("pose", "pose")):
        name = getattr(cfg, role)
        if is_model_path(name):
            continue
        get_spec(name, task)
        path = quantized_path(name)
        if not path.is_file():
            raise ConfigError(f"no INT8 model for {name} at {path}; make it with: "
                              f"trt-pose-td quantize {name}")
        changes[role] = str(path)
        changes[f"{role}_like"] = int8_source(name)
    return replace(cfg, **changes)
