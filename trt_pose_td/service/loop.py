"""The camera service: source -> pipeline -> sinks, with health, metrics, preview and systemd.

One main thread runs inference; the capture, MQTT, preview-encoder and HTTP work each have their
own thread, so none of them can stall it. Shutdown (SIGTERM / SIGINT, ``max_frames`` or the end of
a file source): stop the source, drain the sinks, close the engines, exit 0.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict
from typing import Any, Dict, Iterator, List, Optional, Union

from .. import __version__
from ..api import Pipeline, open_pipeline
from ..errors import TrtPoseError
from ..io.capture import CaptureSource, FileFeed, is_live_uri, open_capture
from ..io.sinks import JsonlSink, Sink
from ..io.sources import open_source
from ..types import Frame, FrameResult
from .config import ServiceConfig, mqtt_password, read_secret, source_uri
from .http import HttpServer
from .logs import NativeStderr, RepeatFilter, install_repeat_filter
from .preview import Preview
from .sdnotify import Notifier, stdout_is_journal
from .stats import ServiceStats, SinkCounters

log = logging.getLogger(__name__)

Feed = Union[CaptureSource, FileFeed]


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


class Service:
    """``Service(cfg).run() -> exit status``. ``request_stop()`` ends it from any thread."""

    def __init__(self, cfg: ServiceConfig, notifier: Optional[Notifier] = None) -> None:
        self.cfg = cfg
        self.notifier = notifier or Notifier()
        self._next_status = 0.0
        p = cfg.pipeline
        self.stats = ServiceStats(cfg.service.camera, {
            "version": __version__, "backend": p.backend, "detector": p.detector,
            "pose": p.pose}, cfg.service.stale_after_s)
        self.stop_event = threading.Event()
        self.preview: Optional[Preview] = None
        self.http: Optional[HttpServer] = None
        self.sinks: List[GuardedSink] = []
        self._mqtt: Any = None
        self._repeats: Optional[RepeatFilter] = None

    def request_stop(self, signum: Optional[int] = None, frame: Any = None) -> None:
        if signum is not None:
            log.info("received %s: stopping", signal.Signals(signum).name)
        self.stop_event.set()

    def run(self, install_signals: bool = True, tame_logs: bool = True) -> int:
        """``tame_logs``: rate-limit repeated warnings and route OpenCV / FFmpeg's stderr
        through the log (see :mod:`.logs`); code embedding the service may pass False."""
        log.info("trt-pose-td %s serve, resolved config: %s", __version__,
                 json.dumps(self.cfg.as_dict(), sort_keys=True))
        uri = source_uri(self.cfg.source)  # secrets read before anything slow starts
        if install_signals:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        with ExitStack() as stack:
            if tame_logs:
                self._repeats = install_repeat_filter(self.cfg.service.log_repeat_interval_s)
                stack.callback(NativeStderr().start().close)
            self._start_http(stack)
            self.stats.set_phase("loading")
            self.notifier.status("loading engines")
            pipeline = open_pipeline(self.cfg.pipeline)
            stack.callback(self._close_pipeline, pipeline)
            self._open_sinks(stack)
            feed = self._open_feed(uri)
            stack.callback(feed.close)
            stack.callback(self._begin_stop)  # runs first: tell systemd before draining
            self.stats.source_stats = feed.stats
            self.stats.set_phase("running")
            return self._loop(pipeline, feed)
        return 0  # pragma: no cover - the with block always returns

    # -- setup / teardown ---------------------------------------------------------------------
    def _start_http(self, stack: ExitStack) -> None:
        h = self.cfg.http
        if not h.enabled:
            return
        self.preview = Preview(h.preview_fps, h.preview_width, h.jpeg_quality,
                               h.keypoint_threshold)
        stack.callback(self.preview.close)
        token = read_secret(h.token_file, "[http] token_file") if h.token_file else None
        self.http = HttpServer(h.host, h.port, self.stats, self.preview, token,
                               h.max_connections, h.timeout_s).start()
        stack.callback(self.http.close)

    def _open_sinks(self, stack: ExitStack) -> None:
        cfg = self.cfg
        stack.callback(self._drain_sinks)  # closes whichever sinks were opened
        path = cfg.jsonl.path
        if path == "auto":
            path = "" if stdout_is_journal() else "-"
            if not path:
                log.info("jsonl: off, stdout is the journal (set [jsonl] path to a file, or "
                         "\"-\" to log every frame's poses anyway)")
        if path:
            self._add_sink("jsonl", JsonlSink(path, append=True))
        m = cfg.mqtt
        if m.host:
            from ..io.mqtt import MqttSink

            camera = cfg.service.camera
            self._mqtt = MqttSink(
                m.host, m.port, camera=camera, topic=m.topic, status_topic=m.status_topic,
                qos=m.qos, retain=m.retain,
                client_id=m.client_id.format(host=socket.gethostname(), camera=camera),
                username=m.username or None, password=mqtt_password(m), tls=m.tls,
                ca_file=m.ca_file, cert_file=m.cert_file, key_file=m.key_file,
                keepalive=m.keepalive, queue_size=m.queue_size,
                reconnect_min_s=m.reconnect_min_s, reconnect_max_s=m.reconnect_max_s)
            self._add_sink("mqtt", self._mqtt)
        if self._mqtt is not None:
            mqtt = self._mqtt
            self.stats.sink_stats = lambda: {"mqtt": mqtt_stats_dict(mqtt)}

    def _add_sink(self, name: str, sink: Sink) -> None:
        self.sinks.append(GuardedSink(name, sink, self.stats.sink(name)))

    def _open_feed(self, uri: str) -> Feed:
        """``uri``: the source URI with its credentials (only the capture keeps it)."""
        s = self.cfg.source
        if is_live_uri(s.uri):
            return open_capture(uri, s.capture_options())
        return FileFeed(open_source(s.uri, loop=s.loop), s.capture_options())

    def _drain_sinks(self) -> None:
        deadline = time.monotonic() + self.cfg.service.drain_timeout_s
        for sink in self.sinks:
            sink.close(max(0.5, deadline - time.monotonic()))

    @staticmethod
    def _close_pipeline(pipeline: Pipeline) -> None:
        pipeline.close()
        log.info("engines closed")

    def _begin_stop(self) -> None:
        self.stats.set_phase("stopping")
        self.notifier.stopping()

    # -- the loop -----------------------------------------------------------------------------
    def _loop(self, pipeline: Pipeline, feed: Feed) -> int:
        """Results of ``pipeline.stream`` over the feed go to the sinks. A frame that fails
        is counted and the stream restarts on the next frame; ``max_consecutive_errors`` in a
        row exit 1 so systemd restarts the service."""
        svc = self.cfg.service
        failed_in_row = processed = 0
        self._next_status = time.monotonic() + svc.status_interval_s
        while not self.stop_event.is_set():
            try:
                for result in pipeline.stream(self._frames(feed)):
                    failed_in_row = 0
                    processed += 1
                    self._deliver(result)
                    if svc.max_frames and processed >= svc.max_frames:
                        log.info("processed %d frame(s) (max_frames): stopping", svc.max_frames)
                        return 0
                return 0  # the source ended or a stop was requested: frames in flight drained
            except Exception as exc:  # one bad frame must not end a camera service
                failed_in_row += 1
                self.stats.error()
                self._log_failure(exc, failed_in_row)
                if failed_in_row >= svc.max_consecutive_errors:
                    log.error("%d frames failed in a row: exiting so the service restarts",
                              failed_in_row)
                    return 1
        return 0

    def _frames(self, feed: Feed) -> Iterator[Frame]:
        """The feed's frames until it ends or a stop is requested. Between frames (and while the
        source is quiet) it pings the watchdog and writes the periodic status line, so health
        stays current however long the pipeline keeps a frame in flight."""
        svc = self.cfg.service
        poll = 0.5 if self.notifier.watchdog_s is None else min(0.5, self.notifier.watchdog_s / 2)
        while not self.stop_event.is_set():
            self.notifier.watchdog()
            if time.monotonic() >= self._next_status:
                self._next_status = time.monotonic() + svc.status_interval_s
                self._report()
            frame = feed.read(timeout=poll)
            if frame is not None:
                yield frame
            elif feed.ended:
                log.info("source ended: stopping")
                return

    def _deliver(self, result: FrameResult) -> None:
        self.stats.record(result)
        for sink in self.sinks:
            sink.write(result)
        if self.preview is not None:
            self.preview.offer(result)
        if not self.notifier.ready_sent:
            log.info("first frame processed (%d person(s)): ready", len(result.poses))
            self.notifier.ready(self._status_line())

    def _log_failure(self, exc: Exception, n: int) -> None:
        if isinstance(exc, TrtPoseError):
            log.error("frame failed: %s", exc)
        elif n == 1:
            log.exception("frame failed")
        else:
            log.error("frame failed again (%d in a row): %s", n, exc)

    def _status_line(self) -> str:
        snap = self.stats.snapshot()
        src = snap["source"] or {}
        mqtt = snap["sinks"].get("mqtt")
        broker = "" if mqtt is None else f", mqtt {mqtt['state']}" + (
            f" ({mqtt['last_error']})" if mqtt["state"] != "connected" and mqtt["last_error"]
            else "")
        return (f"{snap['fps']:.1f} fps, {snap['persons']} person(s), {snap['frames']} frames, "
                f"source {src.get('state', '?')}{broker}, {snap['status']}")

    def _report(self) -> None:
        line = self._status_line()
        self.notifier.status(line)
        healthy, reason = self.stats.health()
        (log.info if healthy else log.warning)("status: %s", line)
        if self._repeats is not None:
            self._repeats.flush()
