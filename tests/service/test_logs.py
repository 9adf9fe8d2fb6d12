"""Logs readable for weeks: a repeated warning is one line per interval plus its count, and
what OpenCV / FFmpeg write to fd 2 from C goes through the same filter, credentials stripped."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.service.helpers import REPO

SCRIPT = textwrap.dedent("""
    import logging, os, sys, time
    import cv2
    from trt_pose_td.service.logs import NativeStderr, install_repeat_filter
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    repeats = install_repeat_filter(0.5)
    native = NativeStderr().start()
    log = logging.getLogger("trt_pose_td.io.capture")
    for i in range(2000):  # a source failing in a tight loop, from C and from Python
        os.write(2, b"[tcp @ 0x%x] Connection to rtsp://admin:s3cret@cam:%d failed\\n" % (i, i))
        log.warning("rtsp://admin:s3cret@cam/x: lost; reconnecting in %.1f s (attempt %d)",
                    0.1 * i, i)
    cv2.VideoCapture("/nonexistent/clip.avi")  # OpenCV's own warning, written by C++
    time.sleep(0.6)
    repeats.flush()
    log.info("info lines are never limited %d", 1)
    log.info("info lines are never limited %d", 2)
    native.close()
    print("stdout still works", flush=True)
""")


def test_repeats_collapse_and_native_stderr_is_redacted_and_limited():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "s3cret" not in proc.stderr and "rtsp://***@cam" in proc.stderr
    native = [ln for ln in lines if ln.startswith("trt_pose_td.native") and "tcp @" in ln]
    python = [ln for ln in lines if "reconnecting in" in ln]
    # 2000 of each: the first, then the summary flushed after the interval
    assert len(native) == 2 and "1999 more like this" in native[1], lines
    assert len(python) == 2 and "1999 more like this" in python[1], lines
    assert sum("never limited" in ln for ln in lines) == 2
    assert len(lines) < 20, lines
    assert proc.stdout == "stdout still works\n"
