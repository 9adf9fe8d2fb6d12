"""What to build (pure apart from fetching models): the build options of a pipeline config (the
one mapping ``--from-config`` and the container use), one :class:`EngineJob` per role, the
calibration set, the exact command that rebuilds an engine, and whether an existing engine is
still what this machine would build (``--skip-existing``)."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..coco_json import read_annotations
from ..config import PipelineConfig
from ..engine_meta import EngineMetadata, engine_filename
from ..errors import CalibrationError, ConfigError
from ..models import ModelSpec, is_model_path
from ..quantize import calibration
from .env import BuildEnv
from .options import NO_CUBLAS_CUDNN, BatchRange, BuildOptions
from .profiles import timing_cache_path

#: Default calibration set inside the data mirror, and its person annotations.
MIRROR_CALIB_IMAGES = "coco/calib_train2017"
CALIB_ANNOTATIONS = "person_keypoints_train2017_calib_subset.json"


@dataclass(frozen=True)
class EngineJob:
    """One engine: its role, model spec (input size applied), source ONNX and engine path."""

    role: str
    spec: ModelSpec
    onnx: Path
    engine: Path

    @property
    def size(self) -> Tuple[int, int]:
        """(W, H) of the image input."""
        w, h = self.spec.preprocess.input_size
        return int(w), int(h)


@dataclass(frozen=True)
class CalibrationSet:
    images: Path
    annotations: Optional[Path]


def pipeline_build_options(cfg: PipelineConfig, **build: Any) -> BuildOptions:
    """The build options of the engines ``cfg`` runs on TensorRT: THE mapping from a pipeline
    config (``trt-pose-td build --from-config``, the container entrypoint), so the builder makes
    exactly the files, sizes and precision ``serve`` will load.

    From the config: the models (and their ``*_like``), ``det_size``, precision (unset: fp16) and
    ``int8_mode`` (unset: qdq) as the runtime's :func:`~..pipelines.plan.resolve` decides them,
    ``engine_dir`` (the output folder), ``max_batch`` (the keypoint profile reaches at least it:
    the default 1,8,32 unless it is larger). ``build``: the build-only fields (workspace,
    calibration set, profiles, skip_existing, ...); one the config decides is a
    :class:`ConfigError`. ``flip`` / ``recrop`` need nothing more of the engines (more runs).
    """
    from ..pipelines.plan import resolve

    plan = resolve(replace(cfg, backend="tensorrt"), progress=False)
    fields: Dict[str, Any] = {
        "detector": cfg.detector, "pose": cfg.pose, "detector_like": cfg.detector_like,
        "pose_like": cfg.pose_like, "det_size": cfg.det_size, "precision": plan.precision,
        "int8_mode": plan.int8_mode or BuildOptions().int8_mode, "max_batch": cfg.max_batch,
        "output": str(plan.detector_file.parent)}
    default_top = max(r.max for r in BuildOptions().pose_batches)
    if "pose_batches" not in build and cfg.max_batch > default_top:
        fields["pose_batches"] = (BatchRange(1, min(8, cfg.max_batch), cfg.max_batch),)
    clash = sorted(set(fields) & set(build))
    if clash:
        raise ConfigError(f"{', '.join(clash)}: the pipeline config decides "
                          f"{'this' if len(clash) == 1 else 'these'}; change the config instead")
    return BuildOptions(**fields, **build)


def output_dir(opts: BuildOptions) -> Path:
    """``--output`` or ``cache_dir()/engines`` (absolute)."""
    from ..assets import cache_dir

    return (Path(opts.output) if opts.output else cache_dir() / "engines").expanduser().resolve()


def job_spec(opts: BuildOptions, role: str) -> ModelSpec:
    """The registry spec (or a spec for an ONNX path) of ``role``, input size applied."""
    from ..pipelines.plan import int8_model, resolve_spec

    if role == "detector":
        detector, like = opts.detector, opts.detector_like
        if opts.int8 == "qdq":  # the registry's INT8 twin (NMS kept out of the int8 graph)
            detector, like = int8_model(detector, like)
        return resolve_spec(detector, "detector", like).with_input_size(opts.det_size)
    return resolve_spec(opts.pose, "pose", opts.pose_like)


def plan_jobs(opts: BuildOptions, progress: bool = True) -> List[EngineJob]:
    """One job per role to build; fetches registry models (sha256-checked) on first use."""
    from ..assets import model_path

    out = output_dir(opts)
    jobs = []
    for role in opts.roles:
        spec = job_spec(opts, role)
        engine = out / engine_filename(spec.name, opts.precision, opts.int8)
        jobs.append(EngineJob(role, spec, Path(model_path(spec, progress)).resolve(), engine))
    return jobs


def has_qdq_nodes(onnx: Path) -> bool:
    """True when the ONNX graph holds QuantizeLinear and DequantizeLinear nodes (explicit INT8).
    Reads the protobuf bytes (op types are stored verbatim), so it needs no onnx package."""
    data = Path(onnx).read_bytes()
    return b"QuantizeLinear" in data and b"DequantizeLinear" in data


def calibration_set(opts: BuildOptions, need_annotations: bool) -> CalibrationSet:
    """The calibration images (``--calib-images`` or the mirror's coco/calib_train2017) and the
    person annotations keypoint calibration needs; :class:`CalibrationError` in one line."""
    from ..assets import MIRROR_ENV, mirror_dir

    if opts.calib_images:
        images = Path(opts.calib_images).expanduser()
    else:
        mirror = mirror_dir()
        if mirror is None:
            raise CalibrationError(f"INT8 needs calibration images: pass --calib-images DIR (and "
                                   f"--calib-annotations FILE for the keypoint model) or set "
                                   f"{MIRROR_ENV} to a folder holding {MIRROR_CALIB_IMAGES}")
        images = mirror / MIRROR_CALIB_IMAGES
    try:
        calibration.calibration_images(images)
    except CalibrationError as exc:  # missing folder / no images: one line that names the fix
        raise CalibrationError(
            f"{exc}. INT8 calibrates on a few hundred images like the ones it will see (never the "
            f"evaluation set): put them there, with {CALIB_ANNOTATIONS} (their COCO person boxes) "
            "for the keypoint model, or pass --calib-images DIR, or build --precision fp16"
        ) from None
    annotations: Optional[Path] = None
    if opts.calib_annotations:
        annotations = Path(opts.calib_annotations).expanduser()
        if not annotations.is_file():
            raise CalibrationError(f"calibration annotations not found: {annotations}")
    else:
        default = images / CALIB_ANNOTATIONS
        annotations = default if default.is_file() else None
    if need_annotations and annotations is None:
        raise CalibrationError(f"keypoint-model calibration needs the person boxes of {images}: "
                               f"put them there as {CALIB_ANNOTATIONS} or pass "
                               "--calib-annotations FILE (COCO person_keypoints json)")
    if annotations is not None:  # malformed: one line now, not a traceback after the build
        read_annotations(annotations, "calibration annotations", keypoints=False)
    return CalibrationSet(images.resolve(), annotations.resolve() if annotations else None)


def needs_calibration_data(opts: BuildOptions, job: EngineJob) -> bool:
    """INT8 calibrator always; INT8 Q/DQ unless the ONNX is already quantized."""
    if opts.int8 == "calibrator":
        return True
    return opts.int8 == "qdq" and not has_qdq_nodes(job.onnx)


def timing_cache_file(opts: BuildOptions, env: BuildEnv) -> Optional[Path]:
    if opts.timing_cache == "none":
        return None
    if opts.timing_cache == "auto":
        return timing_cache_path(output_dir(opts), str(env.trt.version), env.compute_capability)
    return Path(opts.timing_cache).expanduser().resolve()


def _model_args(opts: BuildOptions, role: str) -> List[str]:
    name, like = ((opts.detector, opts.detector_like) if role == "detector"
                  else (opts.pose, opts.pose_like))
    if is_model_path(name):
        return [f"--{role}", os.path.abspath(name), f"--{role}-like", like]
    return [f"--{role}", name]


def rebuild_argv(opts: BuildOptions, role: str) -> List[str]:
    """The ``trt-pose-td build`` arguments that rebuild the ``role`` engine of ``opts`` (only
    what differs from the defaults, plus role, model, precision and output)."""
    d = BuildOptions()
    argv = ["--only", role] + _model_args(opts, role) + ["--precision", opts.precision]
    if opts.int8:
        argv += ["--int8-mode", opts.int8_mode]
    if role == "detector":
        if opts.det_size:
            argv += ["--det-size", f"{opts.det_size[0]}x{opts.det_size[1]}"]
        if opts.det_batch != d.det_batch:
            argv += ["--det-batch", str(opts.det_batch)]
    else:
        if opts.pose_batches != d.pose_batches:
            for rng in opts.pose_batches:
                argv += ["--pose-batch", str(rng)]
        if opts.max_batch is not None:
            argv += ["--max-batch", str(opts.max_batch)]
    argv += _builder_args(opts)
    if opts.int8:
        argv += _calibration_args(opts)
    return argv + ["--output", str(output_dir(opts))]


def _builder_args(opts: BuildOptions) -> List[str]:
    argv: List[str] = []
    if opts.strongly_typed:
        argv.append("--strongly-typed")
    for rule in opts.layer_precisions:
        argv += ["--layer-precision", str(rule)]
    if opts.workspace_mib is not None:
        argv += ["--workspace", str(opts.workspace_mib)]
    if opts.timing_cache != "auto":
        argv += ["--timing-cache", opts.timing_cache]
    if opts.tactic_sources == NO_CUBLAS_CUDNN:
        argv.append("--no-cublas-cudnn")
    elif opts.tactic_sources:
        argv.append(f"--tactic-sources={opts.tactic_sources}")  # may start with '-'
    if opts.dla_core is not None:
        argv += ["--dla-core", str(opts.dla_core)]
    if opts.version_compatible:
        argv.append("--version-compatible")
    return argv


def _calibration_args(opts: BuildOptions) -> List[str]:
    argv: List[str] = []
    if opts.calib_images:
        argv += ["--calib-images", os.path.abspath(os.path.expanduser(opts.calib_images))]
    if opts.calib_annotations:
        argv += ["--calib-annotations",
                 os.path.abspath(os.path.expanduser(opts.calib_annotations))]
    if opts.int8 == "calibrator" and opts.calib_batch != BuildOptions().calib_batch:
        argv += ["--calib-batch", str(opts.calib_batch)]
    if opts.int8 == "qdq" and opts.qdq_method:
        argv += ["--qdq-method", opts.qdq_method]
    return argv


def rebuild_command(opts: BuildOptions, role: str) -> str:
    """The exact shell command that rebuilds the ``role`` engine."""
    return "trt-pose-td build " + " ".join(shlex.quote(a) for a in rebuild_argv(opts, role))


def stale_reasons(meta: EngineMetadata, env: BuildEnv, onnx_sha256: str,
                  options: Dict[str, object], input_size: Optional[Tuple[int, int]] = None
                  ) -> List[str]:
    """Why an existing engine is not what this machine would build now (empty: skip it).
    Compares TensorRT release, GPU, compute capability, source ONNX, the engine options and the
    image input (W, H) the job asks for (the runtime refuses another); not the calibration
    images (delete the engine, or drop --skip-existing, to recalibrate)."""
    from packaging.version import InvalidVersion, Version

    reasons = []
    try:
        built = Version(meta.tensorrt_version).release[:3]
    except InvalidVersion:
        built = ()
    if built != env.trt.release[:3]:
        reasons.append(f"TensorRT {meta.tensorrt_version} != {env.trt.version}")
    if (meta.gpu_name, meta.compute_capability) != (env.gpu_name, env.compute_capability):
        reasons.append(f"GPU {meta.gpu_name} ({meta.compute_capability}) != {env.gpu_name} "
                       f"({env.compute_capability})")
    if meta.onnx_sha256 != onnx_sha256:
        reasons.append(f"ONNX {meta.onnx_sha256[:12]} != {onnx_sha256[:12]}")
    built_size = list(meta.input_size or [])
    if input_size is not None and built_size and built_size != list(input_size):
        reasons.append(f"input {built_size[0]}x{built_size[1]} != {input_size[0]}x"
                       f"{input_size[1]}")
    changed = sorted(k for k, v in options.items() if meta.options.get(k, None) != v)
    if changed:
        reasons.append(f"options changed: {', '.join(changed)}")
    return reasons
