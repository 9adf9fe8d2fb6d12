"""A synthetic scene for tracker tests: persons as boxes moving on straight lines, a detector
and a keypoint model that answer from the ground truth (mock factories, no models)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Set, Tuple

import numpy as np

from trt_pose_td.geometry import box_iou
from trt_pose_td.types import Detections, Frame

# a standing person's keypoints in a unit box (x right, y down), COCO order
_TEMPLATE = np.array([
    [0.5, 0.08], [0.46, 0.06], [0.54, 0.06], [0.42, 0.08], [0.58, 0.08], [0.3, 0.22],
    [0.7, 0.22], [0.22, 0.38], [0.78, 0.38], [0.2, 0.52], [0.8, 0.52], [0.36, 0.55],
    [0.64, 0.55], [0.36, 0.76], [0.64, 0.76], [0.36, 0.97], [0.64, 0.97]], np.float32)


@dataclass
class Person:
    """Box centre at frame i: ``start + velocity * i`` (pixels), ``width`` x ``height``;
    present in frames [first, last]."""

    start: Tuple[float, float]
    velocity: Tuple[float, float]
    width: float = 60.0
    height: float = 160.0
    first: int = 0
    last: int = 10 ** 6
    undetected: Set[int] = field(default_factory=set)

    def box(self, i: int) -> np.ndarray:
        cx = self.start[0] + self.velocity[0] * i
        cy = self.start[1] + self.velocity[1] * i
        return np.array([cx - self.width / 2, cy - self.height / 2, cx + self.width / 2,
                         cy + self.height / 2], np.float32)

    def keypoints(self, i: int) -> np.ndarray:
        b = self.box(i)
        return b[:2] + _TEMPLATE * (b[2:] - b[:2])


@dataclass
class World:
    persons: List[Person]
    width: int = 640
    height: int = 480
    fps: float = 10.0
    noise: float = 0.0
    seed: int = 0
    detect_calls: int = 0
    estimate_calls: int = 0

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._image = np.zeros((self.height, self.width, 3), np.uint8)

    def frames(self, n: int) -> List[Frame]:
        return [Frame(self._image, i, i / self.fps, "world") for i in range(n)]

    def visible(self, i: int) -> List[int]:
        """Persons present at frame i with their box at least half inside the frame."""
        out = []
        for k, p in enumerate(self.persons):
            b = p.box(i)
            inner = np.clip(b, 0, [self.width, self.height, self.width, self.height])
            inside = (inner[2] - inner[0]) * (inner[3] - inner[1])
            if p.first <= i <= p.last and inside >= 0.5 * p.width * p.height:
                out.append(k)
        return out

    def detect(self, frame: Frame) -> Detections:
        self.detect_calls += 1
        ks = [k for k in self.visible(frame.index) if frame.index not in
              self.persons[k].undetected]
        if not ks:
            return Detections.empty()
        return Detections(np.stack([self.persons[k].box(frame.index) for k in ks]),
                          np.full(len(ks), 0.9, np.float32))

    def owner(self, i: int, box: np.ndarray) -> Optional[int]:
        """The visible person whose true box overlaps ``box`` most (IoU >= 0.3), or None."""
        ks = self.visible(i)
        if not ks:
            return None
        iou = box_iou(box[None], np.stack([self.persons[k].box(i) for k in ks]))[0]
        return ks[int(iou.argmax())] if iou.max() >= 0.3 else None

    def estimate(self, frame: Frame, boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        self.estimate_calls += 1
        kps = np.zeros((len(boxes), 17, 2), np.float32)
        scores = np.full((len(boxes), 17), 0.05, np.float32)
        for r, box in enumerate(boxes):
            k = self.owner(frame.index, box)
            if k is not None:
                kps[r] = self.persons[k].keypoints(frame.index) + self._rng.normal(
                    0, self.noise, (17, 2))
                scores[r] = 0.9
            else:
                kps[r] = (box[:2] + box[2:]) / 2
        return kps, scores

    def who(self, i: int, keypoints: np.ndarray) -> int:
        """Index of the person whose true keypoints are nearest to ``keypoints`` (17, 2)."""
        d = [np.abs(p.keypoints(i) - keypoints).mean() for p in self.persons]
        return int(np.argmin(d))
