"""Build the engines of a :class:`~.options.BuildOptions`: check the request, prepare the INT8
inputs (calibration tensors, Q/DQ ONNX), build with TensorRT, write ``X.engine`` and its
provenance sidecar ``X.engine.json``.

User errors come before any TensorRT work: unknown models, bad options, a request this TensorRT or
GPU cannot honour (:func:`~.options.check_supported`), a missing calibration set.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .. import __version__
from ..assets import cache_dir, sha256_file
from ..engine_meta import EngineMetadata, read_metadata, sidecar_path, write_metadata
from ..errors import ConfigError, DependencyError, EngineError
from ..quantize import calibration
from .env import BuildEnv
from .inspect import LayerPrecisionInfo, int8_collapse, layer_precisions
from .jobs import (
    CalibrationSet,
    EngineJob,
    calibration_set,
    has_qdq_nodes,
    needs_calibration_data,
    plan_jobs,
    rebuild_command,
    stale_reasons,
    timing_cache_file,
)
from .options import BuildOptions, check_supported

log = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """What happened to one engine. layers: per-layer precisions (engine inspector);
    free_mib / workspace_mib: device memory free before the build and the workspace it had."""

    job: EngineJob
    skipped: bool = False
    seconds: float = 0.0
    free_mib: int = 0
    workspace_mib: int = 0
    meta: Optional[EngineMetadata] = None
    layers: List[LayerPrecisionInfo] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class Int8Inputs:
    """onnx: the graph TensorRT parses; data: calibrator tensors (N, 3, H, W) float32;
    tensors: their cache file; sha256: of that file (the sidecar's calibration_sha256)."""

    onnx: Path
    data: Optional[np.ndarray] = None
    tensors: Optional[Path] = None
    sha256: Optional[str] = None


def detect_build_env() -> BuildEnv:
    """TensorRT version and GPU of this machine (imports TensorRT and cuda-python)."""
    from .env import detect_env

    return detect_env()


def check_onnx_precision(opts: BuildOptions, job: EngineJob) -> None:
    """A Q/DQ ONNX is INT8 by construction: it builds only as --int8-mode qdq."""
    if opts.int8 != "qdq" and has_qdq_nodes(job.onnx):
        raise ConfigError(f"{job.onnx.name} is already quantized (QuantizeLinear/DequantizeLinear "
                          "nodes): build it with --precision int8 --int8-mode qdq")


def skip_existing(job: EngineJob, opts: BuildOptions, env: BuildEnv, onnx_sha: str) -> bool:
    """True when the engine and its sidecar exist and match this TensorRT, GPU, ONNX, options."""
    if not (job.engine.is_file() and sidecar_path(job.engine).is_file()):
        return False
    try:
        meta = read_metadata(job.engine)
    except EngineError as exc:
        log.info("rebuilding %s: %s", job.engine.name, exc)
        return False
    reasons = stale_reasons(meta, env, onnx_sha, opts.engine_options(job.role), job.size)
    if reasons:
        log.warning("rebuilding %s: %s", job.engine.name, "; ".join(reasons))
    return not reasons


def quantized_onnx(job: EngineJob, opts: BuildOptions, data: np.ndarray, tensors: Path) -> Path:
    """The Q/DQ ONNX of ``job`` calibrated on ``data`` (cached beside the calibration tensors'
    key), made by :func:`trt_pose_td.quantize.quantize_model`."""
    try:
        from ..quantize import DEFAULT_EXCLUDES, default_method, quantize_model
    except ImportError as exc:
        raise DependencyError(f"--int8-mode qdq on a float ONNX needs the Q/DQ quantizer "
                              f"(trt_pose_td.quantize and pip install 'trt-pose-td[eval]'): {exc}. "
                              "Or pass an already quantized ONNX with --detector/--pose PATH"
                              ) from exc
    # The recipe measured on CPU (docs/accuracy.md): the model's calibration method and the
    # Convs it keeps in float, so the engine is built from the Q/DQ model `eval` measured.
    method = opts.qdq_method or default_method(job.spec.name)
    out = cache_dir() / "qdq" / f"{tensors.stem}.{method}.qdq.onnx"
    if out.is_file():
        log.info("using cached Q/DQ model %s", out)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(quantize_model(job.spec, job.onnx, data, out, method=method, per_channel=True,
                               exclude_nodes=DEFAULT_EXCLUDES.get(job.spec.name, ()),
                               calibration_key=tensors.stem))


def int8_inputs(job: EngineJob, opts: BuildOptions, calib: Optional[CalibrationSet],
                onnx_sha: str, progress: bool) -> Int8Inputs:
    """Calibration tensors (the real preprocessing, cached) and, for qdq, the Q/DQ ONNX."""
    if opts.int8 is None or calib is None:
        return Int8Inputs(job.onnx)
    annotations = calib.annotations if job.role == "pose" else None
    data, tensors = calibration.load_or_make(job.spec, onnx_sha, calib.images, annotations,
                                             quiet=not progress)
    sha = sha256_file(tensors)
    if opts.int8 == "calibrator":
        return Int8Inputs(job.onnx, data, tensors, sha)
    return Int8Inputs(quantized_onnx(job, opts, data, tensors), None, tensors, sha)


def write_engine(path: Path, plan: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(plan)
    tmp.replace(path)


def build_job(job: EngineJob, opts: BuildOptions, env: BuildEnv,
              calib: Optional[CalibrationSet], onnx_sha: str, progress: bool) -> BuildReport:
    """Build one engine and write it with its sidecar."""
    from ..engines.trt_api import import_tensorrt
    from .builder import PlanRequest, build_plan
    from .calibrator import calibration_cache_path
    from .inspect import inspect_plan

    import_tensorrt()  # DependencyError naming where TensorRT comes from
    inputs = int8_inputs(job, opts, calib, onnx_sha, progress)
    arch = "sm" + env.compute_capability.replace(".", "")
    cache = (calibration_cache_path(inputs.tensors, str(env.trt.version), arch)
             if opts.int8 == "calibrator" and inputs.tensors else None)
    request = PlanRequest(inputs.onnx, job.role, job.size, inputs.data, cache,
                          timing_cache_file(opts, env))
    log.info("building %s from %s", job.engine.name, inputs.onnx.name)
    t0 = time.perf_counter()
    built = build_plan(request, opts, env)
    seconds = time.perf_counter() - t0
    write_engine(job.engine, built.plan)
    meta = engine_metadata(job, opts, env, onnx_sha, inputs, built.profiles)
    write_metadata(meta, job.engine)
    report = BuildReport(job, seconds=seconds, meta=meta, free_mib=built.free_mib,
                         workspace_mib=built.workspace_mib)
    if opts.verbose or opts.precision == "int8":
        report.layers = layer_precisions(inspect_plan(built.plan, meta, env.trt))
        collapse = int8_collapse(report.layers, opts.precision)
        if collapse:
            log.warning("%s: %s", job.engine.name, collapse)
            report.warnings.append(collapse)
    return report


def engine_metadata(job: EngineJob, opts: BuildOptions, env: BuildEnv, onnx_sha: str,
                    inputs: Int8Inputs, profiles: List[Dict]) -> EngineMetadata:
    """The provenance sidecar of a freshly built engine."""
    return EngineMetadata(
        model=job.spec.name, role=job.role, onnx_sha256=onnx_sha, precision=opts.precision,
        tensorrt_version=str(env.trt.version), gpu_name=env.gpu_name,
        compute_capability=env.compute_capability,
        build_command=rebuild_command(opts, job.role), int8_mode=opts.int8,
        calibration_sha256=inputs.sha256, profiles=profiles, input_size=list(job.size),
        dla_core=opts.dla_core, version_compatible=opts.version_compatible,
        options=opts.engine_options(job.role),
        build_time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        package_version=__version__)


def run_build(opts: BuildOptions, env: Optional[BuildEnv] = None,
              progress: bool = True) -> List[BuildReport]:
    """Build (or, with ``skip_existing``, keep) every engine ``opts`` asks for."""
    jobs = plan_jobs(opts, progress)
    for job in jobs:
        check_onnx_precision(opts, job)
    env = env or detect_build_env()
    check_supported(opts, env)
    log.info("TensorRT %s on %s (compute capability %s, %d DLA cores)", env.trt.version,
             env.gpu_name, env.compute_capability, env.dla_cores)
    reports, todo = [], []
    for job in jobs:
        onnx_sha = sha256_file(job.onnx)
        if opts.skip_existing and skip_existing(job, opts, env, onnx_sha):
            log.info("%s is up to date", job.engine)
            reports.append(BuildReport(job, skipped=True, meta=read_metadata(job.engine)))
        else:
            todo.append((job, onnx_sha))
    calib = {job.role: calibration_set(opts, job.role == "pose")
             for job, _ in todo if needs_calibration_data(opts, job)}
    for job, onnx_sha in todo:
        reports.append(build_job(job, opts, env, calib.get(job.role), onnx_sha, progress))
    return reports
