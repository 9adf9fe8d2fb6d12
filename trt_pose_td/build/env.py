"""Where an engine is being built: TensorRT version, GPU, DLA cores.

:class:`BuildEnv` is plain data so every decision that depends on it (INT8 path, DLA, version
compatibility) can be tested without a GPU; :func:`detect_env` fills it on the build machine
(the GPU through :mod:`trt_pose_td.cuda.driver`, TensorRT through
:mod:`trt_pose_td.engines.trt_api`);
:func:`device_memory` is what the builder asks before each engine.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Tuple

from ..engines.trt_api import TrtFeatures


@dataclass(frozen=True)
class BuildEnv:
    """The build machine. compute_capability: ``"8.7"``; dla_cores: 0 on GPUs without DLA."""

    trt: TrtFeatures
    gpu_name: str
    compute_capability: str
    dla_cores: int = 0


log = logging.getLogger(__name__)


def lazy_module_loading() -> None:
    """``CUDA_MODULE_LOADING=LAZY`` unless the user chose otherwise: CUDA 11.7 to 12.1 load every
    kernel of TensorRT's libraries at initialisation otherwise (hundreds of MiB of the memory a
    Jetson build needs: PyTorch measured 667 -> 287 MB; TensorRT warns "CUDA lazy loading is not
    enabled"). It must be set before
    CUDA initialises in this process; CUDA 12.2+ is lazy by default, 11.4 (JetPack 5) ignores it."""
    if os.environ.setdefault("CUDA_MODULE_LOADING", "LAZY") != "LAZY":
        log.info("CUDA_MODULE_LOADING=%s (left as set)", os.environ["CUDA_MODULE_LOADING"])


def detect_env() -> BuildEnv:
    """Import TensorRT, query GPU 0 and the DLA cores TensorRT sees on it."""
    from ..cuda.driver import Device
    from ..engines.trt_api import detect, trt_logger

    lazy_module_loading()  # before the first CUDA call of the build
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

    lazy_module_loading()
    with Device(ordinal) as device:
        return device.memory_info()
