"""The installed TensorRT: its version, parsed once, and what that version can do (pure).

Every version-dependent decision of the builder reads a :class:`TrtFeatures`, never a version
string. The TensorRT Python API differs between the versions JetPack ships:

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

from dataclasses import dataclass
from typing import Any, Tuple

from ..errors import DependencyError, EngineError

#: The oldest TensorRT the project builds for (JetPack 5.1: named-tensor API, INMSLayer).
MIN_VERSION = "8.5"

INSTALL_HINT = ("TensorRT's Python bindings come with JetPack on a Jetson (python3-libnvinfer; "
                "inside a container use an l4t-tensorrt / l4t-jetpack base image) and with "
                "NVIDIA's TensorRT container or `pip install tensorrt` on x86; building engines "
                "needs them, running on ONNX Runtime does not.")


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
