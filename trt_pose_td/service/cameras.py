"""Several cameras in one service: ``NAME=URI`` arguments, and the per-tick frame gathering.

Every camera has its own capture thread that keeps only its newest frame: live sources
(:class:`~..io.capture.CaptureSource`) already read on a thread; a file feed gets a
:class:`Prefetch` thread that decodes its next frame while inference runs (and waits for it to be
taken, so a looping file is neither skipped through nor decoded in vain). Each tick,
:meth:`Cameras.gather` takes the newest frame of every camera that has one, tagged with the
camera's name, without waiting for the others: a camera that stalls, reconnects or dies never
holds back the rest.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import ConfigError
from ..io.newest import NewestFrame
from ..types import Frame

log = logging.getLogger(__name__)

#: A camera name: what MQTT topics, metric labels and URLs can carry unchanged.
CAMERA_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def split_camera_arg(text: str) -> Tuple[Optional[str], str]:
    """``"door=rtsp://..."`` -> ``("door", "rtsp://...")``; a bare URI -> ``(None, uri)``.

    Only a valid camera name before the first ``=`` counts as a name, so URIs with ``=`` in
    their query (``rtsp://host/x?a=b``) stay bare URIs."""
    name, sep, uri = text.partition("=")
    if sep and CAMERA_NAME.match(name) and uri:
        return name, uri
    return None, text


def camera_sources(args: Sequence[str]) -> List[Tuple[Optional[str], str]]:
    """The positional sources of ``serve``: one bare URI, or ``NAME=URI`` for each camera.
    :class:`ConfigError` for a mix, two bare URIs or a repeated name."""
    pairs = [split_camera_arg(a) for a in args]
    if len(pairs) > 1 and any(name is None for name, _ in pairs):
        bare = next(uri for name, uri in pairs if name is None)
        raise ConfigError(f"several sources need a camera name each (NAME=URI), and {bare!r} "
                          "has none: e.g. serve door=rtsp://... yard=/dev/video0")
    names = [name for name, _ in pairs]
    for name in names:
        if name is not None and names.count(name) > 1:
            raise ConfigError(f"camera name {name!r} given twice")
    return pairs


def check_cameras(names: Sequence[str], where: str) -> None:
    """Every camera named (a name topics, labels and URLs carry unchanged), no name twice."""
    for name in names:
        if not name or not CAMERA_NAME.match(name):
            raise ConfigError(f"{where}: every camera needs a name (camera = \"door\") of "
                              f"letters, digits, _ . - (at most 64), not {name!r}")
        if list(names).count(name) > 1:
            raise ConfigError(f"{where}: camera name {name!r} is used twice")


def merge_sources(before: Any, layer: Any) -> List[Dict[str, Any]]:
    """The cameras' source tables after one more config layer (see
    :func:`.config.merge`): a list replaces the cameras so far, each of its tables on top of an
    earlier single ``[source]`` table; a table applies to every camera so far."""
    if isinstance(layer, list):
        base = dict(before) if isinstance(before, Mapping) else {}
        out = []
        for table in layer:
            if not isinstance(table, Mapping):
                raise ConfigError(f"[[source]] entries must be tables, not {table!r}")
            out.append({**base, **{str(k).replace("-", "_"): v for k, v in table.items()}})
        return out
    if not isinstance(layer, Mapping):
        raise ConfigError("top-level key 'source' must be a [table] or [[source]] tables")
    extra = {str(k).replace("-", "_"): v for k, v in layer.items()}
    return [{**t, **extra} for t in before]


class Prefetch:
    """A file feed read on its own thread, one frame ahead: :meth:`read` has the same meaning
    as :class:`~..io.capture.CaptureSource`'s (None on timeout, :attr:`ended` at the end)."""

    def __init__(self, feed: Any, name: str) -> None:
        self.feed, self.uri = feed, getattr(feed, "uri", name)
        self._newest = NewestFrame()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"prefetch {name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.feed.read(timeout=1.0)
                if frame is None and self.feed.ended or self._stop.is_set():
                    break
                if frame is not None:
                    self._newest.put(frame)
                    self._newest.wait_taken(self._stop.is_set)
        except Exception:  # a reader bug ends this camera, not the service
            log.exception("%s: reading failed; this camera stops", self.uri)
        finally:
            self._newest.finish()

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        return self._newest.take(timeout)

    @property
    def ended(self) -> bool:
        return self._newest.ended

    def stats(self) -> Any:
        return self.feed.stats()

    def close(self) -> None:
        self._stop.set()
        self._newest.wake()
        self._thread.join(timeout=2.0)
        self.feed.close()


class Camera:
    """One named camera: its feed (threaded) and whether it is still in the service."""

    def __init__(self, name: str, feed: Any) -> None:
        self.name, self.feed = name, feed
        self.active = True


class Cameras:
    """The service's cameras, in order (the service opens their feeds: live captures as they
    are, file feeds wrapped in :class:`Prefetch`)."""

    def __init__(self, cameras: List[Camera]) -> None:
        self.cameras = cameras

    @property
    def names(self) -> List[str]:
        return [c.name for c in self.cameras]

    def gather(self, timeout: float, stop: threading.Event) -> List[Frame]:
        """The newest frame of every camera that has one (in camera order, tagged with the
        camera's name), waiting up to ``timeout`` s only while none has a frame. A camera whose
        stream ended is dropped from the ticks (logged once)."""
        deadline = time.monotonic() + timeout
        while True:
            frames = []
            for cam in self.cameras:
                if not cam.active:
                    continue
                frame = cam.feed.read(timeout=0)
                if frame is not None:
                    frames.append(replace(frame, camera=cam.name))
                elif cam.feed.ended:
                    cam.active = False
                    log.info("camera %s: source ended", cam.name)
            if frames or stop.is_set() or time.monotonic() >= deadline or self.ended:
                return frames
            stop.wait(0.005)

    @property
    def ended(self) -> bool:
        """True once every camera's source ended."""
        return not any(c.active for c in self.cameras)

    def close(self) -> None:
        for cam in self.cameras:
            try:
                cam.feed.close()
            except Exception as exc:  # keep closing the others
                log.warning("camera %s: close failed: %s", cam.name, exc)
