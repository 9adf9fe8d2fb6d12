"""Live frame sources by URI (jetson-utils convention), read on a capture thread.

``csi://N``            MIPI CSI camera N: GStreamer ``nvarguscamerasrc`` (OpenCV with GStreamer)
``v4l2:///dev/videoN`` USB / V4L2 camera (also plain ``/dev/videoN``)
``rtsp://...``         RTSP stream through FFmpeg, low-latency options (TCP, no buffering)
``http(s)://...``      MJPEG or other stream FFmpeg reads (IP cameras)

A :class:`CaptureSource` keeps only the newest frame (:class:`~.newest.NewestFrame`): when
inference is slower than the camera the older frame is replaced and counted in ``drops``.
``read(timeout)`` returns None on a timeout and :attr:`CaptureSource.ended` says end-of-stream,
so the two are never confused. A lost source (unplugged camera, dropped RTSP connection, read
timeout) is re-opened with exponential backoff; ``reconnects`` counts the attempts. Files, folders
and globs stay in :mod:`.sources`; :class:`FileFeed` gives them the same ``read`` / ``stats``
interface for the service.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Tuple

import numpy as np

from ..errors import SourceError
from ..types import Frame
from .base import Source
from .newest import NewestFrame
from .uri import redact

log = logging.getLogger(__name__)

LIVE_PREFIXES = ("csi://", "v4l2://", "/dev/video", "rtsp://", "rtsps://", "http://", "https://")

#: FFmpeg demuxer options for low-latency RTSP (OpenCV reads them from this variable at open).
RTSP_FFMPEG_OPTIONS = "rtsp_transport;{transport}|fflags;nobuffer|flags;low_delay|max_delay;500000"

GSTREAMER_FIX = ("csi:// needs OpenCV built with GStreamer, and this cv2 has none (pip's opencv "
                 "wheels never do): on Jetson use JetPack's OpenCV (`sudo apt install "
                 "python3-opencv` or nvidia-opencv, then `pip uninstall opencv-python "
                 "opencv-python-headless`), or read a USB camera as v4l2:///dev/video0")


@dataclass(frozen=True)
class CaptureOptions:
    """How to open and keep a live source.

    width/height/fps: requested capture mode (0 = the device's default); flip: nvvidconv
    flip-method for csi:// (0..7); timeout_s: open and read timeout of network streams;
    reconnect_min_s/max_s: backoff between attempts (doubling); max_retries: consecutive failed
    attempts before giving up (0 = never give up); reconnect: re-open after a loss (False turns a
    loss into end-of-stream); rtsp_transport: "tcp" or "udp".
    """

    width: int = 0
    height: int = 0
    fps: float = 0.0
    flip: int = 0
    timeout_s: float = 5.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    max_retries: int = 0
    reconnect: bool = True
    rtsp_transport: str = "tcp"

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (1-based) after a failure."""
        return float(min(self.reconnect_max_s,
                         self.reconnect_min_s * 2.0 ** max(0, min(attempt - 1, 30))))


@dataclass(frozen=True)
class CaptureStats:
    """A snapshot of a source's counters. state: connecting | streaming | lost | ended."""

    state: str
    frames: int = 0
    drops: int = 0
    reconnects: int = 0
    open_failures: int = 0
    last_error: str = ""
    last_frame_age_s: Optional[float] = None


def is_live_uri(uri: str) -> bool:
    return uri.startswith(LIVE_PREFIXES)


def cv2_has_gstreamer() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def csi_pipeline(sensor_id: int, options: CaptureOptions) -> str:
    """GStreamer pipeline: Argus camera -> NVMM -> BGR appsink that keeps only the newest frame."""
    width, height = options.width or 1280, options.height or 720
    fps = int(round(options.fps)) or 30
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM), "
            f"width=(int){width}, height=(int){height}, framerate=(fraction){fps}/1 ! "
            f"nvvidconv flip-method={options.flip} ! video/x-raw, format=(string)BGRx ! "
            "videoconvert ! video/x-raw, format=(string)BGR ! "
            "appsink drop=true max-buffers=1 sync=false")


def parse_live_uri(uri: str) -> Tuple[str, str]:
    """``(kind, target)``: kind in csi | v4l2 | stream; target a sensor id, device path or URL."""
    if uri.startswith("csi://"):
        sensor = uri[len("csi://"):]
        if not sensor.isdigit():
            raise SourceError(f"bad camera URI {uri!r}: expected csi://N with N a sensor id")
        return "csi", sensor
    if uri.startswith("v4l2://"):
        device = uri[len("v4l2://"):]
        if device.isdigit():
            device = f"/dev/video{device}"
        if not device.startswith("/dev/"):
            raise SourceError(f"bad camera URI {uri!r}: expected v4l2:///dev/videoN")
        return "v4l2", device
    if uri.startswith("/dev/video"):
        return "v4l2", uri
    if uri.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        return "stream", uri
    raise SourceError(f"not a camera or stream URI: {uri!r}")


