"""Validated result containers (pure numpy).

Coordinates: continuous image pixels of the *original* frame, pixel ``(i, j)`` covering
``[i, i+1) x [j, j+1)``; boxes are ``x1, y1, x2, y2``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Union, cast

import numpy as np

from .io.uri import redact
from .skeleton import NUM_KEYPOINTS

Index = Union[int, slice, np.ndarray]


def _as(a: object, dtype: type, shape_tail: tuple, name: str) -> np.ndarray:
    arr: np.ndarray = np.ascontiguousarray(a, dtype=dtype)
    if arr.ndim != 1 + len(shape_tail) or tuple(arr.shape[1:]) != shape_tail:
        raise ValueError(f"{name} must have shape (N, {', '.join(map(str, shape_tail))})"
                         f" but has {arr.shape}".replace("(N, )", "(N,)"))
    return arr


@dataclass(frozen=True)
class Frame:
    """One input image: (H, W, 3) uint8 BGR, its index in the source and capture time (s);
    ``camera``: the name of the camera it came from in a multi-camera service ("" otherwise)."""

    image: np.ndarray
    index: int = 0
    timestamp: float = field(default_factory=time.time)
    source: str = ""
    camera: str = ""

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 \
                or img.shape[2] != 3:
            desc = getattr(img, "shape", type(img).__name__)
            raise ValueError(f"Frame.image must be (H, W, 3) uint8 BGR, got {desc}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class Detections:
    """Person boxes of one frame.

    boxes: (N, 4) float32 x1y1x2y2, pixels, original frame; scores: (N,) float32 in [0, 1];
    class_ids: (N,) int32 (0 = person).
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        boxes = _as(self.boxes, np.float32, (4,), "boxes")
        scores = _as(self.scores, np.float32, (), "scores")
        ids = np.zeros(len(boxes), np.int32) if self.class_ids is None else _as(
            self.class_ids, np.int32, (), "class_ids")
        if not len(boxes) == len(scores) == len(ids):
            raise ValueError(f"boxes/scores/class_ids lengths differ: "
                             f"{len(boxes)}/{len(scores)}/{len(ids)}")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", ids)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: Index) -> Detections:
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Detections(self.boxes[index], self.scores[index], self.labels[index])

    @property
    def labels(self) -> np.ndarray:
        """(N,) int32 class ids (never None after construction)."""
        return cast(np.ndarray, self.class_ids)


@dataclass(frozen=True)
class Poses:
    """Keypoints of the persons of one frame.

    keypoints: (N, 17, 2) float32, pixels, original frame; keypoint_scores: (N, 17) float32;
    boxes: (N, 4) float32 x1y1x2y2 (the detector's boxes); box_scores: (N,) float32.
    With tracking (:mod:`trt_pose_td.tracking`): track_ids (N,) int64 (-1: a person no track
    took); keypoints_raw (N, 17, 2) float32, the keypoints before smoothing (None without it).
    """

    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    boxes: np.ndarray
    box_scores: np.ndarray
    track_ids: Optional[np.ndarray] = None
    keypoints_raw: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        kpts = _as(self.keypoints, np.float32, (NUM_KEYPOINTS, 2), "keypoints")
        ks = _as(self.keypoint_scores, np.float32, (NUM_KEYPOINTS,), "keypoint_scores")
        boxes = _as(self.boxes, np.float32, (4,), "boxes")
        bs = _as(self.box_scores, np.float32, (), "box_scores")
        if not len(kpts) == len(ks) == len(boxes) == len(bs):
            raise ValueError("keypoints/keypoint_scores/boxes/box_scores lengths differ")
        for name, value in (("keypoints", kpts), ("keypoint_scores", ks), ("boxes", boxes),
                            ("box_scores", bs)):
            object.__setattr__(self, name, value)
        if self.track_ids is not None:
            ids = _as(self.track_ids, np.int64, (), "track_ids")
            if len(ids) != len(kpts):
                raise ValueError(f"track_ids has {len(ids)} entries for {len(kpts)} persons")
            object.__setattr__(self, "track_ids", ids)
        if self.keypoints_raw is not None:
            raw = _as(self.keypoints_raw, np.float32, (NUM_KEYPOINTS, 2), "keypoints_raw")
            if len(raw) != len(kpts):
                raise ValueError(f"keypoints_raw has {len(raw)} entries for {len(kpts)} persons")
            object.__setattr__(self, "keypoints_raw", raw)

    @classmethod
    def empty(cls, tracked: bool = False) -> Poses:
        """No persons; ``tracked`` gives them an empty ``track_ids`` (a tracker's output)."""
        return cls(np.zeros((0, NUM_KEYPOINTS, 2), np.float32),
                   np.zeros((0, NUM_KEYPOINTS), np.float32),
                   np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0,), np.int64) if tracked else None)

    def __len__(self) -> int:
        return len(self.keypoints)

    def __getitem__(self, index: Index) -> Poses:
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Poses(self.keypoints[index], self.keypoint_scores[index], self.boxes[index],
                     self.box_scores[index],
                     None if self.track_ids is None else self.track_ids[index],
                     None if self.keypoints_raw is None else self.keypoints_raw[index])

    def __iter__(self) -> Iterator[Poses]:
        for i in range(len(self)):
            yield self[i]

    def to_array(self) -> np.ndarray:
        """(N, 17, 3) float32: ``x, y`` (pixels, original frame) and the score of every
        keypoint, in :data:`~.skeleton.KEYPOINT_NAMES` order."""
        return np.concatenate([self.keypoints, self.keypoint_scores[:, :, None]], axis=2)

    @classmethod
    def from_list(cls, persons: List[dict]) -> Poses:
        """The inverse of :meth:`to_list`: poses from the ``"persons"`` of a ``poses.jsonl``
        line or an MQTT message (rounded as they were written)."""
        if not persons:
            return cls.empty()
        xys = np.asarray([p["keypoints"] for p in persons], np.float32).reshape(-1,
                                                                               NUM_KEYPOINTS, 3)
        ids = np.asarray([p.get("track_id", -1) for p in persons], np.int64) \
            if any("track_id" in p for p in persons) else None
        return cls(xys[..., :2], xys[..., 2], np.asarray([p["box"] for p in persons]),
                   np.asarray([p["score"] for p in persons]), track_ids=ids)

    def to_list(self) -> list:
        """JSON-ready persons: ``[{"box", "score", "keypoints": [[x, y, s] x 17]}]``, plus
        ``"track_id"`` with tracking and ``"keypoints_raw"`` (unsmoothed, same layout) with
        smoothing."""
        out = []
        for i in range(len(self)):
            person = {
                "box": [round(float(v), 2) for v in self.boxes[i]],
                "score": round(float(self.box_scores[i]), 4),
                "keypoints": _keypoint_list(self.keypoints[i], self.keypoint_scores[i]),
            }
            if self.track_ids is not None:
                person["track_id"] = int(self.track_ids[i])
            if self.keypoints_raw is not None:
                person["keypoints_raw"] = _keypoint_list(self.keypoints_raw[i],
                                                         self.keypoint_scores[i])
            out.append(person)
        return out


