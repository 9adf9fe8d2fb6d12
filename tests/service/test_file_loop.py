"""A looping file source that becomes unreadable backs off like a camera (no busy spin), says
so in the log and its stats, and resumes when the file is back."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.service.helpers import wait_for
from trt_pose_td.io.capture import CaptureOptions, FileFeed
from trt_pose_td.io.sources import open_source

cv2 = pytest.importorskip("cv2")


def write_video(path: Path, frames: int = 8) -> None:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(frames):
        out.write(np.full((48, 64, 3), 20 * i, np.uint8))
    out.release()


def read_for(feed: FileFeed, seconds: float) -> int:
    """Frames read in ``seconds`` of the service's polling (0.5 s timeout), on a thread so a
    source that never returns fails the test instead of hanging it."""
    got = [0]

    def run() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if feed.read(timeout=0.5) is not None:
                got[0] += 1

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds + 10)
    if t.is_alive():
        pytest.fail("FileFeed.read did not return: the looping source spins")
    return got[0]


def test_unreadable_looping_file_backs_off_logs_and_recovers(tmp_path, caplog):
    video, good = tmp_path / "clip.avi", tmp_path / "good.avi"
    write_video(good)
    shutil.copy(good, video)
    feed = FileFeed(open_source(str(video), loop=True),
                    CaptureOptions(reconnect_min_s=0.2, reconnect_max_s=0.8))
    try:
        assert read_for(feed, 0.5) >= 8  # loops past the end of an 8-frame file
        assert feed.stats().state == "streaming"
        video.write_bytes(b"not a video any more" * 100)
        caplog.set_level(logging.WARNING, logger="trt_pose_td.io.capture")
        cpu0 = time.process_time()
        frames = read_for(feed, 3.0)
        cpu = time.process_time() - cpu0
        s = feed.stats()
        assert frames < 10  # at most what was left of the pass being read
        assert cpu < 1.0, f"{cpu:.2f} s of CPU in 3 s: busy-spinning"
        assert s.state == "lost" and "cannot read video" in s.last_error
        lines = [r.getMessage() for r in caplog.records if "reopening in" in r.getMessage()]
        # backoff 0.2, 0.4, 0.8, 0.8 ...: a handful of attempts in 3 s, each logged once
        assert 2 <= len(lines) <= 6 and s.open_failures == len(lines)
        assert not feed.ended
        shutil.copy(good, video)
        wait_for(lambda: feed.read(timeout=0.5) is not None, 10, "frames after the file is back")
        assert feed.stats().state == "streaming" and feed.stats().reconnects >= 2
    finally:
        feed.close()


def test_unreadable_file_without_loop_still_ends(tmp_path):
    video = tmp_path / "clip.avi"
    write_video(video, 3)
    feed = FileFeed(open_source(str(video)), CaptureOptions(reconnect_min_s=0.2))
    assert read_for(feed, 1.0) == 3 and feed.ended and feed.stats().state == "ended"
