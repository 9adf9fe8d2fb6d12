"""MJPEG preview: annotated frames encoded on their own thread, only while someone watches.

The main loop calls :meth:`Preview.offer` with every result (a reference swap, no copy); the
encoder thread draws the poses, scales to ``width`` and JPEG-encodes at most ``max_fps`` frames a
second, and only while a client streams or a snapshot was asked for in the last seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Iterator, Optional, Tuple

from ..io.draw import draw_poses
from ..types import FrameResult

log = logging.getLogger(__name__)

#: A snapshot request keeps the encoder busy this long (seconds).
SNAPSHOT_INTEREST_S = 3.0


class Preview:
    def __init__(self, max_fps: float = 10.0, width: int = 960, quality: int = 80,
                 keypoint_threshold: float = 0.3) -> None:
        self.max_fps, self.width, self.quality = max_fps, width, quality
        self.threshold = keypoint_threshold
        self._cond = threading.Condition()
        self._pending: Optional[FrameResult] = None
        self._jpeg: Optional[bytes] = None
        self._seq = 0
        self._clients = 0
        self._interest_until = 0.0
        self._last_offer = 0.0
        self._stop = threading.Event()
        self.encoded = 0
        self._thread = threading.Thread(target=self._run, name="preview encoder", daemon=True)
        self._thread.start()

    @property
    def clients(self) -> int:
        with self._cond:
            return self._clients

    def _wanted_locked(self) -> bool:
        return self._clients > 0 or time.monotonic() < self._interest_until

    def offer(self, result: FrameResult) -> None:
        """Hand over the newest result (cheap; ignored when nobody watches or too soon)."""
        now = time.monotonic()
        with self._cond:
            if not self._wanted_locked() or now - self._last_offer < 1.0 / self.max_fps:
                return
            self._last_offer = now
            self._pending = result
            self._cond.notify_all()

    def _encode(self, result: FrameResult) -> bytes:
        import cv2

        image = draw_poses(result.frame.image, result.poses, self.threshold)
        h, w = image.shape[:2]
        if w > self.width:
            image = cv2.resize(image, (self.width, max(1, round(h * self.width / w))),
                               interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return bytes(buf.tobytes())

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._stop.is_set(),
                                    timeout=1.0)
                result, self._pending = self._pending, None
            if result is None:
                continue
            try:
                jpeg = self._encode(result)
            except Exception:  # a drawing bug must not stop the service, only the preview
                log.exception("preview: cannot encode frame %d", result.frame.index)
                continue
            with self._cond:
                self._jpeg, self._seq = jpeg, self._seq + 1
                self.encoded += 1
                self._cond.notify_all()

    def wait_next(self, after: int, timeout: float) -> Tuple[int, Optional[bytes]]:
        """(seq, jpeg) of the first frame newer than ``after``, or (after, None) on timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > after or self._stop.is_set(), timeout)
            if self._seq > after and self._jpeg is not None:
                return self._seq, self._jpeg
            return after, None

    def snapshot(self, timeout: float = 5.0) -> Optional[bytes]:
        """A freshly encoded JPEG (waits for the next frame), or None within ``timeout``."""
        with self._cond:
            self._interest_until = time.monotonic() + SNAPSHOT_INTEREST_S
            seq = self._seq
        return self.wait_next(seq, timeout)[1]

    def stream(self, stopped: threading.Event) -> Iterator[bytes]:
        """JPEGs as they are encoded, until ``stopped`` is set or the consumer stops iterating."""
        with self._cond:
            self._clients += 1
            seq = 0 if self._jpeg is None else self._seq - 1  # start with the latest frame
        try:
            while not stopped.is_set() and not self._stop.is_set():
                seq, jpeg = self.wait_next(seq, timeout=1.0)
                if jpeg is not None:
                    yield jpeg
        finally:
            with self._cond:
                self._clients -= 1

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=5.0)