def _keypoint_list(xy: np.ndarray, scores: np.ndarray) -> list:
    """[[x, y, s] x 17] rounded for JSON from (17, 2) pixels and (17,) scores."""
    return [[round(float(x), 2), round(float(y), 2), round(float(s), 4)]
            for (x, y), s in zip(xy, scores)]


class StageTimes(Dict[str, float]):
    """Milliseconds per pipeline stage, in execution order (``{"detect": 12.1, ...}``).

    The pipelines also record ``"total"``: the frame's wall time from entry to result, not a
    sum of the other entries (on the GPU the stages of two frames overlap).
    """

    def add(self, stage: str, ms: float) -> None:
        self[stage] = self.get(stage, 0.0) + ms


@dataclass
class BatchInfo:
    """How one ``pipeline.batch(frames)`` call ran, shared by the results of its frames.

    persons: persons per frame, in the order of the frames given; detector_calls: detector
    engine runs (1 for a dynamic-batch detector, one per frame for a static one);
    keypoint_batches: the batch size of every keypoint engine run, in order (a flip run counts
    once; a pose-guided re-crop pass adds its own runs); ms: wall time of the whole call.
    """

    persons: List[int]
    detector_calls: int = 0
    keypoint_batches: List[int] = field(default_factory=list)
    ms: float = 0.0

    @property
    def frames(self) -> int:
        return len(self.persons)

    def as_dict(self) -> dict:
        """JSON-ready: ``{"frames", "persons", "detector_calls", "keypoint_batches", "ms"}``."""
        return {"frames": self.frames, "persons": list(self.persons),
                "detector_calls": self.detector_calls,
                "keypoint_batches": list(self.keypoint_batches), "ms": round(self.ms, 3)}


@dataclass
class FrameResult:
    """What the pipeline returns for one frame. ``batch``: set by ``pipeline.batch(frames)``
    (the same :class:`BatchInfo` object for every frame of that call), None otherwise.
    ``run_id`` / ``seq``: set by the service (its start id; the camera's frame counter, +1 per
    processed frame from 0), so a consumer can count gaps; unset ("" / None) elsewhere."""

    frame: Frame
    poses: Poses
    times: StageTimes
    batch: Optional[BatchInfo] = None
    run_id: str = ""
    seq: Optional[int] = None

    def to_dict(self) -> dict:
        """The ``poses.jsonl`` object: ``{"frame", "source", "camera" (only when the frame has
        one), "run_id" and "seq" (only when set: the service), "timestamp", "persons": [{"box":
        [x1, y1, x2, y2], "score", "keypoints": [[x, y, score] x 17]}]}`` (pixels, original
        frame; coordinates rounded to 0.01 px, scores to 1e-4)."""
        doc: dict = {"frame": self.frame.index,
                     "source": redact(self.frame.source)}  # never a camera password
        if self.frame.camera:
            doc["camera"] = self.frame.camera
        if self.run_id:
            doc["run_id"] = self.run_id
        if self.seq is not None:
            doc["seq"] = self.seq
        doc.update(timestamp=round(self.frame.timestamp, 6), persons=self.poses.to_list())
        return doc

    def to_json(self) -> str:
        """:meth:`to_dict` as one compact JSON line (no newline): a ``poses.jsonl`` line. NaN is
        refused (ValueError), never written as invalid JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)


def summarize_times(all_times: List[StageTimes]) -> Dict[str, Dict[str, float]]:
    """Per stage: mean, median and p90 milliseconds over frames (stages in first-seen order)."""
    stages: List[str] = []
    for t in all_times:
        stages.extend(s for s in t if s not in stages)
    out: Dict[str, Dict[str, float]] = {}
    for s in stages:
        v = np.array([t.get(s, 0.0) for t in all_times], np.float64)
        out[s] = {"mean": float(v.mean()), "median": float(np.median(v)),
                  "p90": float(np.percentile(v, 90)), "n": int(len(v))}
    return out
