"""A host-memory stand-in for the GPU runtime, so the GPU pipeline's orchestration runs in CI.

THIS IS A TEST DOUBLE, NOT A GPU. It runs the real :class:`trt_pose_td.pipelines.gpu.GpuPipeline`
code (its buffers, pointer offsets, chunking at the engine profile's max batch, streams and events
as the only ordering, the two-slot overlap of ``stream``, zero-copy vs pinned upload) against:

- :mod:`.driver`: device, streams, events and device / pinned / mapped buffers on host memory
  with fake addresses (out-of-range, freed and host-only pointers raise; streams run lazily so
  missing waits and syncs show up);
- :mod:`.kernels`: the real :class:`~trt_pose_td.cuda.launchers.Kernels` host code with the numpy
  twins as kernel bodies;
- :mod:`.engine`: ONNX Runtime behind TensorRT's device interface.

What it cannot tell: GPU speed, real concurrency between streams (it runs one legal, adversarial
schedule), TensorRT's numerics and engine building, the CUDA kernels' own correctness (the
``gpu``-marked tests compare kernels with their twins and the pipeline with the CPU on a GPU).

:func:`install` swaps the stand-in classes into :mod:`trt_pose_td.cuda.driver` (where
``GpuPipeline`` imports them at call time) and returns the :class:`~.driver.Machine`.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest

from . import driver as standin_driver
from .driver import Device, Machine
from .engine import StandinEngine
from .kernels import StandinKernels

__all__ = ["Device", "Machine", "StandinEngine", "StandinKernels", "install", "gpu_pipeline"]

_CLASSES = ("Device", "Stream", "Event", "DeviceBuffer", "PinnedBuffer", "MappedBuffer")


def install(monkeypatch: pytest.MonkeyPatch) -> Machine:
    """A fresh stand-in machine, its classes patched over the real driver's (undone with
    ``monkeypatch``)."""
    from trt_pose_td.cuda import driver, launchers

    machine = Machine()
    monkeypatch.setattr(Machine, "current", machine)
    for name in _CLASSES:
        monkeypatch.setattr(driver, name, getattr(standin_driver, name))
    monkeypatch.setattr(launchers, "DeviceBuffer", standin_driver.DeviceBuffer)  # DARK weights
    return machine


def gpu_pipeline(detector: Any, pose: Any, plan: Any, pose_batch: int = 4,
                 max_persons: int = 32, zero_copy: Optional[bool] = None,
                 integrated: bool = False, params: Any = None, pose_spec: Any = None,
                 det_batch: int = 1, flip: bool = False, recrop: bool = False) -> Any:
    """A real ``GpuPipeline`` on the installed stand-in: ``detector`` / ``pose`` are
    :class:`~trt_pose_td.engines.onnxruntime.OrtEngine` s of ``plan``'s two models (borrowed;
    ``pose_spec``: another keypoint model's spec), the engines' profile max batches are
    ``det_batch`` and ``pose_batch``; ``params``: detector thresholds (default: the plan's);
    ``flip`` / ``recrop``: the keypoint stage's test-time flip and pose-guided re-crop."""
    from trt_pose_td.pipelines.gpu import GpuPipeline
    from trt_pose_td.pipelines.stages import Detector, PoseEstimator

    pose_spec = pose_spec or plan.pose
    device = Device(0, integrated=integrated)
    det_w, det_h = plan.detector.preprocess.input_size
    pose_w, pose_h = pose_spec.preprocess.input_size
    det = StandinEngine(detector, det_batch, (det_h, det_w))
    kpt = StandinEngine(pose, pose_batch, (pose_h, pose_w))
    return GpuPipeline(Detector(det, plan.detector, params or plan.params),
                       PoseEstimator(kpt, pose_spec, kpt.max_batch, plan.cfg.refine, flip=flip,
                                     recrop=recrop),
                       device, StandinKernels(device), max_persons, zero_copy)
