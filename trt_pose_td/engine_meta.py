"""Provenance sidecars of TensorRT engines (pure).

Every ``X.engine`` has ``X.engine.json``: what it was built from, for which TensorRT and GPU, how.
The builder writes it (:mod:`trt_pose_td.build`); the runtime reads it before deserializing
(:mod:`trt_pose_td.engines.tensorrt`) and refuses a mismatch with the exact rebuild command.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .errors import EngineError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

#: {input name: {"min": [..], "opt": [..], "max": [..]}} per optimisation profile.
Profile = Dict[str, Dict[str, List[int]]]


@dataclass(frozen=True)
class EngineMetadata:
    """What an engine is and where it may run."""

    model: str                      # registry name or ONNX stem
    role: str                       # "detector" | "pose"
    onnx_sha256: str
    precision: str                  # "fp32" | "fp16" | "int8"
    tensorrt_version: str           # e.g. "8.5.2.2"
    gpu_name: str                   # e.g. "Orin" / "NVIDIA H100 80GB HBM3"
    compute_capability: str         # e.g. "8.7"
    build_command: str              # exact command that rebuilds this engine
    int8_mode: Optional[str] = None  # "calibrator" | "qdq" | None
    calibration_sha256: Optional[str] = None
    profiles: List[Profile] = field(default_factory=list)
    input_size: Optional[List[int]] = None  # [W, H] of the image input
    dla_core: Optional[int] = None
    version_compatible: bool = False
    options: Dict[str, Any] = field(default_factory=dict)
    build_time: str = ""            # ISO 8601, UTC
    package_version: str = ""
    schema: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @property
    def max_batch(self) -> int:
        """Largest batch any profile allows on the first input (0 when unknown)."""
        best = 0
        for profile in self.profiles:
            for shapes in profile.values():
                best = max(best, int(shapes["max"][0]))
                break
        return best


PRECISIONS = ("fp32", "fp16", "int8")
INT8_MODES = ("qdq", "calibrator")


def engine_filename(model: str, precision: str, int8_mode: Optional[str] = None) -> str:
    """The builder's file name for an engine, which the runtime looks up in an engine folder:
    ``rtmdet_nano_person.fp16.engine``, ``pp_tinypose_256x192.int8-qdq.engine``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "int8":
        if int8_mode not in INT8_MODES:
            raise ValueError(f"int8 engines need int8_mode in {INT8_MODES}, not {int8_mode!r}")
        return f"{model}.int8-{int8_mode}.engine"
    return f"{model}.{precision}.engine"


def sidecar_path(engine_path: Union[str, Path]) -> Path:
    return Path(str(engine_path) + ".json")


def write_metadata(meta: EngineMetadata, engine_path: Union[str, Path]) -> Path:
    path = sidecar_path(engine_path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(meta.to_json())
    tmp.replace(path)
    return path


def read_metadata(engine_path: Union[str, Path]) -> EngineMetadata:
    """The sidecar of ``engine_path``; :class:`EngineError` when missing or unreadable."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise EngineError(f"{engine_path} has no provenance file {path.name}: engines are built on "
                          "the device with `trt-pose-td build` (or build_engines.py); rebuild it")
    try:
        doc = json.loads(path.read_text())
        known = {f.name for f in fields(EngineMetadata)}
        meta = EngineMetadata(**{k: v for k, v in doc.items() if k in known})
    except (ValueError, TypeError) as exc:
        raise EngineError(f"{path} is not a valid engine provenance file ({exc}); rebuild the "
                          "engine") from exc
    return meta


def mismatch_reasons(meta: EngineMetadata, tensorrt_version: str, compute_capability: str,
                     gpu_name: str = "") -> List[str]:
    """Why an engine cannot run here (empty list: it can).

    TensorRT must match exactly (major.minor.patch) unless the engine is version-compatible, in
    which case the runtime must have the same major and be at least as new. The compute
    capability must match; a different GPU name with the same capability only logs a warning.
    """
    from packaging.version import Version

    reasons = []
    built, here = Version(meta.tensorrt_version), Version(tensorrt_version)
    if meta.version_compatible:
        if here.major != built.major or here < built:
            reasons.append(f"version-compatible engine from TensorRT {built} needs TensorRT "
                           f"{built.major}.x >= {built}, this is {here}")
    elif built.release[:3] != here.release[:3]:
        reasons.append(f"built with TensorRT {built}, this is TensorRT {here}")
    if meta.compute_capability != compute_capability:
        reasons.append(f"built for compute capability {meta.compute_capability} "
                       f"({meta.gpu_name}), this GPU is {compute_capability} ({gpu_name})")
    elif gpu_name and meta.gpu_name and gpu_name != meta.gpu_name:
        log.warning("engine built on %s, running on %s (same compute capability %s)",
                    meta.gpu_name, gpu_name, compute_capability)
    return reasons


def check_runnable(engine_path: Union[str, Path], tensorrt_version: str,
                   compute_capability: str, gpu_name: str = "",
                   onnx_sha256: Optional[str] = None) -> EngineMetadata:
    """Read the sidecar and raise :class:`EngineError` with the rebuild command on a mismatch
    (including an engine built from a different ONNX file than ``onnx_sha256``)."""
    meta = read_metadata(engine_path)
    reasons = mismatch_reasons(meta, tensorrt_version, compute_capability, gpu_name)
    if onnx_sha256 and meta.onnx_sha256 != onnx_sha256:
        reasons.append(f"built from ONNX {meta.onnx_sha256[:12]}, expected {onnx_sha256[:12]}")
    if reasons:
        raise EngineError(f"{engine_path} cannot run here: {'; '.join(reasons)}. Rebuild: "
                          f"{meta.build_command}")
    return meta
