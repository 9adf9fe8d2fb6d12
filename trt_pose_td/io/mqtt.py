"""MQTT sink (paho-mqtt): one message per frame on a per-camera topic; never stalls inference.

``write()`` serialises the frame (the ``run`` JSONL object plus ``"camera"``) and puts it on a
bounded queue, dropping the oldest message when the queue is full; a publisher thread sends it
while the broker is connected. paho's network thread connects in the background and reconnects
with exponential backoff. A retained status topic reads ``online`` while connected and
``offline`` (the broker's last will) after the service dies or stops.
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

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class MqttStats:
    connected: bool
    published: int
    dropped: int
    queued: int
    connects: int
    disconnects: int
    errors: int

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
                 reconnect_max_s: float = 30.0) -> None:
        mqtt = require("paho.mqtt.client", "service", "paho-mqtt")
        self.host, self.port, self.camera = host, port, camera
        self.topic = topic.format(camera=camera)
        self.status_topic = status_topic.format(camera=camera)
        self.qos, self.retain = qos, retain
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._published = self._dropped = self._connects = self._disconnects = 0
        self._errors = 0
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
        if tls:
            c.tls_set(ca_certs=ca_file or None)
        c.will_set(self.status_topic, "offline", qos=1, retain=True)
        c.reconnect_delay_set(max(1, int(reconnect_min_s)), max(1, int(reconnect_max_s)))
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.connect_async(host, port, keepalive)
        c.loop_start()
        self._thread = threading.Thread(target=self._publish_loop, name="mqtt publisher",
                                        daemon=True)
        self._thread.start()
        log.info("mqtt: publishing to %s on %s:%d (qos %d%s)", self.topic, host, port, qos,
                 ", retained" if retain else "")

    # -- paho callbacks (its network thread) ----------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, *rest: Any) -> None:
        if not _reason_ok(rc):
            log.warning("mqtt: %s:%d refused the connection: %s", self.host, self.port, rc)
            return
        with self._lock:
            self._connects += 1
            again = self._connects > 1
        client.publish(self.status_topic, "online", qos=1, retain=True)
        self._connected.set()
        log.info("mqtt: %sconnected to %s:%d", "re" if again else "", self.host, self.port)

    def _on_disconnect(self, client: Any, userdata: Any, *args: Any) -> None:
        rc = args[1] if len(args) >= 2 else (args[0] if args else 0)  # 2.x: flags, rc, props
        self._connected.clear()
        with self._lock:
            self._disconnects += 1
        if not self._closing:
            log.warning("mqtt: lost the connection to %s:%d (%s); reconnecting with backoff",
                        self.host, self.port, rc)

    # -- inference thread -----------------------------------------------------------------------
    def write(self, result: FrameResult) -> None:
        """Queue the frame's message; O(1), never blocks (drops the oldest when full)."""
        doc = result.to_dict()
        doc["camera"] = self.camera
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
                             self._errors)

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
        self._client.disconnect()
        self._client.loop_stop()
        s = self.stats()
        log.info("mqtt: closed (%d published, %d dropped)", s.published, s.dropped)
