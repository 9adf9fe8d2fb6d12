"""Live capture against real streams: an MJPEG camera served over HTTP (what FFmpeg reads from
IP cameras), a refused RTSP port, a missing V4L2 device. No camera hardware needed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.service.helpers import MjpegCamera, free_port, gray_jpegs, wait_for
from trt_pose_td.errors import SourceError
from trt_pose_td.io.capture import (
    CaptureOptions,
    CaptureSource,
    FileFeed,
    csi_pipeline,
    cv2_has_gstreamer,
    open_capture,
)
from trt_pose_td.io.sources import open_source

cv2 = pytest.importorskip("cv2")

FAST = CaptureOptions(timeout_s=2.0, reconnect_min_s=0.1, reconnect_max_s=0.3)


def grey_level(frame) -> int:
    return int(round(float(frame.image.mean()) / 8))


@pytest.fixture
def camera():
    cams = []

    def make(**kw):
        cam = MjpegCamera(gray_jpegs(30), **kw).start()
        cams.append(cam)
        return cam

    yield make
    for cam in cams:
        cam.stop()


def test_mjpeg_stream_frames_arrive_in_order(camera):
    cam = camera(fps=50)
    with open_capture(cam.url, FAST) as src:
        frames = [wait_for(lambda: src.read(timeout=1.0), 10, "a frame") for _ in range(5)]
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [f.index for f in frames] == sorted(f.index for f in frames)
    levels = [grey_level(f) for f in frames]
    assert levels == sorted(levels) and len(set(levels)) == 5  # newer frames, never repeats
    assert all(f.source == cam.url for f in frames)


def test_slow_consumer_gets_the_newest_frame_and_drops_are_counted(camera):
    cam = camera(fps=100)
    with open_capture(cam.url, FAST) as src:
        wait_for(lambda: src.read(timeout=1.0), 10, "the first frame")
        got = []
        for _ in range(4):
            time.sleep(0.25)  # inference much slower than the camera
            got.append(src.read(timeout=2.0))
        stats = src.stats()
    assert stats.drops > 0
    indices = [f.index for f in got]
    assert all(b - a > 1 for a, b in zip(indices, indices[1:])), indices  # skipped old frames
    assert stats.frames >= indices[-1] + 1


def test_lost_stream_reconnects_with_backoff_and_recovers(camera):
    cam = camera(fps=50, frames_per_connection=5)  # every connection drops after 5 frames
    with open_capture(cam.url, FAST) as src:
        seen = []
        wait_for(lambda: seen.append(src.read(timeout=0.5)) or
                 len([f for f in seen if f is not None]) >= 12, 20, "12 frames across drops")
        stats = src.stats()
    assert stats.reconnects >= 2 and cam.connections >= 3
    assert not src.ended


def test_unplugged_camera_reports_lost_then_comes_back(camera):
    cam = camera(fps=30)
    with open_capture(cam.url, FAST) as src:
        wait_for(lambda: src.read(timeout=1.0), 10, "a frame")
        cam.stop()
        wait_for(lambda: src.stats().state in ("lost", "connecting"), 10, "the loss")
        before = src.stats().reconnects
        wait_for(lambda: src.stats().reconnects > before + 1, 10, "retries while away")
        src.read(timeout=0)  # the last frame captured before the loss, if not read yet
        assert src.read(timeout=0.3) is None and not src.ended  # a timeout, not the end
        cam.start()
        wait_for(lambda: src.read(timeout=0.5), 15, "frames after the camera came back")
        assert src.stats().state == "streaming"


def test_refused_rtsp_is_retried_not_fatal():
    url = f"rtsp://127.0.0.1:{free_port()}/stream"
    with open_capture(url, FAST) as src:
        wait_for(lambda: src.stats().reconnects >= 3, 15, "three reconnect attempts")
        stats = src.stats()
        assert stats.state == "connecting" and stats.frames == 0
        assert stats.open_failures >= 3 and "cannot open" in stats.last_error
        assert src.read(timeout=0.2) is None and not src.ended


def test_max_retries_turns_into_end_of_stream():
    url = f"http://127.0.0.1:{free_port()}/cam.mjpg"
    src = open_capture(url, CaptureOptions(timeout_s=1.0, reconnect_min_s=0.05,
                                           reconnect_max_s=0.05, max_retries=2))
    wait_for(lambda: src.ended, 10, "giving up")
    assert src.read(timeout=0.1) is None and list(src) == []
    assert src.stats().state == "ended"
    src.close()


def test_end_of_stream_is_distinct_from_a_timeout(camera):
    cam = camera(fps=50, frames_per_connection=6)
    src = open_capture(cam.url, CaptureOptions(timeout_s=2.0, reconnect=False))
    frames = list(src)  # iteration stops at the end of the stream, not on a timeout
    assert 1 <= len(frames) <= 6 and src.ended
    assert src.stats().state == "ended" and src.stats().reconnects == 0
    src.close()


def test_read_times_out_while_a_stalled_stream_is_still_open(camera):
    cam = camera(fps=50, stall_after=8)  # connected, but nothing after 8 frames
    with open_capture(cam.url, CaptureOptions(timeout_s=30.0)) as src:
        wait_for(lambda: src.stats().frames >= 8, 10, "the first frames")
        src.read(timeout=0)
        assert src.read(timeout=0.5) is None
        assert not src.ended and src.stats().state == "streaming"
        cam.stop()  # lets the blocked read fail so close() returns promptly


def test_missing_v4l2_device_is_retried_with_a_clear_reason():
    with open_source("/dev/video97") as src:
        assert isinstance(src, CaptureSource)
        wait_for(lambda: src.stats().last_error, 10, "the first attempt")
        assert "no such device /dev/video97" in src.stats().last_error
        assert src.stats().state == "connecting"


@pytest.mark.parametrize("uri, message", [
    ("csi://front", "expected csi://N"),
    ("v4l2://video0", "expected v4l2:///dev/videoN"),
])
def test_malformed_uris_fail_at_once(uri, message):
    with pytest.raises(SourceError, match=message):
        open_capture(uri)


def test_csi_without_gstreamer_names_the_fix():
    if cv2_has_gstreamer():
        pytest.skip("this OpenCV has GStreamer: csi:// would try the camera")
    with pytest.raises(SourceError) as err:
        open_capture("csi://0")
    text = str(err.value)
    assert "GStreamer" in text and "apt install python3-opencv" in text and "v4l2://" in text
    assert "\n" not in text


def test_csi_pipeline_keeps_only_the_newest_buffer():
    text = csi_pipeline(1, CaptureOptions(width=1920, height=1080, fps=30, flip=2))
    assert text.startswith("nvarguscamerasrc sensor-id=1 ")
    assert "width=(int)1920, height=(int)1080, framerate=(fraction)30/1" in text
    assert "flip-method=2" in text and text.endswith("appsink drop=true max-buffers=1 sync=false")


def test_backoff_doubles_up_to_the_cap():
    o = CaptureOptions(reconnect_min_s=0.5, reconnect_max_s=4.0)
    assert [o.backoff(n) for n in (1, 2, 3, 4, 5, 50)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_file_feed_reads_every_frame_then_ends(tmp_path):
    path = str(tmp_path / "v.mp4")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(4):
        w.write(np.full((48, 64, 3), i * 50, np.uint8))
    w.release()
    feed = FileFeed(open_source(path))
    frames = []
    while (frame := feed.read(timeout=0.1)) is not None:
        frames.append(frame)
    assert [f.index for f in frames] == [0, 1, 2, 3] and feed.ended
    assert feed.stats().frames == 4 and feed.stats().state == "ended"
    feed.close()
