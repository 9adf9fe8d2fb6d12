"""Read the service's rotating JSONL file as it is written: ``tail -F`` that loses nothing.

:func:`follow` keeps the file it reads open; when ``path`` is renamed away (a rotation) it reads
that open file to its end, then every file closed since (``path.N`` or ``path.N.gz``, counters
in order, should several rotations have passed between two looks), then the new ``path`` from
its start. With ``from_start`` it first reads the closed files still on disk, oldest first. Only
complete lines are returned (the writer appends whole lines; a partial one is held back until
its newline arrives). ``trt-pose-td follow PATH`` prints them.
"""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path
from typing import IO, Callable, Iterator, Optional

from .rotate import rotated_files


def _read_closed(f: Path) -> Iterator[str]:
    """Every line of a closed file (plain, or its ``.gz`` when compressed meanwhile)."""
    for name in (f, f.with_name(f.name + ".gz")) if f.suffix != ".gz" else (f,):
        try:
            opener = gzip.open if name.suffix == ".gz" else open
            with opener(name, "rt", encoding="utf-8") as src:  # type: ignore[operator]
                yield from src
            return
        except FileNotFoundError:
            continue


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:  # between the writer's rename and its new file
        return False


def _newest(path: Path) -> int:
    files = rotated_files(path)
    return files[-1][0] if files else 0


def follow(path: str, from_start: bool = False, poll_s: float = 0.2,
           stop: Callable[[], bool] = lambda: False, wait: bool = True) -> Iterator[str]:
    """Lines (with their newline) of the rotating JSONL file ``path`` and its successors, until
    ``stop()`` returns True (checked between polls). Waits for ``path`` to exist; without
    ``from_start`` begins at the end of what exists now. ``wait=False``: return at the end of
    what is written now instead of waiting for more."""
    p = Path(path)
    # the highest closed-file counter read (or skipped: without from_start, what exists now
    # is history, and a file that appears later is read from its start)
    last = 0 if from_start else _newest(p)
    at_end = not from_start and p.exists()
    src: Optional[IO[str]] = None
    pending = ""
    while not stop():
        if src is None:
            if not at_end:  # first every file closed since the last one read
                for n, f in rotated_files(p):
                    if n > last:
                        yield from _read_closed(f)
                        last = n
            try:
                src = open(p, encoding="utf-8")
            except FileNotFoundError:
                if not wait:
                    return
                time.sleep(poll_s)
                continue
            if at_end:
                src.seek(0, os.SEEK_END)
                at_end, last = False, _newest(p)
            elif _newest(p) != last:  # a rotation raced the open: which file is this? again
                src.close()
                src = None
                continue
            # from here on, this file is the closed file `last + 1` once renamed
        chunk = src.read()
        if chunk:
            lines = (pending + chunk).split("\n")
            pending = lines.pop()
            yield from (line + "\n" for line in lines)
            continue
        if _same_file(p, src.fileno()):
            if not wait:
                break
            time.sleep(poll_s)
            continue
        rest = src.read()  # renamed: the writer wrote its last line before the rename
        src.close()
        src = None
        lines = (pending + rest).split("\n")
        pending = lines.pop()
        yield from (line + "\n" for line in lines)
        last += 1
    if src is not None:
        src.close()
