"""The service's outputs: one JSONL sink every camera shares, one MQTT client per camera (with
its on-disk spool), each behind a :class:`GuardedSink` so a failing sink never stops inference.

The JSONL file rotates, is gzipped and pruned, and pauses below its free-space floor
(:mod:`..io.rotate`); stdout ("-") is written as is. Each camera's MQTT client spools what the
broker cannot take to ``<spool_dir>/<camera>.sqlite`` (:mod:`..io.forward`). Their state goes
to the stats objects (``sinks`` in ``/healthz`` and ``/stats.json``, ``/metrics``).
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import asdict
from typing import Any, Dict, List, Optional, Union

from ..io.sinks import JsonlSink, Sink
from ..types import FrameResult
from .config import ServiceConfig, mqtt_password
from .sdnotify import stdout_is_journal
from .stats import ServiceStats, SinkCounters, StatsGroup

log = logging.getLogger(__name__)


def mqtt_stats_dict(mqtt: Any) -> Dict[str, Any]:
    s = mqtt.stats()
    return dict(asdict(s), reconnects=s.reconnects)


class GuardedSink:
    """A sink whose failures are logged and retried with backoff instead of raised.

    While failing, frames are skipped (counted) until the next retry; the first failure and the
    recovery are logged at WARNING, repeats at most once a minute.
    """

    def __init__(self, name: str, sink: Sink, counters: SinkCounters,
                 backoff_min_s: float = 1.0, backoff_max_s: float = 30.0) -> None:
        self.name, self.sink, self.counters = name, sink, counters
        self.backoff_min_s, self.backoff_max_s = backoff_min_s, backoff_max_s
        self._delay = backoff_min_s
        self._retry_at = 0.0
        self._logged_at = 0.0

    def write(self, result: FrameResult) -> None:
        now = time.monotonic()
        c = self.counters
        if c.failing and now < self._retry_at:
            c.skipped += 1
            return
        try:
            self.sink.write(result)
        except Exception as exc:
            c.errors += 1
            if not c.failing or now - self._logged_at > 60:
                log.warning("sink %s failed (%s: %s); retrying in %.0f s, inference goes on",
                            self.name, type(exc).__name__, exc, self._delay)
                self._logged_at = now
            c.failing = True
            self._retry_at = now + self._delay
            self._delay = min(self._delay * 2, self.backoff_max_s)
            return
        if c.failing:
            log.warning("sink %s recovered after %d error(s)", self.name, c.errors)
            c.failing, self._delay = False, self.backoff_min_s

    def close(self, timeout: float) -> None:
        try:
            if self.name == "mqtt":
                self.sink.close(timeout)  # type: ignore[call-arg]
            else:
                self.sink.close()
        except Exception as exc:
            log.warning("sink %s: close failed: %s", self.name, exc)


class Outputs:
    """Every sink of a service: ``open()``, ``write(camera, result)``, ``close(timeout)``.

    ``stats``: the service's counters (a :class:`StatsGroup` with several cameras);
    ``camera_stats``: each camera's own.
    """

    def __init__(self, cfg: ServiceConfig, stats: Union[ServiceStats, StatsGroup],
                 camera_stats: Dict[str, ServiceStats]) -> None:
        self.cfg, self.stats, self.camera_stats = cfg, stats, camera_stats
        self.shared: List[GuardedSink] = []  # the JSONL sink every camera shares
        self.per_camera: Dict[str, List[GuardedSink]] = {n: [] for n in camera_stats}
        self.jsonl: Optional[Sink] = None

    def open(self) -> None:
        """Open the sinks (:class:`~..errors.ConfigError` on a folder that cannot be used);
        call :meth:`close` even when this raises, it closes whatever was opened."""
        path = self.cfg.jsonl.path
        if path == "auto":
            path = "" if stdout_is_journal() else "-"
            if not path:
                log.info("jsonl: off, stdout is the journal (set [jsonl] path to a file, or "
                         "\"-\" to log every frame's poses anyway)")
        if path:
            self.jsonl = self._open_jsonl(path)
            self.shared.append(GuardedSink("jsonl", self.jsonl, self.stats.sink("jsonl")))
        if self.cfg.mqtt.host:
            password = mqtt_password(self.cfg.mqtt)
            for camera, stats in self.camera_stats.items():
                self._open_mqtt(camera, stats, password)

    def _open_jsonl(self, path: str) -> Sink:
        if path == "-":
            return JsonlSink(path, append=True)
        from ..io.rotate import RotatingJsonlSink

        j = self.cfg.jsonl
        sink = RotatingJsonlSink(path, j.rotate_mb, j.rotate_s, j.keep, j.gzip, j.min_free_mb)
        if not (j.rotate_mb or j.rotate_s):
            log.warning("jsonl: %s is never rotated ([jsonl] rotate_mb = rotate_s = 0): it "
                        "grows until the %.0f MB free-space floor", path, j.min_free_mb)
        shared = {"jsonl": lambda: asdict(sink.stats())}
        if isinstance(self.stats, StatsGroup):
            self.stats.shared_sink_stats = lambda: {k: f() for k, f in shared.items()}
        else:
            self._extra_stats(self.stats, shared)
        log.info("jsonl: %s (rotate at %s, keep %s closed file(s)%s, stop below %.0f MB free)",
                 path, " or ".join(filter(None, [f"{j.rotate_mb:g} MB" if j.rotate_mb else "",
                                                 f"{j.rotate_s:g} s" if j.rotate_s else ""]))
                 or "never", j.keep or "every", ", gzipped" if j.gzip else "", j.min_free_mb)
        return sink

    def _open_mqtt(self, camera: str, stats: ServiceStats, password: Optional[str]) -> None:
        """One MQTT client per camera: its topics, client id, status, last will and spool."""
        from ..io.mqtt import MqttSink
        from ..io.spool import Spool

        m = self.cfg.mqtt
        folder = m.spool_folder()
        spool = None if folder is None else Spool(
            folder / f"{camera}.sqlite", m.spool_max_mb / len(self.camera_stats),
            m.spool_max_age_s, m.spool_sync, m.spool_min_free_mb)
        try:
            mqtt = MqttSink(
                m.host, m.port, camera=camera, topic=m.topic, status_topic=m.status_topic,
                qos=m.qos, retain=m.retain,
                client_id=m.client_id.format(host=socket.gethostname(), camera=camera),
                username=m.username or None, password=password, tls=m.tls,
                ca_file=m.ca_file, cert_file=m.cert_file, key_file=m.key_file,
                keepalive=m.keepalive, queue_size=m.queue_size,
                reconnect_min_s=m.reconnect_min_s, reconnect_max_s=m.reconnect_max_s,
                spool=spool, protocol=m.protocol, message_expiry_s=m.message_expiry_s)
        except BaseException:
            if spool is not None:
                spool.close()
            raise
        self.per_camera[camera].append(GuardedSink("mqtt", mqtt, stats.sink("mqtt")))
        self._extra_stats(stats, {"mqtt": lambda: mqtt_stats_dict(mqtt)})

    @staticmethod
    def _extra_stats(stats: ServiceStats, more: Dict[str, Any]) -> None:
        """Add sinks to what ``stats.sink_stats()`` reports."""
        before = stats.sink_stats
        stats.sink_stats = lambda: dict(before(), **{k: f() for k, f in more.items()})

    def write(self, camera: str, result: FrameResult) -> None:
        for sink in self.shared + self.per_camera[camera]:
            sink.write(result)

    def close(self, timeout_s: float) -> None:
        """Drain and close every sink within ``timeout_s`` in all."""
        deadline = time.monotonic() + timeout_s
        for sink in self.shared + [s for sinks in self.per_camera.values() for s in sinks]:
            sink.close(max(0.5, deadline - time.monotonic()))
