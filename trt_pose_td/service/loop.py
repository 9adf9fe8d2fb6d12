"""The camera service: source(s) -> pipeline -> sinks, with health, metrics, preview, systemd.

One main thread runs inference; the capture, MQTT, preview-encoder and HTTP work each have their
own thread, so none of them can stall it. Shutdown (SIGTERM / SIGINT, ``max_frames`` or the end of
a file source): stop the source, drain the sinks, close the engines, exit 0.

One camera: ``pipeline.stream`` over its frames (on the GPU, frame t+1's detection overlaps
frame t's keypoints). Several cameras (:mod:`.cameras`): each tick takes the newest frame of every
camera that has one and runs ``pipeline.batch`` on them (one detector batch, one keypoint batch
across the cameras); each camera has its own stats, MQTT client and topics, preview and health,
and the JSONL lines carry the camera's name.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from contextlib import ExitStack
from typing import Any, Dict, Iterator, List, Optional, Union

from .. import __version__
from ..api import Pipeline, open_pipeline
from ..errors import TrtPoseError
from ..io.capture import CaptureSource, FileFeed, is_live_uri, open_capture
from ..io.sources import open_source
from ..types import Frame, FrameResult
from .cameras import Camera, Cameras, Prefetch
from .config import ServiceConfig, SourceSection, read_secret, source_uri
from .http import HttpServer
from .logs import NativeStderr, RepeatFilter, install_repeat_filter
from .outputs import Outputs
from .preview import Preview
from .sdnotify import Notifier
from .stats import ServiceStats, StatsGroup

log = logging.getLogger(__name__)

Feed = Union[CaptureSource, FileFeed]


class Service:
    """``Service(cfg).run() -> exit status``. ``request_stop()`` ends it from any thread."""

    def __init__(self, cfg: ServiceConfig, notifier: Optional[Notifier] = None) -> None:
        self.cfg = cfg
        self.notifier = notifier or Notifier()
        self._next_status = 0.0
        p = cfg.pipeline
        #: This start of the service, in every published result with the camera's ``seq``.
        self.run_id = new_run_id()
        info = {"version": __version__, "backend": p.backend, "detector": p.detector,
                "pose": p.pose, "run_id": self.run_id}
        self.sources = cfg.cameras()
        #: Per camera: its counters, its frame counter (seq), its preview.
        self.camera_stats = {name: ServiceStats(name, info, cfg.service.stale_after_s)
                             for name, _ in self.sources}
        self._seq = {name: 0 for name in self.camera_stats}
        self.previews: Dict[str, Preview] = {}
        self.stats: Union[ServiceStats, StatsGroup] = (
            StatsGroup(self.camera_stats, cfg.service.healthy_when) if len(self.sources) > 1
            else self.camera_stats[self.sources[0][0]])
        self.stop_event = threading.Event()
        self.preview: Optional[Preview] = None
        self.http: Optional[HttpServer] = None
        self.outputs = Outputs(cfg, self.stats, self.camera_stats)
        self._repeats: Optional[RepeatFilter] = None

    def request_stop(self, signum: Optional[int] = None, frame: Any = None) -> None:
        if signum is not None:
            log.info("received %s: stopping", signal.Signals(signum).name)
        self.stop_event.set()

    def run(self, install_signals: bool = True, tame_logs: bool = True) -> int:
        """``tame_logs``: rate-limit repeated warnings and route OpenCV / FFmpeg's stderr
        through the log (see :mod:`.logs`); code embedding the service may pass False."""
        log.info("trt-pose-td %s serve (run %s), resolved config: %s", __version__, self.run_id,
                 json.dumps(self.cfg.as_dict(), sort_keys=True))
        uris = [source_uri(src) for _, src in self.sources]  # secrets read before anything slow
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
            stack.callback(self.outputs.close, self.cfg.service.drain_timeout_s)
            self.outputs.open()
            cameras = self._open_cameras(uris)
            stack.callback(cameras.close)
            stack.callback(self._begin_stop)  # runs first: tell systemd before draining
            self.stats.set_phase("running")
            if len(cameras.cameras) == 1:
                only = cameras.cameras[0]
                return self._loop(pipeline, only.feed, only.name)
            return self._loop_cameras(pipeline, cameras)
        return 0  # pragma: no cover - the with block always returns

    # -- setup / teardown ---------------------------------------------------------------------
    def _start_http(self, stack: ExitStack) -> None:
        h = self.cfg.http
        if not h.enabled:
            return
        for name in self.camera_stats:
            preview = Preview(h.preview_fps, h.preview_width, h.jpeg_quality,
                              h.keypoint_threshold)
            stack.callback(preview.close)
            self.previews[name] = preview
        self.preview = next(iter(self.previews.values()))
        token = read_secret(h.token_file, "[http] token_file") if h.token_file else None
        self.http = HttpServer(h.host, h.port, self.stats, self.preview, token,
                               h.max_connections, h.timeout_s, self.previews).start()
        stack.callback(self.http.close)

    def _open_cameras(self, uris: List[str]) -> Cameras:
        """Every camera's feed; a file feed gets a :class:`.cameras.Prefetch` thread when there
        are several cameras (so no camera's reading holds up a tick)."""
        opened = Cameras([])
        try:
            for (name, src), uri in zip(self.sources, uris):
                feed: Any = self._open_feed(src, uri)
                if len(self.sources) > 1 and isinstance(feed, FileFeed):
                    feed = Prefetch(feed, name)
                opened.cameras.append(Camera(name, feed))
                self.camera_stats[name].source_stats = feed.stats
        except BaseException:
            opened.close()
            raise
        return opened

    @staticmethod
    def _open_feed(src: SourceSection, uri: str) -> Feed:
        """``uri``: the source URI with its credentials (only the capture keeps it)."""
        if is_live_uri(src.uri):
            return open_capture(uri, src.capture_options())
        return FileFeed(open_source(src.uri, loop=src.loop), src.capture_options())

    @staticmethod
    def _close_pipeline(pipeline: Pipeline) -> None:
        pipeline.close()
        log.info("engines closed")

    def _begin_stop(self) -> None:
        self.stats.set_phase("stopping")
        self.notifier.stopping()

    # -- the loop -----------------------------------------------------------------------------
    def _loop(self, pipeline: Pipeline, feed: Feed, camera: str) -> int:
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
                self.camera_stats[camera].error()
                self._log_failure(exc, failed_in_row)
                if failed_in_row >= svc.max_consecutive_errors:
                    log.error("%d frames failed in a row: exiting so the service restarts",
                              failed_in_row)
                    return 1
        return 0

    def _frames(self, feed: Feed) -> Iterator[Frame]:
        """The feed's frames until it ends or a stop is requested (one camera: its frames stay
        untagged, so the JSONL keeps the schema of ``run``). Between frames (and while the
        source is quiet) it pings the watchdog and writes the periodic status line, so health
        stays current however long the pipeline keeps a frame in flight."""
        while not self.stop_event.is_set():
            frame = feed.read(timeout=self._housekeeping())
            if frame is not None:
                yield frame
            elif feed.ended:
                log.info("source ended: stopping")
                return

    def _housekeeping(self) -> float:
        """Watchdog ping and (when due) the status line; returns how long to wait for a frame."""
        self.notifier.watchdog()
        if time.monotonic() >= self._next_status:
            self._next_status = time.monotonic() + self.cfg.service.status_interval_s
            self._report()
        return 0.5 if self.notifier.watchdog_s is None else min(0.5, self.notifier.watchdog_s / 2)

    def _loop_cameras(self, pipeline: Pipeline, cameras: Cameras) -> int:
        """Each tick: the newest frame of every camera that has one -> ``pipeline.batch`` ->
        each camera's sinks. A failing tick is counted for its cameras; ``max_consecutive_errors``
        failing ticks in a row exit 1. Ends when every source ended or a stop is requested."""
        svc = self.cfg.service
        failed_in_row = processed = 0
        self._next_status = time.monotonic() + svc.status_interval_s
        group = self.stats
        while not self.stop_event.is_set():
            frames = cameras.gather(self._housekeeping(), self.stop_event)
            if not frames:
                if cameras.ended:
                    log.info("every source ended: stopping")
                    return 0
                continue
            try:
                results = pipeline.batch(frames)
            except Exception as exc:  # one bad tick must not end a camera service
                failed_in_row += 1
                for f in frames:
                    self.camera_stats[f.camera].error()
                self._log_failure(exc, failed_in_row)
                if failed_in_row >= svc.max_consecutive_errors:
                    log.error("%d ticks failed in a row: exiting so the service restarts",
                              failed_in_row)
                    return 1
                continue
            failed_in_row = 0
            if isinstance(group, StatsGroup) and results[0].batch is not None:
                group.record_batch([f.camera for f in frames], results[0].batch)
            for result in results:
                self._deliver(result)
            processed += len(results)
            if svc.max_frames and processed >= svc.max_frames:
                log.info("processed %d frame(s) (max_frames): stopping", processed)
                return 0
        return 0

    def _deliver(self, result: FrameResult) -> None:
        camera = result.frame.camera or self.sources[0][0]
        result.run_id, result.seq = self.run_id, self._seq[camera]
        self._seq[camera] += 1
        self.camera_stats[camera].record(result)
        self.outputs.write(camera, result)
        preview = self.previews.get(camera)
        if preview is not None:
            preview.offer(result)
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
        """One camera: fps, persons, frames, source and broker state, health. Several: the
        same per camera, the last tick's batch composition, the overall verdict."""
        snap = self.stats.snapshot()
        notes = "".join(f"; {w}" for w in snap["warnings"])
        if "cameras" not in snap:
            return f"{_camera_line(snap)}, {snap['status']}{notes}"
        cams = "; ".join(f"{name}: {_camera_line(c)}" for name, c in snap["cameras"].items())
        b = snap["batch"]
        tick = "" if not b else (
            f"; last tick: {b['frames']} camera(s), persons "
            + " + ".join(f"{k} {v}" for k, v in b["persons"].items())
            + f" -> keypoint batch(es) {b['keypoint_batches']}")
        return f"{snap['fps']:.1f} fps in all; {cams}{tick}; {snap['status']}{notes}"

    def _report(self) -> None:
        line = self._status_line()
        self.notifier.status(line)
        healthy, reason = self.stats.health()
        (log.info if healthy else log.warning)("status: %s", line)
        if self._repeats is not None:
            self._repeats.flush()


def _camera_line(snap: Dict[str, Any]) -> str:
    src = snap["source"] or {}
    mqtt = snap["sinks"].get("mqtt")
    broker = "" if mqtt is None else f", mqtt {mqtt['state']}" + (
        f" ({mqtt['last_error']})" if mqtt["state"] != "connected" and mqtt["last_error"]
        else "")
    return (f"{snap['fps']:.1f} fps, {snap['persons']} person(s), {snap['frames']} frames, "
            f"source {src.get('state', '?')}{broker}")


def new_run_id() -> str:
    """This start's id: UTC start time and 4 random hex digits, e.g. ``20250301T101500Z-3fa9``
    (sorts by start time while the clock is right; unique either way)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(2).hex()
