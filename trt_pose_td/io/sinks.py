"""Result sinks: JSONL, annotated images, annotated video.

File sinks of ``trt-pose-td run`` lose nothing: each file is written under a temporary name beside
its destination and moved into place when complete (:mod:`.paths`); :meth:`Sink.abort` drops
what an interrupted run had begun, so a previous result stays as it was.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import IO, Any, Optional, Set, Tuple

from ..errors import ConfigError
from ..types import FrameResult
from .draw import draw_poses
from .paths import commit, discard, os_reason, partial_path

log = logging.getLogger(__name__)


class Sink:
    """Receives every frame result; ``close()`` flushes."""

    def write(self, result: FrameResult) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def abort(self) -> None:
        """End after a failed run: drop unfinished files (default: :meth:`close`)."""
        self.close()


class JsonlSink(Sink):
    """One JSON object per frame (``FrameResult.to_json()``) to a file or stdout ("-").

    Each line is flushed as written, so a reader tailing the file never sees half a frame.
    ``append`` keeps an existing file's lines (the service, across restarts); ``atomic`` writes
    a temporary file that :meth:`close` moves onto ``path`` and :meth:`abort` removes.
    """

    def __init__(self, path: str = "-", append: bool = False, atomic: bool = False) -> None:
        self.path = path
        self._own = path != "-"
        self._target = partial_path(Path(path)) if self._own and atomic else Path(path)
        self._atomic = self._own and atomic
        try:
            if self._own:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._f: IO[str] = (open(self._target, "a" if append else "w", encoding="utf-8")
                                if self._own else sys.stdout)
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {os_reason(exc)}") from None

    def write(self, result: FrameResult) -> None:
        self._f.write(result.to_json() + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._own and not self._f.closed:
            self._f.close()
            if self._atomic:
                commit(self._target, Path(self.path))

    def abort(self) -> None:
        if self._own and not self._f.closed:
            self._f.close()
            if self._atomic:
                discard(self._target)


class ImageSink(Sink):
    """Annotated frames as ``DIR/<source stem>.jpg`` (``<stem>_<frame>.jpg`` on repeats)."""

    def __init__(self, folder: str, keypoint_threshold: float = 0.3,
                 min_person_score: float = 0.0) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {folder}: {os_reason(exc)}") from None
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
        ok, data = cv2.imencode(".jpg", image)
        dest = self.folder / name
        if not ok:
            raise ConfigError(f"cannot encode {dest}")
        tmp = partial_path(dest)
        try:
            tmp.write_bytes(data.tobytes())
        except OSError as exc:
            discard(tmp)
            raise ConfigError(f"cannot write {dest}: {os_reason(exc)}") from None
        commit(tmp, dest)
        self.written += 1


class VideoSink(Sink):
    """Annotated frames into one video file (mp4v), sized by the first frame; written under a
    temporary name that :meth:`close` moves onto ``path`` (:meth:`abort` removes it)."""

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
            self._writer = cv2.VideoWriter(str(partial_path(Path(self.path))),
                                           cv2.VideoWriter.fourcc(*"mp4v"), self.fps, size)
            self._size = size
            if not self._writer.isOpened():
                self._writer = None
                raise ConfigError(f"cannot open video writer for {self.path}")
        if size != self._size:
            image = cv2.resize(image, self._size)
        self._writer.write(image)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            commit(partial_path(Path(self.path)), Path(self.path))

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            discard(partial_path(Path(self.path)))
