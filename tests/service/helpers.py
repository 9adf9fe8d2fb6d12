"""Real components for the service tests: a mosquitto broker, an MQTT subscriber, an MJPEG
camera served over HTTP, a datagram socket standing in for systemd's notify socket."""

from __future__ import annotations

import base64
import http.server
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_KEYS = {"frame", "source", "timestamp", "persons"}
SERVE_KEYS = RUN_KEYS | {"run_id", "seq"}  # the service adds its start id and a frame counter


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.1) -> Any:
    """Poll ``predicate`` until truthy; fail the test naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Broker:
    """``mosquitto -p PORT`` from Debian's package; stop() and start() keep the port.

    ``config``: mosquitto.conf text instead (``{port}`` expands), e.g. a TLS listener.
    """

    def __init__(self, port: Optional[int] = None, config: str = "",
                 folder: Optional[Path] = None) -> None:
        exe = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if exe is None:
            pytest.skip("mosquitto is not installed (scripts/test.sh apt-installs it)")
        self.exe, self.port = exe, port or free_port()
        self.args = ["-p", str(self.port)]
        if config:
            conf = (folder or Path("/tmp")) / f"mosquitto-{self.port}.conf"
            conf.write_text(config.format(port=self.port))
            self.args = ["-c", str(conf)]
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen([self.exe, *self.args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(self._listening, 10, f"mosquitto on port {self.port}")
        return self

    def _listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"mosquitto exited: {self.proc.stderr.read().decode()}")  # type: ignore
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self, graceful: bool = False) -> None:
        """Killed like a crash (no goodbye to the clients), or ``graceful``: SIGTERM, so a
        broker with ``persistence true`` saves its sessions."""
        if self.proc is not None and self.proc.poll() is None:
            if graceful:
                self.proc.terminate()
            else:
                self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    @classmethod
    def persistent(cls, folder: Path, port: Optional[int] = None) -> Broker:
        """A broker that keeps sessions across a graceful restart, and queues any number of
        messages for a persistent subscriber that is away."""
        return cls(port, "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                   f"persistence_location {folder}/\nmax_queued_messages 0\n"
                   "user root\n", folder)  # as root: stay root to write the folder


class Subscriber:
    """A paho client collecting (topic, payload) pairs of ``topic`` (wildcards allowed)."""

    def __init__(self, port: int, topic: str, tls: Optional[Dict[str, str]] = None,
                 auth: Optional[Tuple[str, str]] = None, session_expiry_s: int = 0,
                 client_id: str = "") -> None:
        """``session_expiry_s`` > 0: an MQTT 5 persistent session (clean_start false) that
        the broker keeps that long while this client is away, queueing its QoS 1 messages;
        the client reconnects by itself (paho's loop) when the broker comes back."""
        import paho.mqtt.client as mqtt

        self.messages: queue.Queue[Tuple[str, bytes, bool]] = queue.Queue()
        v5 = session_expiry_s > 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        if tls:
            self.client.tls_set(**tls)
        if auth:
            self.client.username_pw_set(*auth)
        self._subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload,
                                                                    bool(m.retain)))
        self.client.reconnect_delay_set(0.2, 1)
        if v5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry_s
            self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        else:
            self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            pytest.fail("subscriber could not subscribe")

    def get(self, timeout: float = 20.0, topic: Optional[str] = None) -> Tuple[str, bytes, bool]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no MQTT message on {topic or 'the topic'} within {timeout} s")
            try:
                item = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if topic is None or item[0] == topic:
                return item

    def drain(self) -> List[Tuple[str, bytes, bool]]:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def video_frames(path: Path, width: int = 480) -> List[bytes]:
    """JPEGs of every frame of a video, scaled to ``width``."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        h = round(image.shape[0] * width / image.shape[1])
        out.append(cv2.imencode(".jpg", cv2.resize(image, (width, h)))[1].tobytes())
    cap.release()
    return out


def gray_jpegs(n: int, size: Tuple[int, int] = (64, 48)) -> List[bytes]:
    """``n`` JPEGs whose mean grey level is 8 * index: a frame tells which one it is."""
    import cv2

    return [cv2.imencode(".jpg", np.full((size[1], size[0], 3), 8 * i, np.uint8))[1].tobytes()
            for i in range(n)]


class MjpegCamera:
    """An IP camera: ``http://127.0.0.1:PORT/cam.mjpg`` streams ``jpegs`` (cycling) at ``fps``.

    ``frames_per_connection`` ends each connection after that many frames (a flaky camera);
    ``stall_after`` keeps the connection open but sends nothing after that many frames;
    ``stop()`` closes the socket and every open stream (unplugged), ``start()`` brings it back on
    the same port. ``auth=(user, password)`` demands HTTP Basic authentication (401 otherwise);
    ``authorized`` counts the connections that passed it.
    """

    def __init__(self, jpegs: List[bytes], fps: float = 10.0,
                 frames_per_connection: int = 0, stall_after: int = 0,
                 auth: Optional[Tuple[str, str]] = None) -> None:
        self.jpegs, self.fps, self.per_conn = jpegs, fps, frames_per_connection
        self.stall_after = stall_after
        self.expected = None if auth is None else "Basic " + base64.b64encode(
            f"{auth[0]}:{auth[1]}".encode()).decode()
        self.authorized = 0
        self.port = free_port()
        self.connections = 0
        self.server: Optional[http.server.ThreadingHTTPServer] = None
        self._alive = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cam.mjpg"

    def start(self) -> MjpegCamera:
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                camera.connections += 1
                if camera.expected is not None:
                    if self.headers.get("Authorization") != camera.expected:
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    camera.authorized += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while camera._alive.is_set():
                        jpeg = camera.jpegs[i % len(camera.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         b"Content-Length: %d\r\n\r\n" % len(jpeg) + jpeg
                                         + b"\r\n")
                        i += 1
                        if camera.per_conn and i >= camera.per_conn:
                            return
                        while camera.stall_after and i >= camera.stall_after \
                                and camera._alive.is_set():
                            time.sleep(0.05)
                        time.sleep(1.0 / camera.fps)
                except OSError:
                    pass

        self._alive.set()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._alive.clear()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class NotifySocket:
    """A bound AF_UNIX datagram socket collecting sd_notify messages (what systemd listens on)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + path[1:] if path.startswith("@") else path)
        self.sock.settimeout(0.2)
        self.messages: List[str] = []

    def collect(self) -> List[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (socket.timeout, BlockingIOError):
                return self.messages

    def has(self, line: str) -> bool:
        return any(line in m.splitlines() for m in self.collect())

    def close(self) -> None:
        self.sock.close()


def http_get(url: str, timeout: float = 10.0, token: Optional[str] = None
             ) -> Tuple[int, Dict[str, str], bytes]:
    """(status, headers, body) with the stdlib client; 4xx/5xx are returned, not raised.
    ``token``: sent as ``Authorization: Bearer``."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def http_json(url: str) -> Tuple[int, Dict[str, Any]]:
    status, _, body = http_get(url)
    return status, json.loads(body)


def read_mjpeg_part(url: str, timeout: float = 20.0) -> Tuple[str, bytes]:
    """(content type of the response, first JPEG part) of a multipart MJPEG stream."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        ctype = r.headers["Content-Type"]
        boundary = ctype.split("boundary=", 1)[1].encode()
        line = r.readline()
        while line.strip() != b"--" + boundary:
            line = r.readline()
        headers = {}
        while True:
            line = r.readline().strip()
            if not line:
                break
            key, _, value = line.decode().partition(":")
            headers[key.lower()] = value.strip()
        if headers.get("content-type") != "image/jpeg":
            pytest.fail(f"MJPEG part is {headers.get('content-type')}, not image/jpeg")
        return ctype, r.read(int(headers["content-length"]))


def metric_values(text: str) -> Dict[str, float]:
    """Prometheus text parsed by prometheus_client's parser: {name{labels}: value}; the parser
    raises on anything malformed, so this also validates the format."""
    import pytest

    parser = pytest.importorskip("prometheus_client.parser")
    text_string_to_metric_families = parser.text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())
                              if k != "camera")
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


