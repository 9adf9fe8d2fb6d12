"""The one TensorRT accessor: the lazy ``tensorrt`` import, its version parsed once and what that
version can do, the process-wide TensorRT logger, plugin registration, and the ``trt.Runtime`` an
engine's sidecar asks for.

The builder (:mod:`trt_pose_td.build`) and the runtime (:mod:`trt_pose_td.engines.tensorrt`) both
go through here: :func:`import_tensorrt` first (a missing TensorRT is a :class:`DependencyError`
saying where it comes from), then ``import tensorrt as trt`` inside their functions so mypy checks
each call against the stubs. Every version-dependent decision reads a :class:`TrtFeatures`, never
a version string. The TensorRT Python API differs between the versions JetPack ships:

========================  ===========  ==============  =================
feature                   8.5 (JP 5)   10.3 / 10.16    11.x
========================  ===========  ==============  =================
EXPLICIT_BATCH flag       required     deprecated      removed
implicit INT8 calibrator  yes          yes (deprecated) removed
FP16 / INT8 builder flags yes          yes             removed (strong typing)
strongly typed networks   no           optional        always
version-compatible plans  no           yes             yes
========================  ===========  ==============  =================

Type-checking convention: code whose API exists only in TensorRT >= 10 sits under
``if TRT10_API:`` (a local ``TRT10_API = features.api10``). The stub check in
``tests/build/test_trt_typecheck.py`` runs mypy with ``--always-true TRT10_API`` against the 10.x
stubs and ``--always-false TRT10_API`` against the 8.5 stubs, so each branch is checked against the
API of the versions that take it.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Deque, Optional, Tuple

from ..errors import DependencyError, EngineError

if TYPE_CHECKING:
    import tensorrt as trt

    from ..engine_meta import EngineMetadata

log = logging.getLogger(__name__)

#: The oldest TensorRT the project builds for (JetPack 5.1: named-tensor API, INMSLayer).
MIN_VERSION = "8.5"

INSTALL_HINT = ("TensorRT's Python bindings come with JetPack on a Jetson (python3-libnvinfer; "
                "inside a container use an l4t-tensorrt / l4t-jetpack base image) and with "
                "NVIDIA's TensorRT container or `pip install tensorrt` on x86; building and "
                "running TensorRT engines needs them, --backend onnxruntime does not.")


@dataclass(frozen=True)
class TrtFeatures:
    """What the installed TensorRT supports, derived from its version alone."""

    version: Any  # packaging.version.Version

    @classmethod
    def parse(cls, text: str) -> TrtFeatures:
        """``"8.5.2.2"`` -> features; :class:`EngineError` for an unusable or too old version."""
        from packaging.version import InvalidVersion, Version

        try:
            version = Version(str(text))
        except InvalidVersion:
            raise EngineError(f"cannot parse the TensorRT version {text!r}") from None
        if version < Version(MIN_VERSION):
            raise EngineError(f"TensorRT {version} is too old: trt_pose_td needs TensorRT >= "
                              f"{MIN_VERSION} (JetPack 5.1 or newer)")
        return cls(version)

    @property
    def major(self) -> int:
        return int(self.version.major)

    @property
    def release(self) -> Tuple[int, ...]:
        return tuple(self.version.release)

    @property
    def api10(self) -> bool:
        """The TensorRT 10 Python API (no EXPLICIT_BATCH flag needed, STRONGLY_TYPED and
        VERSION_COMPATIBLE exist). 8.x takes the other branch."""
        return self.major >= 10

    @property
    def implicit_int8(self) -> bool:
        """IInt8EntropyCalibrator2 + BuilderFlag.INT8 (removed in TensorRT 11)."""
        return self.major <= 10

    @property
    def weak_typing(self) -> bool:
        """FP16/INT8 builder flags and per-layer precision constraints (removed in 11)."""
        return self.major <= 10

    @property
    def strongly_typed(self) -> bool:
        """Strongly typed networks can be requested (always on from 11)."""
        return self.api10

    @property
    def version_compatible(self) -> bool:
        return self.api10

    def __str__(self) -> str:
        return str(self.version)


#: TensorRT ``DataType`` member name -> the numpy dtype of a host buffer for it. Keyed by name:
#: the members differ between versions (8.5: FLOAT HALF INT8 INT32 BOOL UINT8; 10.x adds INT64,
#: BF16, FP8, INT4; 10.16 FP4, E8M0) and so do their integer values. TensorRT's own numpy-type
#: helper is never called: 8.5's builds its table with ``np.bool`` on every call, which raises
#: AttributeError under numpy 1.24-1.26 for every type, FLOAT included (TensorRT #2557).
NUMPY_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32",
                "INT64": "int64", "BOOL": "bool", "UINT8": "uint8"}
#: DataType members numpy has no dtype for (refused with :class:`EngineError`): what they are.
NO_NUMPY_DTYPE = {"BF16": "bfloat16", "FP8": "8-bit float", "INT4": "packed 4-bit integer",
                  "FP4": "packed 4-bit float", "E8M0": "8-bit exponent-only float"}


def numpy_dtype(trt_type: Any) -> Any:
    """The ``numpy.dtype`` for a TensorRT ``DataType`` (any version from 8.5);
    :class:`EngineError` for a type numpy cannot hold (BF16, FP8, INT4, FP4, E8M0) or one this
    package does not know, saying to rebuild with float32/float16 I/O."""
    import numpy as np

    name = str(getattr(trt_type, "name", "") or str(trt_type).rpartition(".")[2])
    if name in NUMPY_DTYPES:
        return np.dtype(NUMPY_DTYPES[name])
    what = NO_NUMPY_DTYPE.get(name)
    kind = f"TensorRT type {name} ({what}) has no numpy equivalent" if what else \
        f"unknown TensorRT data type {name!r}"
    raise EngineError(f"{kind}; rebuild the engine with float32/float16 inputs and outputs")


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`DependencyError` saying where to get it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise DependencyError(f"TensorRT is not installed ({exc}). {INSTALL_HINT}") from exc
    return tensorrt


def detect() -> Tuple[Any, TrtFeatures]:
    """Import TensorRT once and parse its version: ``(tensorrt module, features)``."""
    trt = import_tensorrt()
    return trt, TrtFeatures.parse(trt.__version__)


#: TensorRT severity (``trt.ILogger.Severity`` value: 0 internal error ... 4 verbose) -> level.
SEVERITY_LEVELS = (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)
_LOGGER: Any = None
_PLUGINS = False


def forward_message(severity: int, msg: str, verbose: int, errors: Deque[str]) -> None:
    """What the logger does with one TensorRT message (pure): errors are kept (last few, one
    line each) and logged; INFO is logged at DEBUG unless ``verbose`` >= 1, VERBOSE dropped unless
    ``verbose`` >= 2 (TensorRT sends thousands of them during a build)."""
    level = SEVERITY_LEVELS[min(max(int(severity), 0), len(SEVERITY_LEVELS) - 1)]
    if level >= logging.ERROR:
        errors.append(" ".join(str(msg).split()))
    if level == logging.INFO and verbose < 1:
        level = logging.DEBUG
    elif level == logging.DEBUG and verbose < 2:
        return
    log.log(level, "TensorRT: %s", msg)


def trt_logger(verbose: Optional[int] = None) -> Any:
    """The process-wide ``trt.ILogger`` forwarding TensorRT's messages to :mod:`logging`
    (:func:`forward_message`); ``.errors`` holds the last error messages. ``verbose`` (when given)
    sets how much of TensorRT's INFO / VERBOSE output is logged from now on."""
    global _LOGGER
    if _LOGGER is None:
        import_tensorrt()
        import tensorrt as trt

        class _Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)  # pybind11 needs the explicit call
                self.verbose = 0
                self.errors: Deque[str] = deque(maxlen=20)

            def log(self, severity: Any, msg: str) -> None:
                try:
                    forward_message(int(severity), msg, self.verbose, self.errors)
                except Exception:  # never raise into TensorRT
                    pass

        _LOGGER = _Logger()
    if verbose is not None:
        _LOGGER.verbose = int(verbose)
    return _LOGGER


