"""Where an engine is being built: TensorRT version, GPU, DLA cores.

:class:`BuildEnv` is plain data so every decision that depends on it (INT8 path, DLA, version
compatibility) can be tested without a GPU; :func:`detect_env` fills it on the build machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

from ..errors import DependencyError, EngineError
from .trt_version import TrtFeatures


@dataclass(frozen=True)
class BuildEnv:
    """The build machine. compute_capability: ``"8.7"``; dla_cores: 0 on GPUs without DLA."""

    trt: TrtFeatures
    gpu_name: str
    compute_capability: str
    dla_cores: int = 0

    @property
    def sm(self) -> str:
        """``"87"`` for compute capability 8.7."""
        return self.compute_capability.replace(".", "")


def cuda_runtime() -> Any:
    """cuda-python's runtime module (``cuda.bindings.runtime``; ``cuda.cudart`` before 12.6)."""
    try:
        from cuda.bindings import runtime
        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart
        return cudart
    except ImportError as exc:
        raise DependencyError(f"cuda-python is not installed ({exc}); install it with: pip install "
                              "'trt-pose-td[trt]'") from exc


def check_cuda(cudart: Any, result: Tuple[Any, ...], what: str) -> Any:
    """Unpack a cuda-python ``(err, *values)`` tuple; :class:`EngineError` naming ``what``."""
    err, values = result[0], result[1:]
    if err != cudart.cudaError_t.cudaSuccess:
        name = cudart.cudaGetErrorName(err)[1]
        raise EngineError(f"{what} failed: {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def gpu_info(device: int = 0) -> Tuple[str, str]:
    """(name, compute capability ``"major.minor"``) of CUDA device ``device``."""
    cudart = cuda_runtime()
    prop = check_cuda(cudart, cudart.cudaGetDeviceProperties(device),
                      f"cudaGetDeviceProperties({device}) (is there an NVIDIA GPU and driver?)")
    name = prop.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return str(name), f"{prop.major}.{prop.minor}"


def detect_env(features: TrtFeatures) -> BuildEnv:
    """Query the GPU (cuda-python) and the DLA cores TensorRT sees on it."""
    import tensorrt as trt

    name, cc = gpu_info()
    builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    return BuildEnv(features, name, cc, int(builder.num_DLA_cores))
