"""Frame results and a size-limited file system for the sink tests."""

from __future__ import annotations

import contextlib
import gzip
import json
import subprocess
from pathlib import Path
from typing import Iterator, List

import numpy as np
import pytest

from trt_pose_td.types import Frame, FrameResult, Poses, StageTimes


def result(index: int, persons: int = 2, seq: int = -1, run_id: str = "",
           camera: str = "") -> FrameResult:
    """A frame's result with ``persons`` random poses (seeded by ``index``); ``seq`` >= 0 and
    ``run_id`` stamp it as the service does."""
    rng = np.random.default_rng(index)
    poses = Poses(rng.uniform(0, 60, (persons, 17, 2)), rng.uniform(0, 1, (persons, 17)),
                  np.tile([1.0, 2.0, 50.0, 60.0], (persons, 1)), np.full(persons, 0.9))
    return FrameResult(Frame(np.zeros((64, 64, 3), np.uint8), index, 100.0 + index, "cam",
                             camera), poses, StageTimes(total=1.0), run_id=run_id,
                       seq=None if seq < 0 else seq)


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, size_kb: int) -> Iterator[Path]:
    """A real size-limited file system: tmpfs of ``size_kb`` KiB mounted on ``folder`` (needs
    root / CAP_SYS_ADMIN, as in the CI container; skips otherwise); unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs",
                           str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()}): the floor is "
                    "covered by the probe tests")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def all_lines(path: Path) -> List[dict]:
    """Every line of a rotating JSONL file: the closed files (oldest first, gzipped or not),
    then the open one."""
    from trt_pose_td.io.rotate import rotated_files

    docs = []
    for _, f in rotated_files(path):
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt") as src:  # type: ignore[operator]
            docs += [json.loads(line) for line in src]
    if path.exists():
        docs += [json.loads(line) for line in path.read_text().splitlines()]
    return docs
