"""Inference engines behind one seam (:class:`.base.Engine`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from ..config_checks import BACKENDS
from ..errors import ConfigError
from .base import Engine, TensorSpec, check_contract

__all__ = ["BACKENDS", "Engine", "TensorSpec", "check_contract", "load_engine"]


def load_engine(path: Union[str, Path], backend: str = "onnxruntime",
                threads: Optional[int] = None) -> Engine:
    """Open ``path`` with ``backend``: ``.onnx`` -> ONNX Runtime, ``.engine`` -> TensorRT."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    suffix = Path(path).suffix
    if backend == "tensorrt" or (backend == "auto" and suffix in (".engine", ".plan")):
        from .tensorrt import TrtEngine

        return TrtEngine(path)
    from .onnxruntime import OrtEngine

    return OrtEngine(path, threads=threads)
