"""Open a pipeline: the one place that knows both implementations.

``open_pipeline(cfg)`` (or keyword arguments of :class:`~.config.PipelineConfig`) resolves the
config once (:func:`~.plan.resolve`) and builds the CPU pipeline (ONNX Runtime) or the GPU
pipeline (TensorRT) from that plan. Both satisfy :class:`Pipeline`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterator, List, Optional, Sequence

try:  # Python >= 3.8
    from typing import Protocol
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol  # type: ignore[assignment]

from .config import PipelineConfig
from .errors import ConfigError
from .plan import resolve
from .types import Detections, FrameResult


class Pipeline(Protocol):
    """What every pipeline does (CPU: :class:`~.pipeline.CpuPipeline`, GPU:
    :class:`~.gpu_pipeline.GpuPipeline`).

    ``pipeline(image, detections=None)``: poses of one frame (a :class:`~.types.Frame`, an
    (H, W, 3) uint8 BGR array or an image path); given ``detections`` (boxes in frame pixels)
    replace the detector. ``pipeline.stream(source)``: results in frame order for a path, URI
    or iterable of frames/arrays; implementations may overlap frames internally.
    ``pipeline.batch(frames, detections=None)``: several frames (one per camera) at once, results
    in the order given, each with a shared :class:`~.types.BatchInfo` (persons per frame, run
    sizes); the CPU pipeline runs one detector batch and ONE keypoint batch across the frames,
    the GPU pipeline (for now) one frame after another. ``close()`` releases the engines (also
    on leaving a ``with`` block).
    """

    #: ``onnxruntime`` or ``tensorrt``: which engines run.
    backend: str

    def __call__(self, image: Any, detections: Optional[Detections] = None) -> FrameResult: ...

    def stream(self, frames: Any) -> Iterator[FrameResult]: ...

    def batch(self, images: Sequence[Any],
              detections: Optional[Sequence[Optional[Detections]]] = None
              ) -> List[FrameResult]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


def open_pipeline(cfg: Optional[PipelineConfig] = None, *, progress: bool = False,
                  **options: Any) -> Pipeline:
    """A ready pipeline for ``cfg`` (default :class:`PipelineConfig()`), with ``options``
    overriding its fields (``open_pipeline(backend="auto", det_size=(640, 640))``).

    Model files are fetched (sha256-checked) when needed; ``progress`` shows download bars.
    Raises :class:`~.errors.ConfigError` for a bad option, :class:`~.errors.AssetError` for a
    model it cannot get, :class:`~.errors.EngineError` for engines it cannot load.
    """
    cfg = cfg or PipelineConfig()
    if options:
        unknown = sorted(set(options) - set(cfg.as_dict()))
        if unknown:
            raise ConfigError(f"unknown pipeline option(s) {', '.join(unknown)}; known: "
                              f"{', '.join(cfg.as_dict())}")
        if isinstance(options.get("det_size"), int):
            options["det_size"] = (options["det_size"], options["det_size"])
        cfg = replace(cfg, **options)
    plan = resolve(cfg, progress)
    if plan.backend == "tensorrt":
        from .gpu_pipeline import GpuPipeline

        return GpuPipeline.from_plan(plan)
    from .pipeline import CpuPipeline

    return CpuPipeline.from_plan(plan)