class Serve:
    """One `trt-pose-td serve` process; JSONL on stdout is collected line by line."""

    def __init__(self, tmp_path: Path, *args: str, env: Optional[dict] = None) -> None:
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.stderr_path = tmp_path / "serve.log"
        # the packaged default models (no mirror needed) on the small service clip
        cmd = [sys.executable, "-m", "trt_pose_td", "serve", *args, "--threads", "1",
               "--http", f"127.0.0.1:{self.http_port}",
               "--set", "service.status_interval_s=1"]
        full_env = dict(os.environ, PYTHONPATH=str(REPO),  # the MQTT spool: in tmp_path
                        XDG_STATE_HOME=str(tmp_path / "state"), **(env or {}))
        full_env.pop("STATE_DIRECTORY", None)
        self.proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE,
                                     stderr=open(self.stderr_path, "w"), text=True)
        self.lines: List[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return self.stderr_path.read_text()

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.log[-3000:]}")
        return True

    def metrics(self) -> dict:
        self.alive()
        return metric_values(http_get(self.url + "/metrics")[2].decode())

    def serving(self) -> bool:
        self.alive()
        try:
            http_get(self.url + "/healthz", timeout=2)
            return True
        except OSError:
            return False

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"serve ignored SIGTERM for {timeout} s:\n{self.log[-3000:]}")
