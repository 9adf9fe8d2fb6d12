"""`trt-pose-td serve` end to end, as systemd runs it: a subprocess on ONNX Runtime with the fast
keypoint model, a real mosquitto broker, a real HTTP client, a real notify socket, SIGTERM."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.service.helpers import (
    REPO,
    SERVE_KEYS,
    MjpegCamera,
    NotifySocket,
    Serve,
    Subscriber,
    http_json,
    read_mjpeg_part,
    video_frames,
    wait_for,
)

pytest.importorskip("onnxruntime")
pytest.importorskip("paho.mqtt.client")
cv2 = pytest.importorskip("cv2")

@pytest.mark.slow
def test_serve_end_to_end_jsonl_mqtt_http_systemd_sigterm(service_clip, tmp_path, broker, procs):
    notify = NotifySocket(str(tmp_path / "notify.sock"))
    sub = Subscriber(broker.port, "trt-pose-td/#")
    serve = Serve(tmp_path, str(service_clip), "--loop", "--camera", "lobby",
                  "--mqtt", f"127.0.0.1:{broker.port}", "--mqtt-qos", "1",
                  env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "2000000"})
    procs.append(serve)
    try:
        wait_for(lambda: serve.alive() and notify.has("READY=1"), 60, "READY=1")
        # JSONL on stdout, the `run` schema
        wait_for(lambda: len(serve.lines) >= 3, 30, "three JSONL lines")
        docs = [json.loads(line) for line in serve.lines[:3]]
        assert all(set(d) == SERVE_KEYS for d in docs)  # run's schema + run_id, seq
        assert [d["seq"] for d in docs] == [0, 1, 2] and docs[0]["run_id"] == docs[2]["run_id"]
        assert docs[0]["persons"] and len(docs[0]["persons"][0]["keypoints"]) == 17
        # MQTT, per-camera topic, plus the retained status
        topic, payload, _ = sub.get(topic="trt-pose-td/lobby/poses")
        msg = json.loads(payload)
        assert msg["camera"] == "lobby" and set(msg) == SERVE_KEYS | {"camera"}
        assert msg["run_id"] == docs[0]["run_id"]
        assert msg["persons"][0]["box"] and len(msg["persons"][0]["keypoints"]) == 17
        # HTTP
        status, health = http_json(serve.url + "/healthz")
        assert status == 200 and health["healthy"] and health["camera"] == "lobby"
        m = serve.metrics()
        assert m["trt_pose_td_frames_total"] >= 3 and m["trt_pose_td_up"] == 1
        assert m["trt_pose_td_persons"] >= 1 and m["trt_pose_td_mqtt_connected"] == 1
        assert m["trt_pose_td_stage_latency_seconds_count{stage=pose_infer}"] >= 3
        _, jpeg = read_mjpeg_part(serve.url + "/stream.mjpg")
        frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert frame.shape == (240, 320, 3)  # the clip is smaller than preview_width: as is
        wait_for(lambda: notify.has("WATCHDOG=1"), 10, "a watchdog ping")
        wait_for(lambda: any(line.startswith("STATUS=") and "fps" in line
                             for m in notify.collect() for line in m.splitlines()
                             if not m.startswith("READY=1")), 10, "a periodic STATUS= line")
    finally:
        code = serve.terminate()
    assert code == 0, serve.log[-3000:]
    assert notify.has("STOPPING=1")
    log = serve.log
    assert "resolved config:" in log and '"camera": "lobby"' in log
    assert "received SIGTERM: stopping" in log and "engines closed" in log
    assert "Traceback" not in log
    rest = [m for m in sub.drain() if m[0] == "trt-pose-td/lobby/status"]
    assert rest and rest[-1][1] == b"offline"
    sub.close()
    notify.close()


@pytest.mark.slow
def test_serve_survives_camera_loss_reports_unhealthy_and_recovers(service_clip, tmp_path, procs):
    camera = MjpegCamera(video_frames(service_clip), fps=8).start()
    serve = Serve(tmp_path, camera.url, "--jsonl", "", "--set", "source.reconnect_min_s=0.2",
                  "--set", "source.reconnect_max_s=0.5", "--set", "service.stale_after_s=3")
    procs.append(serve)
    try:
        wait_for(lambda: serve.serving() and http_json(serve.url + "/healthz")[0] == 200, 60,
                 "healthy with the camera up")
        camera.stop()  # unplugged
        wait_for(lambda: http_json(serve.url + "/healthz")[0] == 503, 20, "unhealthy")
        status, health = http_json(serve.url + "/healthz")
        assert "source" in health["status"] or "no frame" in health["status"]
        first = serve.metrics()["trt_pose_td_source_reconnects_total"]
        wait_for(lambda: serve.metrics()["trt_pose_td_source_reconnects_total"] >= first + 2,
                 20, "reconnect attempts while the camera is away")
        assert serve.metrics()["trt_pose_td_source_up"] == 0
        frames_before = serve.metrics()["trt_pose_td_frames_total"]
        camera.start()  # plugged back in
        wait_for(lambda: http_json(serve.url + "/healthz")[0] == 200, 30, "healthy again")
        wait_for(lambda: serve.metrics()["trt_pose_td_frames_total"] > frames_before + 2, 30,
                 "frames processed after the camera came back")
    finally:
        code = serve.terminate()
        camera.stop()
    assert code == 0, serve.log[-3000:]
    assert "reconnecting in" in serve.log and "Traceback" not in serve.log


@pytest.mark.slow
def test_serve_keeps_inferring_through_broken_sinks(service_clip, tmp_path, broker, procs):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    serve = Serve(tmp_path, str(service_clip), "--loop", "--jsonl", "/dev/full",
                  "--mqtt", f"127.0.0.1:{broker.port}", "--set", "mqtt.reconnect_max_s=1")
    procs.append(serve)
    try:
        wait_for(lambda: serve.serving() and serve.metrics().get(
            "trt_pose_td_mqtt_connected") == 1, 60, "connected to the broker")
        broker.stop()  # the broker dies
        wait_for(lambda: serve.metrics()["trt_pose_td_mqtt_connected"] == 0, 20,
                 "the lost broker noticed")
        frames = serve.metrics()["trt_pose_td_frames_total"]
        wait_for(lambda: serve.metrics()["trt_pose_td_frames_total"] > frames + 10, 30,
                 "inference going on without the broker")
        m = serve.metrics()
        assert m["trt_pose_td_sink_errors_total{sink=jsonl}"] >= 1  # ENOSPC from /dev/full
        assert m["trt_pose_td_sink_up{sink=jsonl}"] == 0
        assert http_json(serve.url + "/healthz")[0] == 200  # inference is fine
        broker.start()
        sub = Subscriber(broker.port, "trt-pose-td/camera0/poses")
        wait_for(lambda: serve.metrics()["trt_pose_td_mqtt_connected"] == 1, 30,
                 "reconnected to the restarted broker")
        assert json.loads(sub.get()[1])["camera"] == "camera0"
        assert serve.metrics()["trt_pose_td_mqtt_reconnects_total"] >= 1
        sub.close()
    finally:
        code = serve.terminate()
    assert code == 0, serve.log[-3000:]
    log = serve.log
    assert "sink jsonl failed (OSError: [Errno 28] No space left on device)" in log
    assert "mqtt: lost the connection" in log and "mqtt: reconnected" in log


@pytest.mark.slow
def test_file_source_end_exits_zero_with_every_frame(service_clip, tmp_path, procs):
    out = tmp_path / "poses.jsonl"
    serve = Serve(tmp_path, str(service_clip), "--jsonl", str(out), "--no-http")
    procs.append(serve)
    assert serve.proc.wait(timeout=60) == 0, serve.log[-3000:]
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["frame"] for d in docs] == list(range(10))
    assert [d["seq"] for d in docs] == list(range(10))
    assert all(set(d) == SERVE_KEYS for d in docs)
    assert "source ended: stopping" in serve.log


def test_serve_without_a_source_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "trt_pose_td", "serve", "--no-http"],
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "trt-pose-td serve: error: config: no source: give one (trt-pose-td serve SOURCE) or set "
        "[source] uri"]