class _Cv2Reader:
    """Opens one OpenCV capture for a live URI; :meth:`frames` yields images until it fails."""

    def __init__(self, uri: str, options: CaptureOptions) -> None:
        self.uri, self.options = uri, options
        self.kind, self.target = parse_live_uri(uri)
        if self.kind == "csi" and not cv2_has_gstreamer():
            raise SourceError(GSTREAMER_FIX)

    def open(self) -> Any:
        """A started ``cv2.VideoCapture``; :class:`SourceError` when the source is unavailable."""
        import cv2

        o = self.options
        if self.kind == "csi":
            cap = cv2.VideoCapture(csi_pipeline(int(self.target), o), cv2.CAP_GSTREAMER)
        elif self.kind == "v4l2":
            if not os.path.exists(self.target):
                raise SourceError(f"no such device {self.target} (camera unplugged?)")
            cap = cv2.VideoCapture(self.target, cv2.CAP_V4L2)
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, o.width),
                                (cv2.CAP_PROP_FRAME_HEIGHT, o.height), (cv2.CAP_PROP_FPS, o.fps)):
                if value:
                    cap.set(prop, value)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        else:
            cap = self._open_stream(cv2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {redact(self.uri)}")
        return cap

    def _open_stream(self, cv2: Any) -> Any:
        ms = int(self.options.timeout_s * 1000)
        key = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
        user_set = key in os.environ
        if self.uri.startswith("rtsp") and not user_set:
            os.environ[key] = RTSP_FFMPEG_OPTIONS.format(transport=self.options.rtsp_transport)
        try:
            return cv2.VideoCapture(self.uri, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        finally:
            if self.uri.startswith("rtsp") and not user_set:
                del os.environ[key]

    def frames(self) -> Iterator[np.ndarray]:
        """(H, W, 3) uint8 BGR images until the capture fails or ends; releases it after."""
        cap = self.open()
        try:
            while True:
                ok, image = cap.read()
                if not ok or image is None:
                    return
                if image.ndim == 2:  # some V4L2 modes deliver grey
                    image = np.repeat(image[:, :, None], 3, axis=2)
                yield image
        finally:
            cap.release()


class CaptureSource(Source):
    """A live source read on its own thread, keeping only the newest frame.

    ``connect()`` returns an iterator of (H, W, 3) uint8 BGR images (raising :class:`SourceError`
    when the source cannot be opened); the iterator ending means the source was lost (or, with
    ``options.reconnect`` False, that the stream ended). Frames get capture-time timestamps
    (``time.time()``) and consecutive indices. ``uri`` is kept without its credentials (it names
    the frames, the log lines and the errors); only ``connect`` knows the full one.
    """

    def __init__(self, uri: str, connect: Callable[[], Iterator[np.ndarray]],
                 options: CaptureOptions = CaptureOptions()) -> None:
        super().__init__()
        self.uri, self.options, self.fps = redact(uri), options, (options.fps or None)
        self._connect = connect
        self._lock = threading.Lock()  # the counters and state below; frames: self._newest
        self._newest = NewestFrame()
        self._stop = threading.Event()
        self._state = "connecting"
        self._frames = self._reconnects = self._failures = 0
        self._last_error, self._last_frame_at = "", 0.0
        self._thread = threading.Thread(target=self._run, name=f"capture {self.uri}",
                                        daemon=True)
        self._thread.start()

    # -- consumer side ------------------------------------------------------------------------
    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The newest frame not read yet, or None when none arrives within ``timeout`` seconds
        (or the stream ended: check :attr:`ended`)."""
        return self._newest.take(timeout)

    @property
    def ended(self) -> bool:
        """True once the stream ended (or retries ran out) and every frame was read."""
        return self._newest.ended

    def stats(self) -> CaptureStats:
        with self._lock:
            age = time.monotonic() - self._last_frame_at if self._frames else None
            return CaptureStats(self._state, self._frames, self._newest.drops, self._reconnects,
                                self._failures, self._last_error, age)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read(timeout=1.0)
            if frame is not None:
                yield frame
            elif self.ended:
                return

    def close(self) -> None:
        """Stop the capture thread (waits up to the read timeout for a blocked read)."""
        self._stop.set()
        self._thread.join(timeout=self.options.timeout_s + 1.0)

    # -- capture thread -----------------------------------------------------------------------
    def _set(self, **fields: Any) -> None:
        with self._lock:
            for name, value in fields.items():
                setattr(self, "_" + name, value)

    def _publish(self, image: np.ndarray) -> None:
        with self._lock:
            frame = Frame(image, self._frames, time.time(), self.uri)
            self._frames += 1
            self._last_frame_at = time.monotonic()
            self._state = "streaming"
        self._newest.put(frame)

    def _run(self) -> None:
        failures = 0  # consecutive attempts without a frame
        first = True
        while not self._stop.is_set():
            if not first:
                self._set(reconnects=self._reconnects + 1)
            first = False
            got = self._stream_once()
            if self._stop.is_set():
                break
            failures = 0 if got else failures + 1
            if not self.options.reconnect:
                log.info("%s: end of stream after %d frame(s)", self.uri, self._frames)
                break
            if self.options.max_retries and failures >= self.options.max_retries:
                log.error("%s: giving up after %d failed attempt(s): %s", self.uri, failures,
                          self._last_error)
                break
            delay = self.options.backoff(max(failures, 1))
            log.warning("%s: %s; reconnecting in %.1f s (attempt %d)", self.uri,
                        self._last_error, delay, self._reconnects + 1)
            self._stop.wait(delay)
        self._set(state="ended")
        self._newest.finish()

    def _stream_once(self) -> bool:
        """Open and read until the source fails; True when at least one frame arrived."""
        got = False
        try:
            for image in self._connect():
                got = True
                self._publish(image)
                if self._stop.is_set():
                    return got
        except SourceError as exc:
            self._set(state="lost" if self._frames else "connecting", last_error=redact(str(exc)),
                      failures=self._failures + 1)
            return got
        except Exception as exc:  # a backend bug must not kill the capture thread silently
            log.exception("%s: capture failed", self.uri)
            self._set(state="lost", last_error=redact(f"{type(exc).__name__}: {exc}"),
                      failures=self._failures + 1)
            return got
        reason = "stream ended" if not self.options.reconnect else (
            "lost the stream (read failed or timed out)" if got else "opened but no frame came")
        self._set(state="lost", last_error=reason)
        return got


def open_capture(uri: str, options: Optional[CaptureOptions] = None) -> CaptureSource:
    """A :class:`CaptureSource` for a camera or stream URI (see the module docstring).

    Raises :class:`SourceError` at once for what retrying cannot fix (a malformed URI, csi://
    without GStreamer); a camera that is unplugged or a stream that refuses connections is
    retried in the background and shows in :meth:`CaptureSource.stats`.
    """
    options = options or CaptureOptions()
    reader = _Cv2Reader(uri, options)
    return CaptureSource(uri, reader.frames, options)


class FileFeed:
    """A file / folder / glob :class:`~.sources.Source` with the live sources' read interface.

    Reads synchronously (a file never drops frames); ``read`` returns None at the end, and while
    a looping source that became unreadable waits for its next attempt: it backs off like a
    camera (``options`` backoff and ``max_retries``), says so in the log and in :meth:`stats`.
    """

    def __init__(self, source: Source, options: CaptureOptions = CaptureOptions()) -> None:
        self.source, self.uri, self.options = source, source.uri, options
        self.loop = bool(getattr(source, "loop", False))
        self._it: Iterator[Frame] = iter(source)
        self._frames = self._reconnects = self._failures = self._in_row = 0
        self._done, self._state, self._last_error = False, "streaming", ""
        self._last_frame_at = self._retry_at = 0.0

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        if self._done or not self._wait_retry(timeout):
            return None
        try:
            frame = next(self._it)
        except StopIteration:
            self._done, self._state = True, "ended"
            return None
        except SourceError as exc:
            if not self.loop:
                raise
            self._lost(str(exc))
            return None
        self._frames, self._in_row, self._state = self._frames + 1, 0, "streaming"
        self._last_frame_at = time.monotonic()
        return frame

    def _wait_retry(self, timeout: Optional[float]) -> bool:
        """False while backing off (after sleeping up to ``timeout``); True when readable."""
        if not self._retry_at:
            return True
        left = self._retry_at - time.monotonic()
        if left > 0:
            time.sleep(left if timeout is None else max(0.0, min(timeout, left)))
            if time.monotonic() < self._retry_at:
                return False
        self._retry_at, self._reconnects = 0.0, self._reconnects + 1
        self._it = iter(self.source)
        return True

    def _lost(self, error: str) -> None:
        self._in_row += 1
        self._failures += 1
        self._state, self._last_error = "lost", redact(error)
        if self.options.max_retries and self._in_row >= self.options.max_retries:
            log.error("%s: giving up after %d failed attempt(s): %s", self.uri, self._in_row,
                      self._last_error)
            self._done, self._state = True, "ended"
            return
        delay = self.options.backoff(self._in_row)
        self._retry_at = time.monotonic() + delay
        log.warning("%s: %s; reopening in %.1f s (attempt %d)", self.uri, self._last_error,
                    delay, self._reconnects + 1)

    @property
    def ended(self) -> bool:
        return self._done

    def stats(self) -> CaptureStats:
        age = time.monotonic() - self._last_frame_at if self._frames else None
        return CaptureStats(self._state, self._frames, 0, self._reconnects, self._failures,
                            self._last_error, age)

    def close(self) -> None:
        self.source.close()
