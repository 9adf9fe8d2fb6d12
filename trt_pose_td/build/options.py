"""Engine build options (pure): one frozen dataclass, the small parsers behind its flags, and the
checks of a request against what the installed TensorRT and GPU can do.

Everything here runs without TensorRT; :func:`check_supported` takes a :class:`~.env.BuildEnv`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Mapping, Optional, Tuple

from ..engine_meta import INT8_MODES, PRECISIONS
from ..errors import ConfigError
from ..models import DEFAULT_DETECTOR, DEFAULT_POSE
from .env import BuildEnv

ROLES = ("detector", "pose")

#: Tactic sources every supported TensorRT (8.5 ... 10.16) knows.
TACTIC_SOURCES = ("CUBLAS", "CUBLAS_LT", "CUDNN", "EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS")
#: For TensorRT builds whose cuBLAS/cuDNN libraries are absent or stand-ins (e.g. the gpu-stage).
NO_CUBLAS_CUDNN = "-CUBLAS,-CUBLAS_LT,-CUDNN"

LAYER_PRECISIONS = ("fp32", "fp16")

#: The workspace (TensorRT's scratch pool for tactics) of each engine is this fraction of the
#: device memory free just before that engine is built, never more than ``--workspace``. The
#: other half is for what the build needs outside the pool (weights, the builder's own buffers,
#: the serialized engine) and, on a Jetson, for the CPU, which shares the same DRAM: a build
#: that takes it all is killed or ends in TensorRT's "Could not find any implementation".
WORKSPACE_FRACTION = 0.5
#: Suggested in the out-of-memory message (the maintainers' advice on a Nano 2GB).
SMALL_WORKSPACE_MIB = 256


def workspace_limit_mib(free_bytes: int, limit_mib: Optional[int] = None) -> int:
    """Workspace (MiB, >= 1) for one engine: :data:`WORKSPACE_FRACTION` of ``free_bytes``
    (device memory free now), at most ``limit_mib`` (``--workspace``) when given."""
    auto = int(free_bytes * WORKSPACE_FRACTION) >> 20
    return max(1, auto if limit_mib is None else min(auto, int(limit_mib)))


def smaller_workspace(current_mib: int) -> int:
    """The ``--workspace`` to suggest after a build ran out of memory at ``current_mib``."""
    return SMALL_WORKSPACE_MIB if current_mib > SMALL_WORKSPACE_MIB else max(1, current_mib // 2)


@dataclass(frozen=True)
class BatchRange:
    """Batch sizes of one optimisation profile: 1 <= min <= opt <= max. ``follows_static``: a
    model whose batch axis is fixed keeps that batch instead of being refused (the default
    detector profile: dynamic-batch detectors get the range, static ones their own batch)."""

    min: int
    opt: int
    max: int
    follows_static: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ConfigError(f"batch profile {self} must satisfy 1 <= min <= opt <= max")

    @classmethod
    def parse(cls, text: str) -> BatchRange:
        """``"1,8,32"`` -> (1, 8, 32); ``"4"`` -> (4, 4, 4)."""
        try:
            values = [int(v) for v in str(text).split(",")]
        except ValueError:
            raise ConfigError(f"batch profile must be MIN,OPT,MAX or N, not {text!r}") from None
        if len(values) == 1:
            values *= 3
        if len(values) != 3:
            raise ConfigError(f"batch profile must be MIN,OPT,MAX or N, not {text!r}")
        return cls(values[0], values[1], values[2])

    def __str__(self) -> str:
        return f"{self.min},{self.opt},{self.max}"


@dataclass(frozen=True)
class LayerPrecision:
    """Keep matching layers in ``precision``. pattern: a glob on the TensorRT layer name
    (``"*softmax*"``) or ``type:NAME`` for a layer type (``type:SOFTMAX``, ``type:REDUCE``)."""

    pattern: str
    precision: str

    @classmethod
    def parse(cls, text: str) -> LayerPrecision:
        """``"PATTERN=fp32"``."""
        pattern, sep, precision = str(text).rpartition("=")
        if not sep or not pattern or precision.lower() not in LAYER_PRECISIONS:
            raise ConfigError(f"layer precision must be PATTERN=fp32 or PATTERN=fp16 (PATTERN: a "
                              f"glob on layer names, or type:LAYERTYPE), not {text!r}")
        return cls(pattern, precision.lower())

    def matches(self, name: str, layer_type: str) -> bool:
        if self.pattern.lower().startswith("type:"):
            return layer_type.upper() == self.pattern[5:].upper()
        return fnmatch.fnmatchcase(name, self.pattern)

    def __str__(self) -> str:
        return f"{self.pattern}={self.precision}"


#: The detector's default batch profile: up to 8 cameras in one run (``serve`` with several
#: cameras, ``GpuPipeline.batch``), tuned for one (the common single-camera case). A detector
#: whose ONNX fixes its batch (YOLOX, PicoDet: 1) keeps it, and the runtime loops over frames.
DEFAULT_DET_BATCH = BatchRange(1, 1, 8, follows_static=True)


def parse_tactic_sources(spec: str) -> Tuple[Optional[FrozenSet[str]], FrozenSet[str],
                                             FrozenSet[str]]:
    """``"-CUBLAS,+JIT_CONVOLUTIONS"`` -> (None, add, remove): changes to TensorRT's defaults;
    ``"CUBLAS_LT,EDGE_MASK_CONVOLUTIONS"`` -> (exact set, +, -); ``"none"`` -> no source at all."""
    exact = None
    add, remove = set(), set()
    items = [s.strip() for s in str(spec).split(",") if s.strip()]
    if [s.lower() for s in items] == ["none"]:
        return frozenset(), frozenset(), frozenset()
    for item in items:
        sign, name = (item[0], item[1:]) if item[0] in "+-" else ("", item)
        name = name.upper()
        if name not in TACTIC_SOURCES:
            raise ConfigError(f"unknown tactic source {name!r}; known: {', '.join(TACTIC_SOURCES)}")
        if sign == "+":
            add.add(name)
        elif sign == "-":
            remove.add(name)
        else:
            exact = (exact or set()) | {name}
    if add & remove:
        both = ", ".join(sorted(add & remove))
        raise ConfigError(f"tactic sources both added and removed: {both}")
    return (frozenset(exact) if exact is not None else None), frozenset(add), frozenset(remove)


def tactic_mask(spec: Optional[str], default_mask: int, bits: Mapping[str, int]) -> int:
    """TensorRT's tactic-source bitmask: ``default_mask`` changed as ``spec`` says.
    bits: source name -> bit index (``int(trt.TacticSource.X)``)."""
    if not spec:
        return default_mask
    exact, add, remove = parse_tactic_sources(spec)
    mask = default_mask if exact is None else sum(1 << bits[n] for n in exact)
    for name in add:
        mask |= 1 << bits[name]
    for name in remove:
        mask &= ~(1 << bits[name])
    return mask


@dataclass(frozen=True)
class BuildOptions:
    """Everything that selects and shapes the engines (the build CLI maps onto it 1:1).

    detector / pose: registry names or ONNX paths (``*_like``: the registry model whose contract a
    path follows); only: build just one role; output: engine folder (None: ``cache_dir()/engines``);
    det_size: (W, H) detector input (None: the model's own); det_batch / pose_batches: optimisation
    profiles on the batch axis; max_batch: the largest keypoint batch the runtime will ask for;
    workspace_mib: the workspace pool is :data:`WORKSPACE_FRACTION` of the memory free before
    each engine, at most this (:func:`workspace_limit_mib`);
    timing_cache: file, "auto"
    (beside the engines, one per TensorRT version and GPU) or "none"; tactic_sources: see
    :func:`parse_tactic_sources`; layer_precisions: :class:`LayerPrecision` rules; calib_*: the
    calibration set (None: the data mirror's coco/calib_train2017).
    """

    detector: str = DEFAULT_DETECTOR
    pose: str = DEFAULT_POSE
    detector_like: str = DEFAULT_DETECTOR
    pose_like: str = DEFAULT_POSE
    only: Optional[str] = None
    precision: str = "fp16"
    int8_mode: str = "qdq"
    output: Optional[str] = None
    det_size: Optional[Tuple[int, int]] = None
    det_batch: BatchRange = DEFAULT_DET_BATCH
    pose_batches: Tuple[BatchRange, ...] = (BatchRange(1, 8, 32),)
    max_batch: Optional[int] = None
    workspace_mib: Optional[int] = None
    timing_cache: str = "auto"
    tactic_sources: Optional[str] = None
    layer_precisions: Tuple[LayerPrecision, ...] = ()
    dla_core: Optional[int] = None
    version_compatible: bool = False
    strongly_typed: bool = False
    calib_images: Optional[str] = None
    calib_annotations: Optional[str] = None
    calib_batch: int = 8
    qdq_method: Optional[str] = None
    skip_existing: bool = False
    verbose: int = 0
    extra: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not "
                              f"{self.precision!r}")
        if self.int8_mode not in INT8_MODES:
            raise ConfigError(f"INT8 mode must be one of {', '.join(INT8_MODES)}, not "
                              f"{self.int8_mode!r}")
        if self.only is not None and self.only not in ROLES:
            raise ConfigError(f"--only must be detector or pose, not {self.only!r}")
        if not self.pose_batches:
            raise ConfigError("the keypoint engine needs at least one batch profile")
        for name, value in (("--workspace", self.workspace_mib), ("--max-batch", self.max_batch),
                            ("--calib-batch", self.calib_batch)):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, not {value}")
        if self.dla_core is not None and self.dla_core < 0:
            raise ConfigError(f"--dla-core must be >= 0, not {self.dla_core}")
        if self.tactic_sources:
            parse_tactic_sources(self.tactic_sources)
        self.check_max_batch()

    def check_max_batch(self) -> None:
        """One clear error when no keypoint profile reaches the requested batch."""
        top = max(r.max for r in self.pose_batches)
        if self.max_batch is not None and top < self.max_batch:
            raise ConfigError(f"the keypoint engine's largest profile max is {top}, smaller than "
                              f"the requested batch {self.max_batch} (--max-batch): raise it, e.g. "
                              f"--pose-batch 1,{min(8, self.max_batch)},{self.max_batch}")

    @property
    def roles(self) -> Tuple[str, ...]:
        return ROLES if self.only is None else (self.only,)

    @property
    def int8(self) -> Optional[str]:
        """The INT8 mode when building INT8, else None."""
        return self.int8_mode if self.precision == "int8" else None

    def batches(self, role: str) -> Tuple[BatchRange, ...]:
        """The ``role`` engine's batch profiles. On DLA (static shapes only) the default
        detector profile is batch 1; a --det-batch given explicitly is taken as given."""
        if role != "detector":
            return self.pose_batches
        if self.dla_core is not None and self.det_batch == DEFAULT_DET_BATCH:
            return (BatchRange(1, 1, 1),)
        return (self.det_batch,)

    def engine_options(self, role: str) -> Dict[str, object]:
        """What the ``role`` engine depends on beyond the ONNX file, TensorRT and GPU (JSON-able;
        recorded in the sidecar and compared by ``--skip-existing``)."""
        out: Dict[str, object] = {
            "precision": self.precision, "int8_mode": self.int8,
            "batches": [str(b) for b in self.batches(role)],
            "workspace_mib": self.workspace_mib, "tactic_sources": self.tactic_sources,
            "layer_precisions": [str(r) for r in self.layer_precisions],
            "dla_core": self.dla_core, "version_compatible": self.version_compatible,
            "strongly_typed": self.strongly_typed,
        }
        if role == "detector":
            out["det_size"] = list(self.det_size) if self.det_size else None
        if self.int8 == "calibrator":
            out["calib_batch"] = self.calib_batch
        if self.int8 == "qdq":
            out["qdq_method"] = self.qdq_method
        return out


def check_supported(opts: BuildOptions, env: BuildEnv) -> None:
    """Refuse, with one line naming the alternative, what this TensorRT or GPU cannot build."""
    trt, v = env.trt, env.trt.version
    if opts.int8 == "calibrator" and not trt.implicit_int8:
        raise ConfigError(f"--int8-mode calibrator needs TensorRT <= 10: TensorRT {v} removed "
                          "implicit INT8 calibration. Use --int8-mode qdq (explicit Q/DQ ONNX, "
                          "calibrated on the same images)")
    if opts.precision == "fp16" and not trt.weak_typing:
        raise ConfigError(f"TensorRT {v} builds strongly typed networks only (no FP16 builder "
                          "flag): give an FP16 ONNX (e.g. from ModelOpt AutoCast) with --precision "
                          "fp32, or use --precision int8 --int8-mode qdq")
    if opts.strongly_typed and not trt.strongly_typed:
        raise ConfigError(f"--strongly-typed needs TensorRT >= 10 (JetPack 6); this is {v}")
    if opts.strongly_typed and opts.int8 == "calibrator":
        raise ConfigError("a strongly typed network cannot use the implicit INT8 calibrator: use "
                          "--int8-mode qdq")
    if opts.strongly_typed and opts.precision == "fp16":
        raise ConfigError("--strongly-typed takes every precision from the ONNX: use it with "
                          "--precision fp32 (an FP16 ONNX) or int8 --int8-mode qdq, not fp16")
    if opts.layer_precisions and (opts.strongly_typed or not trt.weak_typing):
        raise ConfigError("--layer-precision needs a weakly typed network (TensorRT <= 10 without "
                          "--strongly-typed); in a strongly typed one put Cast nodes in the ONNX")
    if opts.version_compatible and not trt.version_compatible:
        raise ConfigError(f"--version-compatible needs TensorRT >= 10 (JetPack 6); this is {v}. "
                          "Build on the device's own TensorRT instead")
    if opts.dla_core is not None:
        check_dla(opts.dla_core, opts.precision, env)
        check_dla_shapes(opts)


def check_dla(core: int, precision: str, env: BuildEnv) -> None:
    if env.dla_cores == 0:
        raise ConfigError(f"--dla-core {core}: the GPU {env.gpu_name} (compute capability "
                          f"{env.compute_capability}) has no DLA; DLA exists on Jetson AGX Xavier, "
                          "Xavier NX, AGX Orin and Orin NX modules. Drop --dla-core to build for "
                          "the GPU")
    if core >= env.dla_cores:
        raise ConfigError(f"--dla-core {core}: {env.gpu_name} has {env.dla_cores} DLA core(s), "
                          f"numbered 0..{env.dla_cores - 1}")
    if precision == "fp32":
        raise ConfigError("DLA runs FP16 or INT8 only: use --precision fp16 or int8 with "
                          "--dla-core")


def check_dla_shapes(opts: BuildOptions) -> None:
    """DLA takes no dynamic dimensions (TensorRT, "DLA Supported Layers and Restrictions": a
    profile's min, opt and max must be equal, and the run must use exactly that shape). With GPU
    fallback on, a dynamic batch profile would put every layer on the GPU without a word, so the
    keypoint engine's (1, 8, 32) is refused instead; its runs take 1..max persons, which no static
    profile covers."""
    for role in opts.roles:
        dynamic = [str(b) for b in opts.batches(role) if b.min != b.max]
        if dynamic:
            name = "--det-batch" if role == "detector" else "--pose-batch"
            raise ConfigError(f"--dla-core: DLA runs static shapes only (min = opt = max), the "
                              f"{role} profile {', '.join(dynamic)} ({name}) is dynamic, so "
                              "TensorRT would place every layer on the GPU. Put the detector on "
                              "DLA (--only detector --dla-core N, batch 1) and build the keypoint "
                              "engine without --dla-core")
