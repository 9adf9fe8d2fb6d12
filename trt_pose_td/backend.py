"""Which backend runs a pipeline, and where its TensorRT engines are (no GPU libraries needed).

``--backend auto`` means TensorRT when it is installed, a CUDA GPU is present and both engines
exist in the engine folder; ONNX Runtime otherwise (the reason is logged).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from .engine_meta import engine_filename
from .errors import ConfigError, DependencyError
from .models import ModelSpec
from .pipeline import PipelineConfig, resolve_specs
from .trt_api import import_tensorrt

log = logging.getLogger(__name__)


def engine_dir(cfg: PipelineConfig) -> Path:
    from .assets import cache_dir

    return Path(cfg.engine_dir).expanduser() if cfg.engine_dir else cache_dir() / "engines"


def engine_path(cfg: PipelineConfig, spec: ModelSpec) -> Path:
    """The builder's engine file for ``spec`` at ``cfg``'s precision (fp16 when unset)."""
    try:
        name = engine_filename(spec.name, cfg.precision or "fp16", cfg.int8_mode)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return engine_dir(cfg) / name


def tensorrt_unavailable(cfg: PipelineConfig) -> Optional[str]:
    """Why ``cfg`` cannot run on TensorRT here (None: it can)."""
    try:
        import_tensorrt()
    except DependencyError:
        return "TensorRT is not installed"
    from .cuda.driver import gpu_available

    if not gpu_available():
        return "no CUDA GPU"
    det_spec, pose_spec, _ = resolve_specs(cfg)
    missing = [str(p) for p in (engine_path(cfg, det_spec), engine_path(cfg, pose_spec))
               if not p.is_file()]
    return f"no engine {', '.join(missing)}" if missing else None


def resolve_backend(cfg: PipelineConfig) -> str:
    """``onnxruntime`` or ``tensorrt``; ``auto`` picks TensorRT when it can run here."""
    from .engines import BACKENDS

    if cfg.backend not in BACKENDS:
        raise ConfigError(f"unknown backend {cfg.backend!r}; expected one of {BACKENDS}")
    if cfg.backend != "auto":
        return cfg.backend
    reason = tensorrt_unavailable(cfg)
    if reason:
        log.info("backend auto: onnxruntime (%s)", reason)
        return "onnxruntime"
    log.info("backend auto: tensorrt")
    return "tensorrt"
