"""TensorRT engine builder: ONNX -> FP32/FP16/INT8 engines with provenance sidecars.

``python build_engines.py`` and ``trt-pose-td build`` are :mod:`trt_pose_td.cli.build`. Layout:
:mod:`.options` (what to build, pure), :mod:`.profiles` (profile shapes, pure), :mod:`.jobs`
(models, calibration set, rebuild command, staleness; pure), :mod:`.calibrator` (implicit INT8),
:mod:`.builder` (TensorRT), :mod:`.inspect` (per-layer precision), :mod:`.run` (the whole build),
:mod:`.env` (installed TensorRT and GPU, through :mod:`trt_pose_td.engines.trt_api` and
:mod:`trt_pose_td.cuda.driver`). Nothing here imports TensorRT or CUDA at import time, and nothing
here imports the command line.
"""

from __future__ import annotations

from .options import BatchRange, BuildOptions, LayerPrecision

__all__ = ["BatchRange", "BuildOptions", "LayerPrecision"]
