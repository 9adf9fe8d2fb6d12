"""Frame sources by URI: image file, folder, glob, video file.

``open_source(uri)`` returns an iterable :class:`Source` of :class:`~..types.Frame`; unreadable
images inside a folder are skipped with a warning and counted in ``Source.skipped``.
Camera and stream sources (``csi://``, ``v4l2://``, ``rtsp://``) live in :mod:`.capture`.
A looping source whose whole pass yields no frame (the file became unreadable) raises
:class:`SourceError` instead of reopening at once, so a caller can back off (the service does).
"""

from __future__ import annotations

import glob
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterator, List

import numpy as np

from ..errors import SourceError
from ..types import Frame
from .base import Source
from .capture import is_live_uri, open_capture

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".ts")


def read_image(path: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR; :class:`SourceError` when missing or not a decodable image."""
    import cv2

    if not os.path.isfile(path):
        raise SourceError(f"no such file: {path}")
    data = np.fromfile(path, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise SourceError(f"cannot read image {path}: not a decodable image file")
    return image


class ImageSource(Source):
    """A list of image files; one unreadable image among several is skipped, not fatal."""

    def __init__(self, paths: List[str], uri: str, loop: bool = False) -> None:
        super().__init__()
        if not paths:
            raise SourceError(f"no images found at {uri}")
        self.paths, self.uri, self.loop = paths, uri, loop
        self.total = None if loop else len(paths)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while True:
            good = 0
            for path in self.paths:
                try:
                    image = read_image(path)
                except SourceError as exc:
                    if len(self.paths) == 1:
                        raise
                    log.warning("skipping %s", exc)
                    if path not in self.skipped:
                        self.skipped.append(path)
                    continue
                good += 1
                yield Frame(image, index, time.time(), path)
                index += 1
            if not self.loop:
                return
            if good == 0:
                raise SourceError(f"no readable image left in {self.uri}")


class VideoSource(Source):
    """A video file through OpenCV; timestamps are the stream's presentation times (s)."""

    def __init__(self, path: str, loop: bool = False) -> None:
        super().__init__()
        import cv2

        if not os.path.isfile(path):
            raise SourceError(f"no such file: {path}")
        self.uri, self.loop = path, loop
        cap = cv2.VideoCapture(path)
        ok = cap.isOpened() and cap.read()[0]
        cap.release()
        if not ok:
            raise SourceError(f"cannot read video {path}: not a video OpenCV can decode")
        probe = cv2.VideoCapture(path)
        count = int(probe.get(cv2.CAP_PROP_FRAME_COUNT))
        self.fps = float(probe.get(cv2.CAP_PROP_FPS)) or None
        probe.release()
        self.total = None if loop or count <= 0 else count
        self._cap: Any = None

    def __iter__(self) -> Iterator[Frame]:
        import cv2

        index = 0
        while True:
            start = index
            self._cap = cap = cv2.VideoCapture(self.uri)
            try:
                while True:
                    ok, image = cap.read()
                    if not ok:
                        break
                    ts = cap.get(cv2.CAP_PROP_POS_MSEC) / 1e3
                    yield Frame(image, index, ts, self.uri)
                    index += 1
            finally:
                cap.release()
            if not self.loop:
                return
            if index == start:  # looping, and this pass read nothing: never spin on it
                raise SourceError(f"cannot read video {self.uri} any more (gone, truncated or "
                                  "not readable)")


def expand_images(uri: str) -> List[str]:
    """Image files of a folder (sorted, non-recursive) or a glob pattern."""
    if os.path.isdir(uri):
        names = sorted(os.listdir(uri))
        return [os.path.join(uri, n) for n in names if n.lower().endswith(IMAGE_EXTS)]
    return sorted(p for p in glob.glob(uri) if p.lower().endswith(IMAGE_EXTS))


def open_source(uri: str, loop: bool = False) -> Source:
    """A source for ``uri``: image file, folder of images, glob pattern, or video file.

    Camera and network URIs (``csi://N``, ``v4l2:///dev/videoN``, ``/dev/videoN``,
    ``rtsp://``) are handed to :func:`.capture.open_capture`.
    """
    if is_live_uri(uri):
        return open_capture(uri)
    if any(ch in uri for ch in "*?["):
        return ImageSource(expand_images(uri), uri, loop)
    path = Path(uri)
    if path.is_dir():
        return ImageSource(expand_images(uri), uri, loop)
    if not path.exists():
        raise SourceError(f"no such file or folder: {uri}")
    if path.suffix.lower() in VIDEO_EXTS:
        return VideoSource(uri, loop)
    if path.suffix.lower() in IMAGE_EXTS:
        return ImageSource([uri], uri, loop)
    # Unknown extension: try as an image, then as a video.
    try:
        read_image(uri)
        return ImageSource([uri], uri, loop)
    except SourceError:
        try:
            return VideoSource(uri, loop)
        except SourceError:
            raise SourceError(f"cannot read {uri}: neither an image nor a video") from None
