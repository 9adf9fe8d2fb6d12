"""The service's JSONL file: appended line by line, rotated by size and time, old files gzipped
and pruned, and a free-space floor below which it stops writing.

Layout: ``poses.jsonl`` is always the file being written; a rotation renames it (one atomic
``rename``) to ``poses.jsonl.000042`` (a counter that only grows, so names sort in time order)
and opens a new ``poses.jsonl``. A background thread fsyncs every closed file (the inference
thread never waits for the disk), with ``gzip`` compressing it to ``poses.jsonl.000042.gz``
(written as ``.gz.part``, fsynced, renamed, then the plain file removed), so a file is always
complete under one of its names; ``keep`` closed files stay, the oldest go. Each line is one
``write`` on an ``O_APPEND`` descriptor: a reader never sees half a line, and a failed write
(disk full) is cut back so the file never ends in a broken line.
:func:`.follow.follow` reads the files in order and follows the rotation.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import queue
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from ..errors import ConfigError
from ..types import FrameResult
from .diskspace import MB, FreeSpaceFloor
from .paths import os_reason
from .sinks import Sink

log = logging.getLogger(__name__)


def rotated_files(path: Path) -> List[Tuple[int, Path]]:
    """``(counter, file)`` of the closed files of ``path``, oldest first (a counter whose
    plain and ``.gz`` files both exist — compression not finished — is listed once, plain)."""
    pattern = re.compile(re.escape(path.name) + r"\.(\d{6,})(\.gz)?$")
    found = {}
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    for name in names:
        m = pattern.match(name)
        if m and (int(m.group(1)) not in found or not m.group(2)):
            found[int(m.group(1))] = path.parent / name
    return sorted(found.items())


@dataclass(frozen=True)
class JsonlStats:
    """lines / bytes: written since the start; skipped: lines not written below the free-space
    floor; file_bytes: the open file; disk_bytes: it plus the closed files kept; files: closed
    files kept; rotations: since the start; paused: below the floor now."""

    path: str
    lines: int
    bytes: int
    skipped: int
    file_bytes: int
    disk_bytes: int
    files: int
    rotations: int
    paused: bool
    free_mb: float
    floor_mb: float


class RotatingJsonlSink(Sink):
    """One JSON object per frame appended to ``path``; rotation after ``rotate_mb`` MB or
    ``rotate_s`` seconds of the file's life (0: never), ``keep`` closed files (0: all),
    ``gzip`` them, no writing while the file system has less than ``min_free_mb`` MB free."""

    def __init__(self, path: str, rotate_mb: float = 64.0, rotate_s: float = 0.0, keep: int = 16,
                 gzip: bool = True, min_free_mb: float = 256.0,
                 probe: Optional[Callable[[Path], int]] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.rotate_bytes, self.rotate_s = int(rotate_mb * MB), rotate_s
        self.keep, self.gzip, self._clock = keep, gzip, clock
        self._lock = threading.Lock()
        self._lines = self._bytes = self._skipped = self._rotations = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = self._open()
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {os_reason(exc)}") from None
        self._size = os.fstat(self._fd).st_size
        self._opened_at = self._first_timestamp()
        self.floor = FreeSpaceFloor(self.path.parent, min_free_mb, "jsonl", probe)
        self._todo: queue.Queue = queue.Queue()
        self._compressor: Optional[threading.Thread] = None
        existing = rotated_files(self.path)
        self._next = existing[-1][0] + 1 if existing else 1
        for part in self.path.parent.glob(f"{self.path.name}.*.gz.part"):
            part.unlink()  # a compression cut short by a crash; its plain file is still there
        if gzip:
            for _, f in existing:
                if f.suffix != ".gz":
                    self._finish_later(f)
        self._prune()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def _first_timestamp(self) -> float:
        """When the file was begun: its first line's timestamp (a file appended to across
        restarts keeps its age), else now."""
        try:
            with open(self.path, "rb") as f:
                return float(json.loads(f.readline(1 << 20))["timestamp"])
        except (OSError, ValueError, KeyError, TypeError):
            return self._clock()

    # -- writing ----------------------------------------------------------------------------------
    def write(self, result: FrameResult) -> None:
        data = (result.to_json() + "\n").encode()
        if not self.floor.allow(len(data)):
            with self._lock:
                self._skipped += 1
            return
        if self._size and (
                (self.rotate_bytes and self._size + len(data) > self.rotate_bytes) or
                (self.rotate_s and self._clock() - self._opened_at >= self.rotate_s)):
            self.rotate()
        start = self._size
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:
            try:
                os.ftruncate(self._fd, start)  # never leave half a line behind
            except OSError:
                pass
            raise
        self._size += len(data)
        with self._lock:
            self._lines += 1
            self._bytes += len(data)

    def rotate(self) -> None:
        """Close the file, rename it to the next counter, open a new one (then gzip, prune)."""
        closed = self.path.with_name(f"{self.path.name}.{self._next:06d}")
        os.close(self._fd)
        try:
            os.rename(self.path, closed)
        finally:  # renamed or not, writing goes on in a file named path
            self._fd = self._open()
            self._size = os.fstat(self._fd).st_size
        self._next += 1
        self._opened_at = self._clock()
        with self._lock:
            self._rotations += 1
        self._finish_later(closed)  # fsync (and gzip) off the inference thread
        self._prune()

    def _prune(self) -> None:
        if self.keep <= 0:
            return
        files = rotated_files(self.path)
        for _, f in files[:max(0, len(files) - self.keep)]:
            for name in (f, f.with_name(f.name + ".gz")):
                name.unlink(missing_ok=True)

    # -- closed files: fsync, gzip (their own thread) ---------------------------------------------
    def _finish_later(self, f: Path) -> None:
        self._todo.put(f)
        if self._compressor is None:
            self._compressor = threading.Thread(target=self._finish_loop, daemon=True,
                                                name="jsonl gzip")
            self._compressor.start()

    def _finish_loop(self) -> None:
        while True:
            f = self._todo.get()
            if f is None:
                return
            try:
                if self.gzip:
                    compress_file(f)
                else:
                    with open(f, "rb") as done:
                        os.fsync(done.fileno())
            except OSError as exc:  # pruned meanwhile, or the disk is full: leave it plain
                if not isinstance(exc, FileNotFoundError):
                    log.warning("jsonl: cannot %s %s: %s", "gzip" if self.gzip else "fsync", f,
                                os_reason(exc))

    # -- state ------------------------------------------------------------------------------------
    def stats(self) -> JsonlStats:
        files = rotated_files(self.path)
        disk = self._size
        for _, f in files:
            try:
                disk += f.stat().st_size
            except OSError:
                pass
        fl = self.floor.stats()
        with self._lock:
            return JsonlStats(str(self.path), self._lines, self._bytes, self._skipped,
                              self._size, disk, len(files), self._rotations, fl.paused,
                              fl.free_mb, fl.floor_mb)

    def close(self, timeout: float = 2.0) -> None:
        if self._fd < 0:
            return
        os.close(self._fd)
        self._fd = -1
        if self._compressor is not None:
            self._todo.put(None)
            self._compressor.join(timeout)  # unfinished: gzipped at the next start


def compress_file(f: Path) -> Path:
    """``f`` -> ``f.gz`` (through ``f.gz.part``, fsynced, renamed), then ``f`` removed."""
    dest = f.with_name(f.name + ".gz")
    part = f.with_name(f.name + ".gz.part")
    try:
        with open(f, "rb") as src, open(part, "wb") as raw:
            with gzip.GzipFile(filename=f.name, mode="wb", fileobj=raw, compresslevel=6,
                               mtime=int(f.stat().st_mtime)) as gz:
                shutil.copyfileobj(src, gz, 1 << 20)
            raw.flush()
            os.fsync(raw.fileno())
        os.rename(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    f.unlink()
    return dest
