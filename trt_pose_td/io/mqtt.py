"""MQTT sink (paho-mqtt): one message per frame on a per-camera topic; never stalls inference.

``write()`` serialises the frame (the ``run`` JSONL object plus ``"camera"``) and puts it on a
bounded queue, dropping the oldest message when the queue is full; a publisher thread sends it
while the broker is connected. A network thread of ours drives paho (``loop()``): it connects
in the background and reconnects with exponential backoff, logging one line per attempt that
fails with the reason (unreachable, TLS, refused credentials) and the next delay; the state and
last error show in :meth:`MqttSink.stats`. TLS takes a CA file and an optional client
certificate and key; the password comes from the caller (the service reads it from a file). A
retained status topic reads ``online`` while connected and ``offline`` (the broker's last will)
after the service dies or stops.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import require
from ..types import FrameResult
from .sinks import Sink
from .uri import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MqttStats:
    """state: connecting | connected | unreachable | refused | closed; connect_failures:
    attempts that did not end connected; last_error: why the last one failed."""

    connected: bool
    published: int
    dropped: int
    queued: int
    connects: int
    disconnects: int
    errors: int
    state: str = "connecting"
    connect_failures: int = 0
    last_error: str = ""

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)


def _reason_ok(rc: Any) -> bool:
    """paho 1.x passes an int, 2.x a ReasonCode; both compare as 0 on success."""
    value = getattr(rc, "value", rc)
    return bool(value == 0)


class MqttSink(Sink):
    """Publishes every frame to ``topic`` (``{camera}`` expanded) on ``host:port``.

    qos 0/1/2 and retain as configured; ``queue_size`` messages wait while the broker is away.
    ``close(timeout)`` sends what is queued (while connected, up to ``timeout`` s), marks the
    status topic ``offline`` and disconnects.
    """

    def __init__(self, host: str, port: int = 1883, camera: str = "camera0",
                 topic: str = "trt-pose-td/{camera}/poses",
                 status_topic: str = "trt-pose-td/{camera}/status", qos: int = 0,
                 retain: bool = False, client_id: str = "", username: Optional[str] = None,
                 password: Optional[str] = None, tls: bool = False, ca_file: str = "",
                 keepalive: int = 30, queue_size: int = 100, reconnect_min_s: float = 1.0,
                 reconnect_max_s: float = 30.0, cert_file: str = "",
                 key_file: str = "") -> None:
        mqtt = require("paho.mqtt.client", "service", "paho-mqtt")
        self.host, self.port, self.camera = host, port, camera
        self.topic = topic.format(camera=camera)
        self.status_topic = status_topic.format(camera=camera)
        self.qos, self.retain = qos, retain
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._published = self._dropped = self._connects = self._disconnects = 0
        self._errors = self._failures = self._streak = 0
        self._state, self._last_error = "connecting", ""
        self._backoff = (reconnect_min_s, reconnect_max_s)
        self._net_stop = threading.Event()
        self._closing = self._stopping = False
        self._last_info: Any = None
        self._deadline = float("inf")
        client_id = client_id or f"trt-pose-td-{camera}"
        if hasattr(mqtt, "CallbackAPIVersion"):  # paho >= 2.0
            self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        else:  # pragma: no cover - paho 1.6
            self._client = mqtt.Client(client_id=client_id)
        self._ok = mqtt.MQTT_ERR_SUCCESS
        c = self._client
        if username:
            c.username_pw_set(username, password)
        if tls or ca_file or cert_file:
            c.tls_set(ca_certs=ca_file or None, certfile=cert_file or None,
                      keyfile=key_file or None)
        c.will_set(self.status_topic, "offline", qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.connect_async(host, port, keepalive)
        self._net = threading.Thread(target=self._network_loop, name="mqtt network",
                                     daemon=True)
        self._net.start()
        self._thread = threading.Thread(target=self._publish_loop, name="mqtt publisher",
                                        daemon=True)
        self._thread.start()
        log.info("mqtt: publishing to %s on %s:%d (qos %d%s%s%s, client id %s)", self.topic,
                 host, port, qos, ", retained" if retain else "",
                 ", TLS" if (tls or ca_file or cert_file) else "",
                 f", user {username}" if username else "", client_id)

    # -- network thread ---------------------------------------------------------------------------
    def _network_loop(self) -> None:
        """Connect, run paho's loop while connected, back off after every failed attempt."""
        while not self._net_stop.is_set():
            connects = self._connects
            try:
                self._client.reconnect()
                self._run_connection()
            except Exception as exc:  # unreachable, DNS, TLS (OSError, ssl errors), paho bugs
                self._attempt_failed("unreachable", redact(f"{type(exc).__name__}: {exc}"))
                continue
            if self._net_stop.is_set():
                return
            if self._connects == connects:  # no CONNACK: refused (credentials, ACL) or dropped
                refused = self._state == "refused"
                self._attempt_failed("refused" if refused else "unreachable",
                                     self._last_error if refused else "closed before CONNACK")
            else:  # was connected; _on_disconnect logged the loss
                self._net_stop.wait(self._backoff[0])

    def _run_connection(self) -> None:
        """paho's loop until the connection ends or close() asks; then lets DISCONNECT out."""
        c = self._client
        while not self._net_stop.is_set() and c.loop(timeout=0.5) == self._ok:
            pass
        if self._net_stop.is_set():
            for _ in range(20):
                if c.loop(timeout=0.1) != self._ok:
                    break

    def _attempt_failed(self, state: str, error: str) -> None:
        with self._lock:
            self._failures += 1
            n, self._state, self._last_error = self._failures, state, error
        self._streak += 1
        streak = self._streak
        lo, hi = self._backoff
        delay = min(hi, lo * 2.0 ** min(streak - 1, 30))
        log.warning("mqtt: cannot connect to %s:%d: %s; retrying in %.1f s (attempt %d)",
                    self.host, self.port, error, delay, n)
        self._net_stop.wait(delay)

    def _set_state(self, state: str, error: str) -> None:
        with self._lock:
            self._state, self._last_error = state, error

    # -- paho callbacks (its network thread) ----------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, *rest: Any) -> None:
        if not _reason_ok(rc):
            self._set_state("refused", f"broker refused the connection: {rc}")
            return
        self._streak = 0
        with self._lock:
            self._connects += 1
            again = self._connects > 1
            self._state, self._last_error = "connected", ""
        client.publish(self.status_topic, "online", qos=1, retain=True)
        self._connected.set()
        log.info("mqtt: %sconnected to %s:%d", "re" if again else "", self.host, self.port)

    def _on_disconnect(self, client: Any, userdata: Any, *args: Any) -> None:
        rc = args[1] if len(args) >= 2 else (args[0] if args else 0)  # 2.x: flags, rc, props
        self._connected.clear()
        with self._lock:
            self._disconnects += 1
        if not self._closing and self._state == "connected":
            self._set_state("connecting", f"connection lost ({rc})")
            log.warning("mqtt: lost the connection to %s:%d (%s); reconnecting",
                        self.host, self.port, rc)

    # -- inference thread -----------------------------------------------------------------------
    def write(self, result: FrameResult) -> None:
        """Queue the frame's message; O(1), never blocks (drops the oldest when full)."""
        doc = result.to_dict()
        doc["camera"] = self.camera  # "source" is redacted by to_dict()
        payload = json.dumps(doc, separators=(",", ":"))
        while True:
            try:
                self._queue.put_nowait(payload)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    with self._lock:
                        self._dropped += 1
                except queue.Empty:
                    pass

    # -- publisher thread -----------------------------------------------------------------------
    def _publish_loop(self) -> None:
        """Takes a message only while connected, so the queue alone holds what waits."""
        while True:
            if not self._connected.wait(0.2):
                if self._stopping and (time.monotonic() > self._deadline or
                                       self._queue.empty()):
                    return
                continue
            try:
                payload = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stopping:
                    return
                continue
            info = self._client.publish(self.topic, payload, qos=self.qos, retain=self.retain)
            with self._lock:
                if info.rc == self._ok:
                    self._published += 1
                    self._last_info = info
                else:
                    self._errors += 1

    def _wait(self, info: Any) -> None:
        try:
            info.wait_for_publish(timeout=max(0.5, self._deadline - time.monotonic()))
        except (RuntimeError, ValueError):  # not connected / queue refused it
            pass

    def stats(self) -> MqttStats:
        with self._lock:
            return MqttStats(self._connected.is_set(), self._published, self._dropped,
                             self._queue.qsize(), self._connects, self._disconnects,
                             self._errors, self._state, self._failures, self._last_error)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to ``timeout`` s while the broker is away), then disconnect."""
        if self._closing:
            return
        self._deadline = time.monotonic() + timeout
        self._stopping = True
        self._thread.join(timeout=timeout + 1.0)
        self._closing = True
        unsent = self._queue.qsize()
        if unsent:
            with self._lock:
                self._dropped += unsent
            log.warning("mqtt: %d message(s) not sent at shutdown (broker away)", unsent)
        if self._connected.is_set():
            offline = self._client.publish(self.status_topic, "offline", qos=1, retain=True)
            for info in (self._last_info, offline):  # in order: poses (qos > 0), then status
                if info is not None:
                    self._wait(info)
        self._net_stop.set()
        self._client.disconnect()
        self._net.join(timeout=5.0)
        self._set_state("closed", "")
        s = self.stats()
        log.info("mqtt: closed (%d published, %d dropped)", s.published, s.dropped)
