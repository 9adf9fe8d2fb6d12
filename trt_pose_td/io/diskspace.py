"""A free-space floor for the service's disk writers (the JSONL files, the MQTT spool).

Below ``min_free_mb`` on the file system that holds a folder, a writer stops writing (the
caller counts what it skipped); it resumes by itself once the free space is back above the floor
plus a small margin (so it does not flap at the edge). The transitions are logged once each, at
WARNING and INFO; the state, the free space and the count of pauses are in :meth:`stats`.

The free space is probed at most once per ``interval_s`` (``os.statvfs`` of the folder: the
space available to unprivileged writers); between probes the bytes the writer reported are
subtracted, so a fast writer cannot run past the floor within one interval. ``probe`` can be
replaced (tests pass a function of their own); the default reads the real file system.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

log = logging.getLogger(__name__)

MB = 1 << 20


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``folder``."""
    st = os.statvfs(folder)
    return int(st.f_bavail * st.f_frsize)


@dataclass(frozen=True)
class FloorStats:
    """paused: below the floor now; free_mb: the last probe (minus what was written since);
    pauses: times the writer stopped since the start."""

    paused: bool
    free_mb: float
    floor_mb: float
    pauses: int


class FreeSpaceFloor:
    """``allow(nbytes)`` -> False while the file system of ``folder`` has less than
    ``min_free_mb`` free (``min_free_mb`` 0: always True, nothing probed).

    ``what`` names the writer in the log ("jsonl", "mqtt spool"). Thread-safe.
    """

    def __init__(self, folder: Path, min_free_mb: float, what: str,
                 probe: Optional[Callable[[Path], int]] = None, interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder, self.what = Path(folder), what
        self.floor = int(min_free_mb * MB)
        self.margin = max(64 << 10, self.floor // 10)
        self._probe = probe or free_bytes
        self._interval, self._clock = interval_s, clock
        self._lock = threading.Lock()
        self._paused = False
        self._pauses = 0
        self._free = -1
        self._probed_at = float("-inf")

    def allow(self, nbytes: int = 0) -> bool:
        """Whether ``nbytes`` may be written now; counts them as written when it may."""
        if self.floor <= 0:
            return True
        with self._lock:
            now = self._clock()
            if now - self._probed_at >= self._interval or self._free - nbytes < self.floor:
                self._refresh(now)
            if self._paused:
                return False
            self._free -= nbytes
            return True

    def _refresh(self, now: float) -> None:
        try:
            self._free = self._probe(self.folder)
        except OSError as exc:  # the folder vanished: treat as no space, say why
            self._free = 0
            if not self._paused:
                    log.warning("%s: cannot read the free space of %s: %s", self.what,
                            self.folder, exc.strerror or exc)
        self._probed_at = now
        free_mb, floor_mb = self._free / MB, self.floor / MB
        if not self._paused and self._free < self.floor:
            self._paused = True
            self._pauses += 1
            log.warning("%s: only %.1f MB free on %s, below the %.0f MB floor: not writing "
                        "until space returns (inference goes on)", self.what, free_mb,
                        self.folder, floor_mb)
        elif self._paused and self._free >= self.floor + self.margin:
            self._paused = False
            log.info("%s: %.1f MB free on %s again: writing resumed", self.what, free_mb,
                     self.folder)

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._paused

    def stats(self) -> FloorStats:
        with self._lock:
            return FloorStats(self._paused, round(max(self._free, 0) / MB, 1),
                              self.floor / MB, self._pauses)
