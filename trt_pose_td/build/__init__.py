"""TensorRT engine builder: ONNX -> FP32/FP16/INT8 engines with provenance sidecars.

``python build_engines.py`` and ``trt-pose-td build`` share :func:`main`'s options. Layout:
:mod:`.options` (what to build, pure), :mod:`.profiles` (profile shapes, pure), :mod:`.jobs`
(models, calibration set, rebuild command, staleness; pure), :mod:`.calibrator` (implicit INT8),
:mod:`.builder` (TensorRT), :mod:`.inspect` (per-layer precision), :mod:`.run` (the whole build),
:mod:`.trt_version` / :mod:`.env` (installed TensorRT and GPU). Nothing here imports TensorRT or
CUDA at import time.
"""

from __future__ import annotations

from typing import List, Optional

from .options import BatchRange, BuildOptions, LayerPrecision

__all__ = ["BatchRange", "BuildOptions", "LayerPrecision", "main"]


def main(argv: Optional[List[str]] = None) -> int:
    """The ``build_engines.py`` command line (same options as ``trt-pose-td build``)."""
    from ..cli.build import main as cli_main

    return cli_main(argv)
