"""What the stand-in pipeline tests share: the default packaged models on ONNX Runtime, the
reference (:class:`~trt_pose_td.pipelines.cpu.CpuPipeline` with the GPU crop kernel's twin
sampling on the SAME sessions, keypoint chunks of the same size), a stand-in ``GpuPipeline`` that
must have released everything when it closes, and the comparison at the documented tolerance.

Tolerance: keypoints 1e-3 px, scores 1e-5. Both sides run the same float32 arithmetic on the same
ONNX Runtime calls (DARK included: the CPU decoder and the twin call one DARK step), so what is
left is the host's mapping of crop keypoints back to the frame; any orchestration bug (wrong
crop, chunk, person or frame; a read before its write) moves keypoints by pixels.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterator, Tuple

import numpy as np
import pytest

from . import gpu_pipeline, install

KEYPOINT_ATOL, SCORE_ATOL = 1e-3, 1e-5
Models = Tuple[Any, Any, Any]


def load_models(pose_batch: int) -> Models:
    """(plan, detector session, keypoint session): the default packaged pair (no mirror)."""
    from trt_pose_td.config import PipelineConfig
    from trt_pose_td.engines.onnxruntime import OrtEngine
    from trt_pose_td.pipelines.plan import resolve

    plan = resolve(PipelineConfig(preprocessor="twin", max_batch=pose_batch), progress=False)
    return plan, OrtEngine(plan.detector_file), OrtEngine(plan.pose_file)


def close_models(models: Models) -> None:
    for engine in models[1:]:
        engine.close()


def models_fixture(pose_batch: int) -> Callable[..., Any]:
    """A module-scoped ``models`` fixture: :func:`load_models`, closed after the module."""

    @pytest.fixture(scope="module")
    def models() -> Iterator[Models]:
        loaded = load_models(pose_batch)
        yield loaded
        close_models(loaded)

    return models


def machine_fixture() -> Callable[..., Any]:
    """A ``machine`` fixture: a fresh stand-in installed for the test (undone after it)."""

    @pytest.fixture
    def machine(monkeypatch: pytest.MonkeyPatch) -> Any:
        return install(monkeypatch)

    return machine


def cpu_reference(models: Models, pose_batch: int, flip: bool = False, recrop: bool = False,
                  params: Any = None) -> Any:
    """The CPU pipeline with twin sampling on the same sessions (not closed: they are borrowed)."""
    from trt_pose_td.cuda.twins import TwinPreprocessor
    from trt_pose_td.pipelines.cpu import CpuPipeline
    from trt_pose_td.pipelines.stages import Detector, PoseEstimator

    plan, det, pose = models
    return CpuPipeline(Detector(det, plan.detector, params or plan.params, TwinPreprocessor()),
                       PoseEstimator(pose, plan.pose, pose_batch, plan.cfg.refine,
                                     TwinPreprocessor(), flip=flip, recrop=recrop))


@contextmanager
def opened(models: Models, machine: Any, pose: Any = None, **kw: Any) -> Iterator[Any]:
    """A stand-in GpuPipeline (``pose``: another keypoint session, with ``pose_spec``); on exit
    it is closed and must have released everything."""
    plan, det, default_pose = models
    pipe = gpu_pipeline(det, pose or default_pose, plan, **kw)
    try:
        yield pipe
    finally:
        pipe.close()
    assert machine.live() == [], "GpuPipeline.close() left these behind"


def few(models: Models, n: int) -> Any:
    """Detector thresholds keeping the n best persons (cheap frames)."""
    return replace(models[0].params, max_detections=n)


def assert_same_poses(a: Any, b: Any, box_atol: float = 0.0) -> None:
    """Same persons: boxes equal (or within ``box_atol`` px), keypoints within 1e-3 px, scores
    within 1e-5."""
    assert len(a) == len(b)
    np.testing.assert_allclose(a.boxes, b.boxes, rtol=0, atol=box_atol)
    np.testing.assert_allclose(a.keypoints, b.keypoints, rtol=0, atol=KEYPOINT_ATOL)
    np.testing.assert_allclose(a.keypoint_scores, b.keypoint_scores, rtol=0, atol=SCORE_ATOL)
