"""Resolve a :class:`~.config.PipelineConfig` once into what will run: backend, precision, the two
model specs (input size and box padding applied, INT8 twins chosen) and the files to load.

Nothing here loads a model or touches a GPU library beyond asking whether TensorRT and a GPU are
present (``backend = "auto"``). :func:`trt_pose_td.api.open_pipeline` builds the pipeline from the
plan; ``trt-pose-td build`` and ``eval`` use the same plan, so every tool agrees on which file
serves which setting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Tuple

from ..assets import cache_dir, model_path
from ..config import PipelineConfig
from ..decode import DetectorParams
from ..engine_meta import engine_filename
from ..errors import ConfigError, DependencyError
from ..int8_recipes import int8_config, int8_source
from ..models import ModelSpec, get_spec, is_model_path, spec_for_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What a config resolves to.

    backend: ``onnxruntime`` or ``tensorrt`` (``auto`` decided); precision: ``fp32``, ``fp16``
    or ``int8`` (unset resolved per backend); int8_mode: ``qdq`` / ``calibrator`` at int8, else
    None; detector / pose: the specs that run; params: detector thresholds; detector_file /
    pose_file: ONNX files (ONNX Runtime, fetched or Q/DQ) or engine files (TensorRT).
    """

    cfg: PipelineConfig
    backend: str
    precision: str
    int8_mode: Optional[str]
    detector: ModelSpec
    pose: ModelSpec
    params: DetectorParams
    detector_file: Path
    pose_file: Path


# -- model specs --------------------------------------------------------------------------------
def resolve_spec(name_or_path: str, task: str, like: str) -> ModelSpec:
    """A registry spec by name, or a spec for an ONNX path following registry model ``like``."""
    if is_model_path(name_or_path):
        return spec_for_file(name_or_path, like)
    return get_spec(name_or_path, task)


def _tuned(spec: ModelSpec, cfg: PipelineConfig, task: str) -> ModelSpec:
    if task == "detector":
        return spec.with_input_size(cfg.det_size)
    if cfg.box_padding != spec.preprocess.padding:
        spec = replace(spec, preprocess=replace(spec.preprocess, padding=cfg.box_padding))
    return spec


def model_specs(cfg: PipelineConfig, int8_qdq: bool = False) -> Tuple[ModelSpec, ModelSpec]:
    """(detector, pose) specs ``cfg`` selects; ``int8_qdq`` swaps registry models for their
    INT8 twins (paths are kept)."""
    specs = []
    for task, name, like in (("detector", cfg.detector, cfg.detector_like),
                             ("pose", cfg.pose, cfg.pose_like)):
        if int8_qdq:
            name, like = int8_model(name, like)
        specs.append(_tuned(resolve_spec(name, task, like), cfg, task))
    return specs[0], specs[1]


def detector_params(cfg: PipelineConfig) -> DetectorParams:
    return DetectorParams(cfg.score_threshold, cfg.iou_threshold, cfg.max_persons)


# -- TensorRT engines ---------------------------------------------------------------------------
def engine_dir(cfg: PipelineConfig) -> Path:
    return Path(cfg.engine_dir).expanduser() if cfg.engine_dir else cache_dir() / "engines"


def engine_path(cfg: PipelineConfig, spec: ModelSpec) -> Path:
    """The builder's engine file for ``spec`` at ``cfg``'s precision (fp16 when unset)."""
    try:
        name = engine_filename(spec.name, cfg.precision or "fp16", _int8_mode(cfg))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return engine_dir(cfg) / name


def _int8_mode(cfg: PipelineConfig) -> Optional[str]:
    return (cfg.int8_mode or "qdq") if cfg.precision == "int8" else cfg.int8_mode


def tensorrt_unavailable(cfg: PipelineConfig) -> Optional[str]:
    """Why ``cfg`` cannot run on TensorRT here (None: it can)."""
    from ..engines.trt_api import import_tensorrt

    try:
        import_tensorrt()
    except DependencyError:
        return "TensorRT is not installed"
    from ..cuda.driver import gpu_available

    if not gpu_available():
        return "no CUDA GPU"
    specs = model_specs(cfg, int8_qdq=_int8_mode(cfg) == "qdq")
    missing = [str(p) for p in (engine_path(cfg, s) for s in specs) if not p.is_file()]
    return f"no engine {', '.join(missing)}" if missing else None


def resolve_backend(cfg: PipelineConfig) -> str:
    """``onnxruntime`` or ``tensorrt``; ``auto`` picks TensorRT when it can run here."""
    if cfg.backend != "auto":
        return cfg.backend
    reason = tensorrt_unavailable(cfg)
    if reason:
        log.info("backend auto: onnxruntime (%s)", reason)
        return "onnxruntime"
    log.info("backend auto: tensorrt")
    return "tensorrt"


# -- the plan -----------------------------------------------------------------------------------
#: Precisions ONNX Runtime runs (``int8``: the Q/DQ files of ``trt-pose-td quantize``).
CPU_PRECISIONS = ("fp32", "int8")


def _ort_plan(cfg: PipelineConfig, progress: bool) -> Plan:
    precision = cfg.precision or "fp32"
    if precision not in CPU_PRECISIONS:
        raise ConfigError(f"precision {precision} needs TensorRT (--backend tensorrt); ONNX "
                          f"Runtime runs {' or '.join(CPU_PRECISIONS)}")
    if precision == "int8":  # registry models -> the Q/DQ files `trt-pose-td quantize` wrote
        models = int8_config(cfg)
    else:
        models = cfg
    resolved = []
    for task, name, like in (("detector", models.detector, models.detector_like),
                             ("pose", models.pose, models.pose_like)):
        spec = _tuned(resolve_spec(name, task, like), cfg, task)
        resolved.append((spec, model_path(spec, progress)))
    (det, det_file), (pose, pose_file) = resolved
    return Plan(cfg, "onnxruntime", precision, None, det, pose, detector_params(cfg), det_file,
                pose_file)


def _trt_plan(cfg: PipelineConfig) -> Plan:
    mode = _int8_mode(cfg)
    det, pose = model_specs(cfg, int8_qdq=mode == "qdq")
    return Plan(cfg, "tensorrt", cfg.precision or "fp16", mode, det, pose, detector_params(cfg),
                engine_path(cfg, det), engine_path(cfg, pose))


def resolve(cfg: PipelineConfig, progress: bool = True) -> Plan:
    """The plan for ``cfg``: backend decided, ONNX files fetched (ONNX Runtime) or engine paths
    named (TensorRT; their existence is checked when they load)."""
    backend = resolve_backend(cfg)
    return _trt_plan(cfg) if backend == "tensorrt" else _ort_plan(cfg, progress)


def int8_model(name_or_path: str, like: str) -> Tuple[str, str]:
    """(model, like) that serve ``name_or_path`` as an explicit-INT8 (Q/DQ) model: a registry
    model is replaced by its INT8 twin; paths are kept."""
    if is_model_path(name_or_path):
        return name_or_path, like
    twin = int8_source(name_or_path)  # RTMDet with NMS in the graph -> its raw head
    return twin, twin
