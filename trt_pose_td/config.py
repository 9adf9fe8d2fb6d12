"""The pipeline's configuration: one frozen, validated dataclass (pure data, no model loading).

Field name = ``trt-pose-td run`` flag without dashes = ``[pipeline]`` TOML key (``det_size`` is
``--det-size``, ``max_batch`` is ``--max-batch``). Invalid values raise :class:`ConfigError` at
construction, so the CLI, the service's TOML and the Python API all get the same one-line error.
:func:`trt_pose_td.pipelines.plan.resolve` turns a config into the concrete plan (specs, files,
backend).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Mapping, Optional, Tuple, Union, get_type_hints

from .config_checks import BACKENDS, PREPROCESSORS, check_pipeline_config, pipeline_values
from .errors import ConfigError
from .models import DEFAULT_DETECTOR, DEFAULT_POSE

__all__ = ["BACKENDS", "PREPROCESSORS", "PipelineConfig"]


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that selects and tunes the pipeline.

    detector / pose: registry names or ONNX paths (a path follows the contract of the registry
    model ``detector_like`` / ``pose_like``); det_size: detector input (W, H), a multiple of 32,
    or None for the model's default (RTMDet: 416; measured, docs/accuracy.md); score_threshold:
    minimum person score in [0, 1] (0.2, measured); iou_threshold: NMS IoU in (0, 1];
    max_persons: most persons per frame; max_batch: persons per keypoint-model call (CPU: 8,
    measured; the GPU pipeline uses its engine profile's max); refine: heatmap sub-pixel
    refinement (``none``, ``quarter``, ``dark``); box_padding: crop = box x this, > 0;
    flip: flip test-time augmentation; recrop: pose-guided second keypoint pass.

    backend: ``onnxruntime``, ``tensorrt`` or ``auto``; threads: ONNX Runtime intra-op threads
    (None: one per physical core); preprocessor: ``cv2`` or ``twin`` (CPU pipeline);
    engine_dir: TensorRT engine folder (None: ``<cache>/engines``); precision: ``fp32``,
    ``fp16``, ``int8`` or None (fp32 on ONNX Runtime, fp16 on TensorRT); int8_mode: ``qdq``
    (default) or ``calibrator`` engines for TensorRT INT8.

    track: a stable integer ``track_id`` per person (:mod:`.pipelines.tracked`); det_every:
    run the detector every K-th frame and follow the tracks by keypoints between; smooth:
    one-euro filter on the keypoints (``keypoints_raw`` keeps the unfiltered ones). Either of
    the last two turns tracking on. Measured on vtest.avi: docs/tracking.md.
    """

    detector: str = DEFAULT_DETECTOR
    pose: str = DEFAULT_POSE
    detector_like: str = DEFAULT_DETECTOR
    pose_like: str = DEFAULT_POSE
    det_size: Optional[Tuple[int, int]] = None
    score_threshold: float = 0.2
    iou_threshold: float = 0.6
    max_persons: int = 100
    max_batch: int = 8
    refine: str = "dark"
    box_padding: float = 1.25
    flip: bool = False
    recrop: bool = False
    backend: str = "onnxruntime"
    threads: Optional[int] = None
    preprocessor: str = "cv2"
    engine_dir: Optional[str] = None
    precision: Optional[str] = None
    int8_mode: Optional[str] = None
    track: bool = False
    det_every: int = 1
    smooth: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.det_size, list):
            object.__setattr__(self, "det_size", tuple(self.det_size))
        check_pipeline_config(self)

    @classmethod
    def from_table(cls, *tables: Mapping[str, Any], where: str = "config") -> PipelineConfig:
        """The config of ``[pipeline]`` tables laid over the defaults, later tables winning key
        by key (defaults -> TOML -> ``--set`` -> flags, as ``serve`` builds it). Keys are the
        field names (``det_size`` may be N, ``"WxH"`` or ``[W, H]``); an unknown key, a wrong
        type or a value out of range is a one-line :class:`ConfigError` naming ``where``."""
        values: dict = {}
        kinds = _field_kinds()
        for table in tables:
            values.update(pipeline_values(table, f"{where} [pipeline]", kinds))
        try:
            return replace(cls(), **values)
        except ConfigError as exc:
            raise ConfigError(f"{where} [pipeline]: {exc}") from None

    def as_dict(self) -> dict:
        return asdict(self)



def _field_kinds() -> Dict[str, Any]:
    """Each :class:`PipelineConfig` field's type in a table, from its annotation: bool, int,
    float or str (``Optional[X]`` is X), ``tuple`` for ``det_size``."""
    kinds: Dict[str, Any] = {}
    for name, hint in get_type_hints(PipelineConfig).items():
        if getattr(hint, "__origin__", None) is Union:  # Optional[X]
            hint = next(a for a in hint.__args__ if a is not type(None))
        kinds[name] = tuple if getattr(hint, "__origin__", None) is tuple else hint
    return kinds
