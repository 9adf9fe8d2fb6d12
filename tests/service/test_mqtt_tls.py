"""MQTT over TLS with a password file against a real mosquitto (certificates made here with
the openssl command line, loopback only); refused, unreachable and untrusted brokers show as
one log line per backoff step, in the sink's state and its counters."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.service.helpers import Broker, Subscriber, free_port, wait_for
from trt_pose_td.types import Frame, FrameResult, Poses, StageTimes

pytest.importorskip("paho.mqtt.client")

from trt_pose_td.io.mqtt import MqttSink

CONFIG = """\
per_listener_settings false
allow_anonymous false
password_file {folder}/passwd
listener {{port}} 127.0.0.1
cafile {folder}/ca.crt
certfile {folder}/server.crt
keyfile {folder}/server.key
require_certificate true
user root
"""


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(folder: Path, name: str = "ca") -> None:
    """A CA, a server certificate for IP 127.0.0.1 and a client certificate, all EC P-256."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *key, "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
            "-subj", f"/CN=test {name}", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for who, ext in (("server", ["-extfile", "san.ext"]), ("client", [])):
        openssl("req", *key, "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj",
                f"/CN={who}", cwd=folder)
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", f"{name}.crt", "-CAkey",
                f"{name}.key", "-CAcreateserial", "-out", f"{who}.crt", "-days", "2", *ext,
                cwd=folder)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    if shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("needs openssl and mosquitto_passwd (scripts/test.sh installs mosquitto)")
    folder = tmp_path_factory.mktemp("pki")
    make_pki(folder)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(folder / "passwd"), "cam", "s3cret-pw"],
                   check=True, capture_output=True, timeout=30)
    (folder / "password").write_text("s3cret-pw\n")
    broker = Broker(config=CONFIG.format(folder=folder), folder=folder).start()
    yield broker, folder
    broker.stop()


def result(index: int) -> FrameResult:
    poses = Poses(np.zeros((1, 17, 2)), np.ones((1, 17)), np.array([[1.0, 2.0, 30.0, 40.0]]),
                  np.ones(1))
    return FrameResult(Frame(np.zeros((48, 64, 3), np.uint8), index, 1.0 * index, "cam"),
                       poses, StageTimes(total=1.0))


def tls(folder: Path, ca: str = "ca.crt") -> dict:
    return dict(tls=True, ca_file=str(folder / ca), cert_file=str(folder / "client.crt"),
                key_file=str(folder / "client.key"))


def failures_logged(caplog) -> int:
    return sum("mqtt: cannot connect" in r.getMessage() for r in caplog.records)


def test_tls_client_certificate_and_password_publish(tls_broker):
    broker, folder = tls_broker
    sub = Subscriber(broker.port, "trt-pose-td/#", auth=("cam", "s3cret-pw"),
                     tls=dict(ca_certs=str(folder / "ca.crt"),
                              certfile=str(folder / "client.crt"),
                              keyfile=str(folder / "client.key")))
    password = (folder / "password").read_text().strip()
    sink = MqttSink("127.0.0.1", broker.port, camera="gate", qos=1, username="cam",
                    password=password, client_id="trt-pose-td-host-gate", **tls(folder))
    try:
        wait_for(lambda: sink.stats().connected, 15, "the TLS connection")
        assert sink.stats().state == "connected" and sink.stats().connect_failures == 0
        sink.write(result(7))
        topic, payload, _ = sub.get(topic="trt-pose-td/gate/poses")
        assert json.loads(payload)["frame"] == 7
    finally:
        sink.close(timeout=5)
        sub.close()


@pytest.mark.parametrize("case", ["wrong password", "untrusted CA", "unreachable"])
def test_failing_broker_is_one_line_per_backoff_step_and_a_state(tls_broker, case, caplog):
    broker, folder = tls_broker
    caplog.set_level(logging.WARNING, logger="trt_pose_td.io.mqtt")
    port, kwargs = broker.port, tls(folder)
    if case == "untrusted CA":
        other = folder / "other"
        other.mkdir(exist_ok=True)
        make_pki(other, "other")
        kwargs["ca_file"] = str(other / "other.crt")
    elif case == "unreachable":
        port = free_port()
    sink = MqttSink("127.0.0.1", port, camera="gate", username="cam",
                    password="wrong" if case == "wrong password" else "s3cret-pw",
                    reconnect_min_s=0.3, reconnect_max_s=1.0, **kwargs)
    try:
        wait_for(lambda: sink.stats().connect_failures >= 3, 20, "three failed attempts")
        s = sink.stats()
        assert not s.connected and s.connects == 0
        expected = {"wrong password": ("refused", "ot authorized"),
                    "untrusted CA": ("unreachable", "CERTIFICATE_VERIFY_FAILED"),
                    "unreachable": ("unreachable", "ConnectionRefusedError")}[case]
        assert s.state == expected[0] and expected[1] in s.last_error, s
        assert abs(failures_logged(caplog) - s.connect_failures) <= 1  # one line per attempt
        assert "s3cret-pw" not in caplog.text and "wrong" not in s.last_error
    finally:
        sink.close(timeout=1)


@pytest.mark.slow
def test_serve_shows_a_broker_unreachable_at_start(service_clip, tmp_path, procs):
    from tests.service.helpers import Serve, http_json

    pytest.importorskip("onnxruntime")
    port = free_port()
    serve = Serve(tmp_path, str(service_clip), "--loop", "--jsonl", "",
                  "--mqtt", f"127.0.0.1:{port}", "--set", "mqtt.reconnect_min_s=0.5",
                  "--set", "mqtt.reconnect_max_s=1.0")
    procs.append(serve)
    try:
        wait_for(lambda: serve.serving() and serve.metrics().get(
            "trt_pose_td_mqtt_connect_failures_total", 0) >= 2, 90, "failed MQTT attempts")
        mqtt = http_json(serve.url + "/healthz")[1]["sinks"]["mqtt"]
        assert mqtt["state"] == "unreachable" and "Connection refused" in mqtt["last_error"]
        assert serve.metrics()["trt_pose_td_mqtt_connected"] == 0
        wait_for(lambda: "mqtt unreachable (ConnectionRefusedError" in serve.log, 15,
                 "the status line naming the broker state")
    finally:
        code = serve.terminate()
    assert code == 0
    log = serve.log
    assert f"mqtt: cannot connect to 127.0.0.1:{port}: ConnectionRefusedError" in log
    assert f"client id trt-pose-td-{socket.gethostname()}-camera0," in log  # host and camera
