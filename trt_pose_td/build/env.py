"""Where an engine is being built: TensorRT version, GPU, DLA cores.

:class:`BuildEnv` is plain data so every decision that depends on it (INT8 path, DLA, version
compatibility) can be tested without a GPU; :func:`detect_env` fills it on the build machine
(the GPU through :mod:`trt_pose_td.cuda.driver`, TensorRT through :mod:`trt_pose_td.trt_api`);
:func:`device_memory` is what the builder asks before each engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from ..trt_api import TrtFeatures


@dataclass(frozen=True)
class BuildEnv:
    """The build machine. compute_capability: ``"8.7"``; dla_cores: 0 on GPUs without DLA."""

    trt: TrtFeatures
    gpu_name: str
    compute_capability: str
    dla_cores: int = 0


def detect_env() -> BuildEnv:
    """Import TensorRT, query GPU 0 and the DLA cores TensorRT sees on it."""
    from ..cuda.driver import Device
    from ..trt_api import detect, trt_logger

    _, features = detect()
    import tensorrt as trt

    with Device(0) as device:
        info = device.info
        builder = trt.Builder(trt_logger())
        return BuildEnv(features, info.name, info.compute_capability, int(builder.num_DLA_cores))


def device_memory(ordinal: int = 0) -> Tuple[int, int]:
    """(free, total) bytes of GPU ``ordinal`` now (``cuMemGetInfo``; on a Jetson the DRAM it
    shares with the CPU, swap not counted)."""
    from ..cuda.driver import Device

    with Device(ordinal) as device:
        return device.memory_info()