def init_plugins() -> None:
    """Register TensorRT's own plugins (``init_libnvinfer_plugins``) once per process: engines
    whose ONNX needed a plugin (e.g. NMS on TensorRT 8.x) deserialize only after it."""
    global _PLUGINS
    if _PLUGINS:
        return
    logger = trt_logger()
    import tensorrt as trt

    if not trt.init_libnvinfer_plugins(logger, ""):
        log.warning("TensorRT could not register its plugin library (libnvinfer_plugin)")
    _PLUGINS = True


def make_runtime(meta: EngineMetadata, features: TrtFeatures) -> trt.Runtime:
    """A ``trt.Runtime`` set up for the engine ``meta`` describes: TensorRT's plugins registered,
    the sidecar's DLA core, and host code allowed for a version-compatible engine (TensorRT >= 10:
    such a plan carries the lean runtime it runs on)."""
    import tensorrt as trt

    init_plugins()
    runtime = trt.Runtime(trt_logger())
    if meta.dla_core is not None:
        cores = int(runtime.num_DLA_cores)
        if not 0 <= meta.dla_core < cores:
            raise EngineError(f"engine built for DLA core {meta.dla_core}, this device has "
                              f"{cores} DLA core(s); rebuild: {meta.build_command}")
        runtime.DLA_core = int(meta.dla_core)
    TRT10_API = features.api10
    if TRT10_API and meta.version_compatible:
        runtime.engine_host_code_allowed = True
    return runtime
