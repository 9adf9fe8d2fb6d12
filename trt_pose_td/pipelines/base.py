"""What every pipeline is and shares: the :class:`Pipeline` protocol (public, re-exported by
``trt_pose_td``), the check of ``batch``'s given boxes and ``batch`` as one call per frame.

Below the pipelines (:mod:`.cpu`, :mod:`.gpu`, :mod:`.tracked`) and above the data they pass
(:mod:`trt_pose_td.types`, :mod:`trt_pose_td.io.inputs`); nothing here loads a model.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Iterator, List, Optional, Protocol, Sequence, TypeVar

from ..io.inputs import FramesLike, ImageLike
from ..types import BatchInfo, Detections, FrameResult

if TYPE_CHECKING:
    from .stages import Detector, PoseEstimator

#: What a ``batch`` call's items are (an :data:`~trt_pose_td.io.inputs.ImageLike`, or frames).
Item = TypeVar("Item")


class Pipeline(Protocol):
    """What every pipeline does (CPU: :class:`~.cpu.CpuPipeline`, GPU: :class:`~.gpu.GpuPipeline`,
    with tracking around either: :class:`~.tracked.TrackedPipeline`).

    ``pipeline(image, detections=None)``: poses of one frame (a :class:`~trt_pose_td.types.Frame`,
    an (H, W, 3) uint8 BGR array or an image path); given ``detections`` (boxes in frame pixels)
    replace the detector. ``pipeline.stream(source)``: results in frame order for a path, URI
    or iterable of frames/arrays; implementations may overlap frames internally.
    ``pipeline.batch(frames, detections=None)``: several frames (one per camera) at once, results
    in the order given, each with a shared :class:`~trt_pose_td.types.BatchInfo` (persons per
    frame, run sizes): one detector batch and ONE keypoint batch across the frames. ``close()``
    releases the engines (also on leaving a ``with`` block).
    """

    #: ``onnxruntime`` or ``tensorrt``: which engines run.
    backend: str

    def __call__(self, image: ImageLike, detections: Optional[Detections] = None
                 ) -> FrameResult: ...

    def stream(self, frames: FramesLike) -> Iterator[FrameResult]: ...

    def batch(self, images: Sequence[ImageLike],
              detections: Optional[Sequence[Optional[Detections]]] = None
              ) -> List[FrameResult]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Pipeline: ...

    def __exit__(self, *exc: object) -> None: ...


class StagedPipeline(Pipeline, Protocol):
    """A :class:`Pipeline` built from the two host stages (both of this package's pipelines):
    what the tracker needs beyond the protocol (the keypoint stage's batch size)."""

    detector: Detector
    pose: PoseEstimator


def given_detections(detections: Optional[Sequence[Optional[Detections]]], count: int
                     ) -> List[Optional[Detections]]:
    """``batch(frames, detections)``'s boxes per frame (None: run the detector), checked to be
    one per frame."""
    given: List[Optional[Detections]] = (list(detections) if detections is not None
                                         else [None] * count)
    if len(given) != count:
        raise ValueError(f"{count} frames but {len(given)} detections")
    return given


def per_frame_batch(call: Callable[[Item, Optional[Detections]], FrameResult],
                    images: Sequence[Item],
                    detections: Optional[Sequence[Optional[Detections]]],
                    max_batch: int) -> List[FrameResult]:
    """``batch(frames)`` as one ``call(image, detections)`` per frame (a tracked pipeline with
    ``det_every`` > 1: each camera's frame needs that camera's previous one): one detector run
    and ``ceil(persons / max_batch)`` keypoint runs per frame. Results as
    :meth:`.cpu.CpuPipeline.batch` gives them: in order, all sharing one
    :class:`~trt_pose_td.types.BatchInfo` (each frame keeps its own stage times and
    ``"total"``)."""
    given = given_detections(detections, len(images))
    t0 = time.perf_counter()
    results = [call(image, d) for image, d in zip(images, given)]
    info = BatchInfo([len(r.poses) for r in results], sum(d is None for d in given))
    for n in info.persons:
        info.keypoint_batches += [min(max_batch, n - s) for s in range(0, n, max_batch)]
    info.ms = (time.perf_counter() - t0) * 1e3
    for r in results:
        r.batch = info
    return results
