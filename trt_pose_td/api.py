"""Open a pipeline: the one place that knows both implementations.

``open_pipeline(cfg)`` (or keyword arguments of :class:`~.config.PipelineConfig`) resolves the
config once (:func:`~.pipelines.plan.resolve`) and builds the CPU pipeline (ONNX Runtime) or the
GPU pipeline (TensorRT) from that plan, wrapped in the tracker when the config asks for tracking.
All satisfy :class:`Pipeline` (defined in :mod:`.pipelines.base`, re-exported here).
:func:`draw` and :func:`sample_image` complete the public surface re-exported by ``trt_pose_td``
(docs/api.md).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, TypedDict, Union

import numpy as np

if TYPE_CHECKING:
    from typing_extensions import Unpack

from .config import PipelineConfig
from .errors import ConfigError, require
from .pipelines.base import Pipeline
from .pipelines.plan import resolve
from .types import FrameResult, Poses


class PipelineOptions(TypedDict, total=False):
    """:func:`open_pipeline`'s keyword options: the fields of :class:`PipelineConfig` (whose
    docstring says what each means; ``det_size`` may also be one int, square), typed so a
    checker catches a misspelt or mistyped option (tests/test_api.py keeps the two in step)."""

    detector: str
    pose: str
    detector_like: str
    pose_like: str
    det_size: Union[int, Tuple[int, int], None]
    score_threshold: float
    iou_threshold: float
    max_persons: int
    max_batch: int
    refine: str
    box_padding: float
    flip: bool
    recrop: bool
    backend: str
    threads: Optional[int]
    preprocessor: str
    engine_dir: Optional[str]
    precision: Optional[str]
    int8_mode: Optional[str]
    track: bool
    det_every: int
    smooth: bool


def open_pipeline(cfg: Optional[PipelineConfig] = None, *, progress: bool = False,
                  **options: Unpack[PipelineOptions]) -> Pipeline:
    """A ready pipeline for ``cfg`` (default :class:`PipelineConfig()`), with ``options``
    overriding its fields (``open_pipeline(backend="auto", det_size=(640, 640))``).

    Model files are fetched (sha256-checked) when needed; ``progress`` shows download bars.
    Raises :class:`~.errors.ConfigError` for a bad option, :class:`~.errors.AssetError` for a
    model it cannot get, :class:`~.errors.EngineError` for engines it cannot load.
    """
    cfg = cfg or PipelineConfig()
    if options:
        fields: Dict[str, Any] = dict(options)  # untyped callers may pass anything
        unknown = sorted(set(fields) - set(cfg.as_dict()))
        if unknown:
            raise ConfigError(f"unknown pipeline option(s) {', '.join(unknown)}; known: "
                              f"{', '.join(cfg.as_dict())}")
        size = fields.get("det_size")
        if isinstance(size, int) and not isinstance(size, bool):
            fields["det_size"] = (size, size)
        cfg = replace(cfg, **fields)
    plan = resolve(cfg, progress)
    pipeline: Pipeline
    if plan.backend == "tensorrt":
        from .pipelines.gpu import GpuPipeline

        pipeline = GpuPipeline.from_plan(plan)
    else:
        from .pipelines.cpu import CpuPipeline

        pipeline = CpuPipeline.from_plan(plan)
    from .pipelines.tracked import TrackedPipeline, tracker_config

    tracking = tracker_config(cfg.track, cfg.det_every, cfg.smooth)
    return pipeline if tracking is None else TrackedPipeline(pipeline, tracking)


def draw(image: np.ndarray, result: Union[FrameResult, Poses], keypoint_threshold: float = 0.3,
         draw_boxes: bool = True, min_person_score: float = 0.0) -> np.ndarray:
    """A copy of ``image`` ((H, W, 3) uint8 BGR, the frame the result's pixels refer to) with
    every person's box, limbs and keypoints drawn (what ``trt-pose-td run`` writes). Keypoints
    scoring below ``keypoint_threshold`` and persons below ``min_person_score`` are left out.
    Needs OpenCV (``pip install 'trt-pose-td[cv]'``)."""
    from .io.draw import draw_poses

    require("cv2", "cv", "opencv-python-headless")
    poses = result.poses if isinstance(result, FrameResult) else result
    return draw_poses(image, poses, keypoint_threshold, draw_boxes, min_person_score)


def sample_image() -> Path:
    """The sample photo shipped in the package (640x480 JPEG, COCO val2017 000000001000.jpg,
    CC BY 2.0, about 14 people): something to run on without downloading anything."""
    from .assets import sample_paths

    return sample_paths("sample", progress=False)[0]
