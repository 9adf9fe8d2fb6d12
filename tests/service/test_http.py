"""The HTTP endpoints with a real client: health verdicts, Prometheus text (checked by
prometheus_client's parser), MJPEG and snapshots decoded by OpenCV."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tests.service.helpers import http_get, http_json, metric_values, read_mjpeg_part
from trt_pose_td.errors import ConfigError
from trt_pose_td.io.capture import CaptureStats
from trt_pose_td.service.http import HttpServer
from trt_pose_td.service.preview import Preview
from trt_pose_td.service.stats import ServiceStats
from trt_pose_td.types import Frame, FrameResult, Poses, StageTimes

cv2 = pytest.importorskip("cv2")


def result(index: int, persons: int = 3, size=(480, 640)) -> FrameResult:
    rng = np.random.default_rng(index)
    image = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    poses = Poses(rng.uniform(50, 400, (persons, 17, 2)), rng.uniform(0.5, 1, (persons, 17)),
                  np.tile([40.0, 40.0, 420.0, 460.0], (persons, 1)), np.full(persons, 0.8))
    times = StageTimes(det_infer=10.0 + index % 5, pose_infer=20.0, total=35.0)
    return FrameResult(Frame(image, index, 1.0 * index, "test"), poses, times)


@pytest.fixture
def service():
    stats = ServiceStats("cam-1", {"version": "test", "backend": "onnxruntime"},
                         stale_after_s=30.0)
    preview = Preview(max_fps=50.0, width=320, quality=70)
    server = HttpServer("127.0.0.1", 0, stats, preview).start()
    stop = threading.Event()
    yield stats, preview, f"http://127.0.0.1:{server.port}", stop
    stop.set()
    server.close()
    preview.close()


def feed(stats: ServiceStats, preview: Preview, stop: threading.Event, n: int = 0) -> None:
    """Record results like the main loop does, ``n`` of them or until ``stop``."""
    i = 0
    while not stop.is_set() and (n == 0 or i < n):
        r = result(i)
        stats.record(r)
        preview.offer(r)
        i += 1
        stop.wait(0.02)


def test_health_is_503_until_frames_flow_then_200(service):
    stats, preview, url, stop = service
    status, doc = http_json(url + "/healthz")
    assert status == 503 and doc["healthy"] is False and doc["status"] == "starting"
    stats.set_phase("running")
    status, doc = http_json(url + "/healthz")
    assert status == 503 and doc["status"] == "waiting for the first frame"
    feed(stats, preview, stop, n=5)
    status, doc = http_json(url + "/healthz")
    assert status == 200 and doc["healthy"] is True and doc["frames"] == 5
    assert doc["camera"] == "cam-1"


def test_health_reports_source_loss_with_the_reason(service):
    stats, preview, url, stop = service
    stats.set_phase("running")
    feed(stats, preview, stop, n=2)
    stats.source_stats = lambda: CaptureStats("lost", 2, 0, 4, 3, "cannot open rtsp://cam")
    status, doc = http_json(url + "/healthz")
    assert status == 503
    assert doc["status"] == "source lost: cannot open rtsp://cam (4 reconnect attempt(s))"
    assert doc["source"]["reconnects"] == 4
    stats.source_stats = lambda: CaptureStats("streaming", 3)
    assert http_json(url + "/healthz")[0] == 200
    stats.stale_after_s = 1e-6  # frames stopped coming: stale
    status, doc = http_json(url + "/healthz")
    assert status == 503 and doc["status"].startswith("no frame processed for")


def test_metrics_are_valid_prometheus_text_with_the_promised_series(service):
    stats, preview, url, stop = service
    stats.set_phase("running")
    feed(stats, preview, stop, n=12)
    stats.source_stats = lambda: CaptureStats("streaming", 15, drops=3, reconnects=2)
    stats.sink("mqtt").errors = 4
    status, headers, body = http_get(url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    m = metric_values(body.decode())  # raises if the exposition format is broken
    assert m["trt_pose_td_frames_total"] == 12
    assert m["trt_pose_td_persons"] == 3 and m["trt_pose_td_persons_total"] == 36
    assert m["trt_pose_td_fps"] > 0
    assert m["trt_pose_td_source_dropped_frames_total"] == 3
    assert m["trt_pose_td_source_reconnects_total"] == 2
    assert m["trt_pose_td_sink_errors_total{sink=mqtt}"] == 4
    assert m["trt_pose_td_errors_total"] == 0 and m["trt_pose_td_up"] == 1
    assert m["trt_pose_td_stage_latency_seconds_count{stage=det_infer}"] == 12
    assert m["trt_pose_td_stage_latency_seconds{quantile=0.5,stage=pose_infer}"] == \
        pytest.approx(0.020)
    det = sum(10.0 + i % 5 for i in range(12)) / 1e3
    assert m["trt_pose_td_stage_latency_seconds_sum{stage=det_infer}"] == pytest.approx(det)


def test_mjpeg_stream_and_snapshot_are_annotated_jpegs(service):
    stats, preview, url, stop = service
    t = threading.Thread(target=feed, args=(stats, preview, stop), daemon=True)
    t.start()
    ctype, jpeg = read_mjpeg_part(url + "/stream.mjpg")
    assert ctype.startswith("multipart/x-mixed-replace; boundary=")
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (240, 320, 3)  # scaled to preview_width, aspect kept
    status, headers, body = http_get(url + "/snapshot.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (240, 320, 3)
    assert preview.encoded >= 2


def test_preview_encodes_nothing_while_nobody_watches(service):
    stats, preview, url, stop = service
    feed(stats, preview, stop, n=10)
    assert preview.encoded == 0 and preview.clients == 0


def test_page_stats_and_unknown_paths(service):
    stats, preview, url, stop = service
    status, headers, body = http_get(url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"\"/stream.mjpg\" + auth" in body and b"/stats.json" in body
    status, doc = http_json(url + "/stats.json")
    assert status == 200 and doc["camera"] == "cam-1" and "latency_ms" in doc
    assert http_get(url + "/nope")[0] == 404


def test_port_in_use_is_a_one_line_config_error(service):
    stats, preview, url, stop = service
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
        HttpServer("127.0.0.1", port, stats, preview)


@pytest.fixture
def guarded():
    """A server with a token, two connection slots and a 0.5 s timeout."""
    stats = ServiceStats("cam-1", {"version": "test"}, stale_after_s=30.0)
    server = HttpServer("127.0.0.1", 0, stats, None, token="t0k3n", max_connections=2,
                        timeout_s=0.5).start()
    yield server, f"http://127.0.0.1:{server.port}"
    server.close()


def test_token_guards_every_route_but_healthz():
    # its own server with room for connections: back-to-back requests may briefly overlap the
    # previous handler's slot, which a cap of 2 (the cap test below) would refuse
    stats = ServiceStats("cam-1", {"version": "test"}, stale_after_s=30.0)
    server = HttpServer("127.0.0.1", 0, stats, None, token="t0k3n", max_connections=16,
                        timeout_s=2.0).start()
    try:
        _check_token_routes(f"http://127.0.0.1:{server.port}")
    finally:
        server.close()


def _check_token_routes(url: str) -> None:
    for route in ("/", "/metrics", "/stats.json", "/snapshot.jpg", "/nope"):
        status, headers, _ = http_get(url + route)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), route
        assert http_get(url + route, token="t0k3n-not")[0] == 401, route
    assert http_get(url + "/healthz")[0] == 503  # open, and honest: no frame yet
    assert http_get(url + "/stats.json", token="t0k3n")[0] == 200
    assert http_get(url + "/metrics?token=t0k3n")[0] == 200


def test_connections_over_the_cap_are_closed_and_idle_ones_time_out(guarded, caplog):
    import socket
    import time

    server, url = guarded
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
    try:
        time.sleep(0.1)
        extra = socket.create_connection(("127.0.0.1", server.port))
        extra.settimeout(2.0)
        assert extra.recv(100) == b""  # closed at once, unserved
        extra.close()
        assert server.refused >= 1
        assert any("closed unserved" in r.getMessage() for r in caplog.records)
        for s in idle:  # the idle connections are dropped after timeout_s
            s.settimeout(3.0)
            assert s.recv(100) == b""
    finally:
        for s in idle:
            s.close()
    assert http_get(url + "/healthz")[0] == 503  # slots free again
    metrics = http_get(url + "/metrics", token="t0k3n")[2].decode()
    assert metric_values(metrics)["trt_pose_td_http_refused_connections_total"] >= 1


def test_default_bind_is_loopback_and_the_log_names_the_bound_address(caplog):
    import logging

    from trt_pose_td.service.config import HttpSection

    assert HttpSection().host == "127.0.0.1"
    caplog.set_level(logging.INFO, logger="trt_pose_td.service.http")
    stats = ServiceStats("cam-1", {"version": "test"})
    server = HttpServer("0.0.0.0", 0, stats, None).start()
    try:
        assert f"listening on 0.0.0.0:{server.port} (every interface)" in caplog.text
        assert "no authentication" in caplog.text
    finally:
        server.close()
