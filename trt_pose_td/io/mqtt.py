"""MQTT sink (paho-mqtt): one message per frame on a per-camera topic; never stalls inference.

``write()`` serialises the frame (the ``run`` JSONL object plus ``"camera"``, and the service's
``run_id`` / ``seq``) and hands it to a :class:`~.forward.Forwarder`, whose publisher thread sends
it while the broker is connected. With a :class:`~.spool.Spool` (the service's default), what
cannot be sent now goes to disk and is replayed, oldest first, once the broker is back (see
:mod:`.forward`); without one, a bounded memory queue drops its oldest message when full. A
network thread of ours drives paho: it connects in the background (a fresh client for every
attempt, so nothing of a dead connection lingers) and reconnects with exponential backoff,
logging one line per attempt that fails with the reason (unreachable, TLS, refused credentials)
and the next delay; the state and last error show in :meth:`MqttSink.stats`. TLS takes a CA
file and an optional client certificate and key; the password comes from the caller (the
service reads it from a file). A retained status topic reads ``online`` while connected and
``offline`` (the broker's last will) after the service dies or stops. ``protocol="5"`` speaks
MQTT 5, where ``message_expiry_s`` sets each pose message's expiry (a broker then drops what a
persistent subscriber did not collect in time; a replayed message gets what is left of it).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Dict, Optional

from ..errors import ConfigError, require
from ..types import FrameResult
from .forward import Forwarder, Link
from .sinks import Sink
from .spool import Spool
from .uri import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MqttStats:
    """state: connecting | connected | unreachable | refused | closed; connect_failures:
    attempts that did not end connected; last_error: why the last one failed. published:
    messages the broker acknowledged (QoS 0: sent); dropped: messages that will never be sent
    (memory queue full without a spool, the spool's cap / age / free-space floor, MQTT 5 expiry);
    queued: waiting in memory; in_flight: sent, not yet acknowledged; resent: in flight when a
    connection dropped, sent again. spool_*: see :class:`~.spool.SpoolStats` (zeros without a
    spool); replayed: spooled messages the broker acknowledged."""

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
    in_flight: int = 0
    resent: int = 0
    replayed: int = 0
    expired: int = 0
    spooled: int = 0
    spool_bytes: int = 0
    spool_disk_bytes: int = 0
    spool_written: int = 0
    spool_dropped_cap: int = 0
    spool_dropped_age: int = 0
    spool_dropped_floor: int = 0
    spool_paused: bool = False

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)


def _reason_ok(rc: Any) -> bool:
    """paho 1.x passes an int, 2.x a ReasonCode: success is below 0x80 (a PUBACK's "no matching
    subscribers", 0x10, included; a CONNACK succeeds only with 0)."""
    value = getattr(rc, "value", rc)
    return bool(value < 0x80) if getattr(rc, "packetType", None) == 4 else bool(value == 0)


class MqttSink(Sink):
    """Publishes every frame to ``topic`` (``{camera}`` expanded) on ``host:port``.

    qos 0/1/2 and retain as configured (a replayed message: QoS >= 1, never retained);
    ``queue_size`` messages wait in memory; ``spool`` holds the rest on disk (None: the oldest
    are dropped). ``window``: messages sent but not yet acknowledged at most. ``close(timeout)``
    sends what waits in memory (while connected, up to ``timeout`` s), spools what is left,
    marks the status topic ``offline`` and disconnects.
    """

    def __init__(self, host: str, port: int = 1883, camera: str = "camera0",
                 topic: str = "trt-pose-td/{camera}/poses",
                 status_topic: str = "trt-pose-td/{camera}/status", qos: int = 0,
                 retain: bool = False, client_id: str = "", username: Optional[str] = None,
                 password: Optional[str] = None, tls: bool = False, ca_file: str = "",
                 keepalive: int = 30, queue_size: int = 100, reconnect_min_s: float = 1.0,
                 reconnect_max_s: float = 30.0, cert_file: str = "",
                 key_file: str = "", spool: Optional[Spool] = None, protocol: str = "3.1.1",
                 message_expiry_s: int = 0, window: int = 32) -> None:
        mqtt = require("paho.mqtt.client", "service", "paho-mqtt")
        if protocol not in ("3.1.1", "5"):
            raise ConfigError(f"mqtt protocol must be \"3.1.1\" or \"5\", not {protocol!r}")
        self._mqtt, self._v5 = mqtt, protocol == "5"
        self.host, self.port, self.camera = host, port, camera
        self.topic = topic.format(camera=camera)
        self.status_topic = status_topic.format(camera=camera)
        self.qos, self.retain, self.keepalive = qos, retain, keepalive
        self.spool, self.message_expiry_s = spool, message_expiry_s
        self._client_id = client_id or f"trt-pose-td-{camera}"
        self._auth = (username, password)
        self._tls = (ca_file, cert_file, key_file) if (tls or ca_file or cert_file) else None
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._connects = self._disconnects = self._failures = self._streak = 0
        self._state, self._last_error = "connecting", ""
        self._backoff = (reconnect_min_s, reconnect_max_s)
        self._net_stop = threading.Event()
        self._closing = False
        self._client: Any = None
        self._gen = 0
        ok = mqtt.MQTT_ERR_SUCCESS
        self._ok = ok
        self._fwd = Forwarder(self.topic, qos, retain, queue_size, spool, ok,
                              mqtt.MQTT_ERR_NO_CONN, window, self._publish_properties)
        self._net = threading.Thread(target=self._network_loop, name="mqtt network",
                                     daemon=True)
        self._net.start()
        self._thread = threading.Thread(target=self._fwd.run, args=(self._link,),
                                        name="mqtt publisher", daemon=True)
        self._thread.start()
        log.info("mqtt: publishing to %s on %s:%d (MQTT %s, qos %d%s%s%s, client id %s, %s)",
                 self.topic, host, port, protocol, qos, ", retained" if retain else "",
                 ", TLS" if self._tls else "", f", user {username}" if username else "",
                 self._client_id, f"spool {spool.path}" if spool is not None else
                 f"no spool: {queue_size} messages kept in memory")

    # -- the client of one connection attempt -----------------------------------------------------
    def _new_client(self, gen: int) -> Any:
        mqtt = self._mqtt
        proto = mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311
        if hasattr(mqtt, "CallbackAPIVersion"):  # paho >= 2.0
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self._client_id,
                            protocol=proto)
        else:  # pragma: no cover - paho 1.6
            c = mqtt.Client(client_id=self._client_id, protocol=proto)
        if self._auth[0]:
            c.username_pw_set(*self._auth)
        if self._tls is not None:
            ca, cert, key = self._tls
            c.tls_set(ca_certs=ca or None, certfile=cert or None, keyfile=key or None)
        c.will_set(self.status_topic, "offline", qos=1, retain=True)
        c.max_inflight_messages_set(0)  # the forwarder's window bounds it: paho never queues
        # only our network thread writes to the socket: without this, paho's publish() writes
        # from the caller's thread too (it does so when loop_start() is not used), and two
        # threads popping its packet queue can put messages on the wire out of order
        c.on_socket_register_write = lambda client, userdata, sock: None
        c.on_connect = lambda *a: self._on_connect(gen, *a)
        c.on_disconnect = self._on_disconnect
        c.on_publish = lambda client, userdata, mid, *rest: self._fwd.acked(
            gen, mid, _reason_ok(rest[0]) if rest else True)
        return c

    def _publish_properties(self, age_s: float) -> Any:
        """MQTT 5 message expiry: what is left of ``message_expiry_s`` (False: none left)."""
        if not (self._v5 and self.message_expiry_s):
            return None
        left = int(self.message_expiry_s - age_s)
        if left <= 0:
            return False
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = left
        return props

    def _link(self) -> Link:
        with self._lock:
            return (self._client, self._gen) if self._connected.is_set() else None

    # -- network thread ---------------------------------------------------------------------------
    def _network_loop(self) -> None:
        """Connect, run paho's loop while connected, back off after every failed attempt."""
        while not self._net_stop.is_set():
            connects = self._connects
            with self._lock:
                self._gen += 1
                self._client = client = self._new_client(self._gen)
            try:
                client.connect(self.host, self.port, self.keepalive)
                self._run_connection(client)
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

    def _run_connection(self, c: Any) -> None:
        """paho's loop until the connection ends or close() asks; then lets DISCONNECT out."""
        while not self._net_stop.is_set() and c.loop(timeout=0.5) == self._ok:
            pass
        self._connected.clear()
        if self._net_stop.is_set():
            for _ in range(20):
                if c.loop(timeout=0.1) != self._ok:
                    break

    def _attempt_failed(self, state: str, error: str) -> None:
        with self._lock:
            self._failures += 1
            n, self._state, self._last_error = self._failures, state, error
        self._streak += 1
        lo, hi = self._backoff
        delay = min(hi, lo * 2.0 ** min(self._streak - 1, 30))
        log.warning("mqtt: cannot connect to %s:%d: %s; retrying in %.1f s (attempt %d)",
                    self.host, self.port, error, delay, n)
        self._net_stop.wait(delay)

    def _set_state(self, state: str, error: str) -> None:
        with self._lock:
            self._state, self._last_error = state, error

    # -- paho callbacks (its network thread) ----------------------------------------------------
    def _on_connect(self, gen: int, client: Any, userdata: Any, flags: Any, rc: Any,
                    *rest: Any) -> None:
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
        self._fwd.wake()
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
        """Queue the frame's message; O(1), never blocks (see :mod:`.forward`)."""
        doc = result.to_dict()
        doc["camera"] = self.camera  # "source" is redacted by to_dict()
        self._fwd.put(json.dumps(doc, separators=(",", ":")).encode())

    def stats(self) -> MqttStats:
        f = self._fwd
        sp = self.spool.stats() if self.spool is not None else None
        c = f.counters()
        spool: Dict[str, Any] = {} if sp is None else dict(
            spooled=sp.messages, spool_bytes=sp.bytes, spool_disk_bytes=sp.disk_bytes,
            spool_written=sp.spooled, spool_dropped_cap=sp.dropped_cap,
            spool_dropped_age=sp.dropped_age, spool_dropped_floor=sp.dropped_floor,
            spool_paused=sp.paused)
        lost = c["dropped"] + c["expired"] + (0 if sp is None else sp.dropped)
        with self._lock:
            return MqttStats(self._connected.is_set(), c["published"], lost, f.queued,
                             self._connects, self._disconnects, c["errors"], self._state,
                             self._failures, self._last_error, in_flight=f.in_flight,
                             resent=c["resent"], replayed=c["replayed"], expired=c["expired"],
                             **spool)

    def close(self, timeout: float = 5.0) -> None:
        """Send what waits in memory (up to ``timeout`` s; without a spool also waiting that
        long for a connection), keep the rest in the spool (without one it is lost, counted),
        then say ``offline`` and disconnect."""
        if self._closing:
            return
        self._fwd.stop(timeout)
        self._thread.join(timeout=timeout + 1.0)
        self._closing = True
        lost = self._fwd.settle()
        if lost:
            log.warning("mqtt: %d message(s) not sent at shutdown (broker away)", lost)
        link = self._link()
        if link is not None:
            offline = link[0].publish(self.status_topic, "offline", qos=1, retain=True)
            try:
                offline.wait_for_publish(timeout=max(0.5, min(timeout, 2.0)))
            except (RuntimeError, ValueError):  # not connected any more
                pass
        self._net_stop.set()
        client = self._client
        if client is not None:
            client.disconnect()
        self._net.join(timeout=5.0)
        self._set_state("closed", "")
        if self.spool is not None:
            self.spool.close()
        s = self.stats()
        log.info("mqtt: closed (%d published, %d dropped%s)", s.published, s.dropped,
                 f", {s.spooled} kept in the spool" if self.spool is not None else "")
