"""Result sinks: JSONL, annotated images, annotated video."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import IO, Any, Optional, Set, Tuple

from ..errors import ConfigError
from ..types import FrameResult
from .draw import draw_poses
from .uri import redact

log = logging.getLogger(__name__)


class Sink:
    """Receives every frame result; ``close()`` flushes."""

    def write(self, result: FrameResult) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class JsonlSink(Sink):
    """One JSON object per frame (``FrameResult.to_json``) to a file or stdout ("-").

    Each line is flushed as written, so a reader tailing the file never sees half a frame.
    ``append`` keeps an existing file's lines (the service, across restarts).
    """

    def __init__(self, path: str = "-", append: bool = False) -> None:
        self.path = path
        self._own = path != "-"
        if self._own:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[str] = (open(path, "a" if append else "w", encoding="utf-8") if self._own
                            else sys.stdout)

    def write(self, result: FrameResult) -> None:
        doc = result.to_json()
        doc["source"] = redact(str(doc.get("source", "")))  # never a camera password
        self._f.write(json.dumps(doc, separators=(",", ":")) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._own and not self._f.closed:
            self._f.close()


class ImageSink(Sink):
    """Annotated frames as ``DIR/<source stem>.jpg`` (``<stem>_<frame>.jpg`` on repeats)."""

    def __init__(self, folder: str, keypoint_threshold: float = 0.3,
                 min_person_score: float = 0.0) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.threshold = keypoint_threshold
        self.min_person_score = min_person_score
        self._used: Set[str] = set()
        self.written = 0

    def write(self, result: FrameResult) -> None:
        import cv2

        stem = Path(result.frame.source).stem or "frame"
        name = f"{stem}.jpg"
        if name in self._used:
            name = f"{stem}_{result.frame.index:06d}.jpg"
        self._used.add(name)
        image = draw_poses(result.frame.image, result.poses, self.threshold,
                           min_person_score=self.min_person_score)
        if not cv2.imwrite(str(self.folder / name), image):
            raise ConfigError(f"cannot write {self.folder / name}")
        self.written += 1


class VideoSink(Sink):
    """Annotated frames into one video file (mp4v), sized by the first frame."""

    def __init__(self, path: str, fps: Optional[float] = None,
                 keypoint_threshold: float = 0.3, min_person_score: float = 0.0) -> None:
        self.path = path
        self.fps = fps or 25.0
        self.threshold = keypoint_threshold
        self.min_person_score = min_person_score
        self._writer: Any = None
        self._size: Tuple[int, int] = (0, 0)

    def write(self, result: FrameResult) -> None:
        import cv2

        image = draw_poses(result.frame.image, result.poses, self.threshold,
                           min_person_score=self.min_person_score)
        size = (image.shape[1], image.shape[0])
        if self._writer is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter.fourcc(*"mp4v"),
                                           self.fps, size)
            self._size = size
            if not self._writer.isOpened():
                raise ConfigError(f"cannot open video writer for {self.path}")
        if size != self._size:
            image = cv2.resize(image, self._size)
        self._writer.write(image)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
