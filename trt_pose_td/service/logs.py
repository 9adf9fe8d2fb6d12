"""Logs that stay readable for weeks: repeated warnings collapsed, native messages tamed.

:class:`RepeatFilter` lets the first of a kind of warning through, swallows the same kind for
``interval_s`` and then logs the next one with the count it swallowed ("kind": the message with
its numbers and addresses blanked, so "reconnecting in 2.0 s (attempt 3)" repeats "... in 4.0 s
(attempt 4)"). :class:`NativeStderr` routes file descriptor 2, where OpenCV and FFmpeg write
from C, through a pipe: each of their lines is stripped of URI credentials and logged through
the ``trt_pose_td.native`` logger, hence through the same filter.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from typing import Dict, List, Optional, TextIO, Tuple

from ..io.uri import redact

log = logging.getLogger(__name__)
native_log = logging.getLogger("trt_pose_td.native")

_VARIABLE = re.compile(r"0x[0-9a-fA-F]+|\d+(\.\d+)?")


def message_kind(text: str) -> str:
    """``text`` with numbers and hex addresses replaced by ``#``."""
    return _VARIABLE.sub("#", text)


class RepeatFilter(logging.Filter):
    """Rate-limits records at ``level`` and above by kind: one line per kind per interval,
    the next one carrying "(N similar suppressed in the last S s)". Also strips credentials
    from every message (the last line of defence; the sources already hold redacted URIs)."""

    def __init__(self, interval_s: float = 60.0, level: int = logging.WARNING) -> None:
        super().__init__()
        self.interval_s, self.level = interval_s, level
        self._lock = threading.Lock()
        self._seen: Dict[Tuple[str, int, str], Tuple[float, int]] = {}
        self._sample: Dict[Tuple[str, int, str], str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = redact(text)
        if getattr(record, "repeat_summary", False):
            record.msg, record.args = clean, None
            return True
        if clean != text:
            record.msg, record.args = clean, None
        if record.levelno < self.level or self.interval_s <= 0:
            return True
        key = (record.name, record.levelno, message_kind(clean))
        now = time.monotonic()
        with self._lock:
            since, count = self._seen.get(key, (-1e18, 0))
            if now - since < self.interval_s:
                self._seen[key] = (since, count + 1)
                self._sample[key] = clean
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 10000:  # forget the oldest kinds, memory stays bounded
                for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:5000]:
                    del self._seen[old]
                    self._sample.pop(old, None)
        if count:
            record.msg = f"{record.getMessage()} ({count} similar suppressed in the last " \
                         f"{now - since:.0f} s)"
            record.args = None
        return True


    def flush(self) -> None:
        """Log the count of every kind whose interval is over and that was suppressed in it
        (called periodically, so a burst that stops is still counted once)."""
        now = time.monotonic()
        with self._lock:
            due = [(k, c, now - t, self._sample.pop(k, "")) for k, (t, c) in self._seen.items()
                   if c and now - t >= self.interval_s]
            for key, _, _, _ in due:
                self._seen[key] = (now, 0)
        for (name, level, _), count, span, sample in due:
            logging.getLogger(name).log(level, "%d more like this in the last %.0f s: %s",
                                        count, span, sample, extra={"repeat_summary": True})


def install_repeat_filter(interval_s: float) -> RepeatFilter:
    """Adds a :class:`RepeatFilter` to every handler of the root logger."""
    f = RepeatFilter(interval_s)
    for handler in logging.getLogger().handlers:
        handler.addFilter(f)
    return f


def _fileno(stream: object) -> int:
    try:
        return int(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return -1


class NativeStderr:
    """Redirects fd 2 into a pipe whose lines are logged (redacted, rate-limited) as
    WARNINGs of ``trt_pose_td.native``; Python's own log keeps writing to the original fd 2.
    ``close()`` restores everything."""

    def __init__(self) -> None:
        self._saved: Optional[int] = None
        self._stream: Optional[TextIO] = None
        self._moved: List[logging.StreamHandler] = []
        self._thread: Optional[threading.Thread] = None

    def start(self) -> NativeStderr:
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._stream = os.fdopen(os.dup(self._saved), "w", buffering=1, encoding="utf-8",
                                 errors="replace")
        for h in logging.getLogger().handlers:  # a handler left on fd 2 would feed the pipe
            if isinstance(h, logging.StreamHandler) and _fileno(h.stream) == 2:
                h.setStream(self._stream)
                self._moved.append(h)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(target=self._pump, args=(read_end,),
                                        name="native stderr", daemon=True)
        self._thread.start()
        return self

    def _pump(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").strip()
                if line:
                    native_log.warning("%s", line)

    def close(self) -> None:
        if self._saved is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # closes the pipe's last write end: the pump reads EOF
        os.close(self._saved)
        self._saved = None
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for h in self._moved:
            h.setStream(sys.stderr)
        if self._stream is not None:
            self._stream.close()
