"""The service's live counters, health verdict and their Prometheus text rendering.

The main loop records every frame; the HTTP threads read snapshots. Everything is guarded by one
lock and copied out, so a scrape never sees a half-updated frame.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

from ..io.capture import CaptureStats
from ..io.uri import redact
from ..types import FrameResult
from .sink_report import add_sink_metrics, sink_warnings

#: Frames kept for fps and latency quantiles.
WINDOW = 300
QUANTILES = (0.5, 0.9, 0.99)


class SinkCounters:
    """Per-sink write errors and frames skipped while the sink was failing."""

    def __init__(self) -> None:
        self.errors = 0
        self.skipped = 0
        self.failing = False


class ServiceStats:
    """Counters of one running service. ``source_stats`` and ``sink_stats`` are callables the
    loop sets once the source and sinks exist (they report their own counters)."""

    def __init__(self, camera: str, info: Dict[str, str], stale_after_s: float = 10.0) -> None:
        self.camera, self.info, self.stale_after_s = camera, dict(info), stale_after_s
        self.started = time.time()
        self._lock = threading.Lock()
        self._phase = "starting"
        self._frames = self._persons_total = self._errors = 0
        self._persons = 0
        self._last_frame_at: Optional[float] = None
        self._stamps: Deque[float] = deque(maxlen=WINDOW)
        self._times: Deque[Dict[str, float]] = deque(maxlen=WINDOW)
        self._sums: Dict[str, Tuple[float, int]] = {}
        self.sinks: Dict[str, SinkCounters] = {}
        self.source_stats: Callable[[], Optional[CaptureStats]] = lambda: None
        self.sink_stats: Callable[[], Dict[str, Dict[str, Any]]] = dict
        self.http_refused: Callable[[], Optional[int]] = lambda: None

    # -- writers (main loop) ----------------------------------------------------------------------
    def set_phase(self, phase: str) -> None:
        """starting | loading | running | stopping | ended."""
        with self._lock:
            self._phase = phase

    def record(self, result: FrameResult) -> None:
        now = time.monotonic()
        with self._lock:
            self._frames += 1
            self._persons = len(result.poses)
            self._persons_total += self._persons
            self._last_frame_at = now
            self._stamps.append(now)
            self._times.append(dict(result.times))
            for stage, ms in result.times.items():
                total, n = self._sums.get(stage, (0.0, 0))
                self._sums[stage] = (total + ms / 1e3, n + 1)

    def error(self) -> None:
        with self._lock:
            self._errors += 1

    def sink(self, name: str) -> SinkCounters:
        with self._lock:
            return self.sinks.setdefault(name, SinkCounters())

    # -- readers (HTTP threads) -------------------------------------------------------------------
    def fps(self) -> float:
        with self._lock:
            return self._fps_locked()

    def _fps_locked(self) -> float:
        s = self._stamps
        if len(s) < 2 or time.monotonic() - s[-1] > self.stale_after_s:
            return 0.0
        return (len(s) - 1) / max(s[-1] - s[0], 1e-9)

    def health(self) -> Tuple[bool, str]:
        """(healthy, reason): healthy while frames flow and the source is up."""
        src = self.source_stats()
        with self._lock:
            phase, last = self._phase, self._last_frame_at
        if phase != "running":
            return False, {"starting": "starting", "loading": "loading engines",
                           "stopping": "stopping", "ended": "source ended"}.get(phase, phase)
        if src is not None and src.state in ("lost", "connecting", "ended"):
            what = {"lost": "source lost", "connecting": "source not connected",
                    "ended": "source ended"}[src.state]
            detail = f": {redact(src.last_error)}" if src.last_error else ""
            return False, f"{what}{detail} ({src.reconnects} reconnect attempt(s))"
        if last is None:
            return False, "waiting for the first frame"
        age = time.monotonic() - last
        if age > self.stale_after_s:
            return False, f"no frame processed for {age:.1f} s"
        return True, "ok"

    def snapshot(self) -> Dict[str, Any]:
        """Everything /stats.json and /healthz report."""
        healthy, reason = self.health()
        src = self.source_stats()
        with self._lock:
            stages = self._stage_quantiles_locked()
            out: Dict[str, Any] = {
                "camera": self.camera, "healthy": healthy, "status": reason,
                "phase": self._phase, "uptime_s": round(time.time() - self.started, 1),
                "frames": self._frames, "fps": round(self._fps_locked(), 2),
                "persons": self._persons, "persons_total": self._persons_total,
                "errors": self._errors,
                "last_frame_age_s": None if self._last_frame_at is None else round(
                    time.monotonic() - self._last_frame_at, 2),
                "latency_ms": {k: {f"p{int(q * 100)}": round(v * 1e3, 2)
                                   for q, v in qs.items()} for k, qs in stages.items()},
                "sink_errors": {n: c.errors for n, c in self.sinks.items()},
                "info": self.info,
            }
        out["source"] = None if src is None else {
            "state": src.state, "frames": src.frames, "drops": src.drops,
            "reconnects": src.reconnects, "open_failures": src.open_failures,
            "last_error": redact(src.last_error)}
        out["sinks"] = self.sink_stats()
        out["warnings"] = sink_warnings(out["sinks"])
        return out

    def _stage_quantiles_locked(self) -> Dict[str, Dict[float, float]]:
        stages: List[str] = []
        for t in self._times:
            stages.extend(s for s in t if s not in stages)
        out = {}
        for stage in stages:
            v = np.array([t[stage] for t in self._times if stage in t], np.float64) / 1e3
            out[stage] = {q: float(np.quantile(v, q)) for q in QUANTILES}
        return out

    def prometheus(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        m = _Metrics()
        self.add_metrics(m)
        return m.text()

    def add_metrics(self, m: _Metrics) -> None:
        """This camera's samples (labelled ``camera``) into ``m``."""
        snap = self.snapshot()
        with self._lock:
            stages = self._stage_quantiles_locked()
            sums = dict(self._sums)
            sinks = {n: (c.errors, c.skipped, c.failing) for n, c in self.sinks.items()}
        cam = {"camera": self.camera}
        self._frame_metrics(m, snap, cam)
        samples: List[Tuple[Dict[str, str], float, str]] = []
        for stage, qs in stages.items():
            for q, v in qs.items():
                samples.append(({**cam, "stage": stage, "quantile": str(q)}, v, ""))
            total, n = sums.get(stage, (0.0, 0))
            samples += [({**cam, "stage": stage}, total, "_sum"),
                        ({**cam, "stage": stage}, n, "_count")]
        m.add_suffixed("stage_latency_seconds", "summary",
                       "Per-stage latency (quantiles over the last frames)", samples)
        self._io_metrics(m, snap, sinks, cam)
        refused = self.http_refused()
        if refused is not None:
            m.add("http_refused_connections_total", "counter",
                  "HTTP connections closed unserved ([http] max_connections were open)",
                  [(cam, refused)])

    def _frame_metrics(self, m: _Metrics, snap: Dict[str, Any], cam: Dict[str, str]) -> None:
        m.add("info", "gauge", "Build and model information", [({**cam, **self.info}, 1)])
        m.add("up", "gauge", "1 while healthy (frames flowing, source up)",
              [(cam, int(snap["healthy"]))])
        m.add("uptime_seconds", "gauge", "Seconds since the service started",
              [(cam, snap["uptime_s"])])
        m.add("frames_total", "counter", "Frames processed", [(cam, snap["frames"])])
        m.add("fps", "gauge", f"Frames per second over the last {WINDOW} frames",
              [(cam, snap["fps"])])
        m.add("persons", "gauge", "Persons in the last frame", [(cam, snap["persons"])])
        m.add("persons_total", "counter", "Persons detected, summed over frames",
              [(cam, snap["persons_total"])])
        m.add("errors_total", "counter", "Frames whose processing failed",
              [(cam, snap["errors"])])

    @staticmethod
    def _io_metrics(m: _Metrics, snap: Dict[str, Any], sinks: Dict[str, Tuple[int, int, bool]],
                    cam: Dict[str, str]) -> None:
        src = snap["source"]
        if src is not None:
            m.add("source_up", "gauge", "1 while the source delivers frames",
                  [(cam, int(src["state"] == "streaming"))])
            m.add("source_frames_total", "counter", "Frames captured",
                  [(cam, src["frames"])])
            m.add("source_dropped_frames_total", "counter",
                  "Captured frames replaced by a newer one before inference",
                  [(cam, src["drops"])])
            m.add("source_reconnects_total", "counter", "Attempts to re-open the source",
                  [(cam, src["reconnects"])])
        m.add("sink_errors_total", "counter", "Failed sink writes",
              [({**cam, "sink": n}, v[0]) for n, v in sinks.items()])
        m.add("sink_skipped_total", "counter", "Frames a failing sink skipped while backing off",
              [({**cam, "sink": n}, v[1]) for n, v in sinks.items()])
        m.add("sink_up", "gauge", "0 while a sink is failing",
              [({**cam, "sink": n}, int(not v[2])) for n, v in sinks.items()])
        add_sink_metrics(m, snap["sinks"], cam)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Metrics:
    """Builds exposition text: ``# HELP``, ``# TYPE`` then samples, names prefixed; the samples
    of one metric added several times (one camera after another) stay under one header."""

    PREFIX = "trt_pose_td_"

    def __init__(self) -> None:
        self.families: Dict[str, List[str]] = {}

    def add(self, name: str, kind: str, help_: str,
            samples: List[Tuple[Dict[str, str], float]]) -> None:
        self.add_suffixed(name, kind, help_, [(labels, v, "") for labels, v in samples])

    def add_suffixed(self, name: str, kind: str, help_: str,
                     samples: List[Tuple[Dict[str, str], float, str]]) -> None:
        full = self.PREFIX + name
        lines = self.families.setdefault(full, [f"# HELP {full} {help_}",
                                                f"# TYPE {full} {kind}"])
        for labels, value, suffix in samples:
            text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            number = str(value) if isinstance(value, int) else f"{float(value):.9g}"
            lines.append(f"{full}{suffix}{{{text}}} {number}")

    def text(self) -> str:
        return "\n".join(line for lines in self.families.values() for line in lines) + "\n"


class StatsGroup:
    """The counters of several cameras in one service (one :class:`ServiceStats` each) with
    the same reader interface, for the HTTP server and the status line: ``snapshot()`` has the
    totals plus ``cameras`` (every camera's own snapshot) and ``batch`` (the last tick);
    ``healthy`` is every camera healthy (``healthy_when="all"``) or any of them (``"any"``).
    ``sinks`` holds the counters of sinks the cameras share (the JSONL file)."""

    def __init__(self, cameras: Dict[str, ServiceStats], healthy_when: str = "all") -> None:
        self.cameras, self.healthy_when = cameras, healthy_when
        self.camera = ",".join(cameras)
        self.started = time.time()
        self._lock = threading.Lock()
        self.sinks: Dict[str, SinkCounters] = {}
        #: the state of the sinks the cameras share (the JSONL file), set by the loop
        self.shared_sink_stats: Callable[[], Dict[str, Dict[str, Any]]] = dict
        self.http_refused: Callable[[], Optional[int]] = lambda: None
        self._ticks = self._det_runs = self._kp_runs = self._kp_persons = 0
        self._batch: Dict[str, Any] = {}

    def set_phase(self, phase: str) -> None:
        for s in self.cameras.values():
            s.set_phase(phase)

    def sink(self, name: str) -> SinkCounters:
        with self._lock:
            return self.sinks.setdefault(name, SinkCounters())

    def record_batch(self, cameras: List[str], info: Any) -> None:
        """One tick: the cameras in it and its :class:`~..types.BatchInfo`."""
        with self._lock:
            self._ticks += 1
            self._det_runs += info.detector_calls
            self._kp_runs += len(info.keypoint_batches)
            self._kp_persons += sum(info.keypoint_batches)
            self._batch = dict(info.as_dict(), persons=dict(zip(cameras, info.persons)))

    def health(self) -> Tuple[bool, str]:
        verdicts = {name: s.health() for name, s in self.cameras.items()}
        good = [name for name, (ok, _) in verdicts.items() if ok]
        healthy = bool(good) if self.healthy_when == "any" else len(good) == len(verdicts)
        bad = "; ".join(f"{name}: {why}" for name, (ok, why) in verdicts.items() if not ok)
        return healthy, f"{len(good)} of {len(verdicts)} camera(s) healthy" + (
            f" ({bad})" if bad else "")

    def snapshot(self) -> Dict[str, Any]:
        snaps = {name: s.snapshot() for name, s in self.cameras.items()}
        healthy, reason = self.health()
        ages = [v["last_frame_age_s"] for v in snaps.values() if v["last_frame_age_s"] is not None]
        first = next(iter(snaps.values()))
        sinks = dict(_sum_sinks([v["sinks"] for v in snaps.values()]), **self.shared_sink_stats())
        warnings = sink_warnings(self.shared_sink_stats()) + [
            w for name, v in snaps.items()
            for w in sink_warnings({"mqtt": v["sinks"].get("mqtt", {})}, name)]
        with self._lock:
            batch = dict(self._batch)
            shared = {n: c.errors for n, c in self.sinks.items()}
        return {
            "camera": self.camera, "healthy": healthy, "status": reason,
            "phase": first["phase"], "uptime_s": round(time.time() - self.started, 1),
            "frames": sum(v["frames"] for v in snaps.values()),
            "fps": round(sum(v["fps"] for v in snaps.values()), 2),
            "persons": sum(v["persons"] for v in snaps.values()),
            "persons_total": sum(v["persons_total"] for v in snaps.values()),
            "errors": sum(v["errors"] for v in snaps.values()),
            "last_frame_age_s": min(ages) if ages else None,
            "latency_ms": first["latency_ms"], "sink_errors": shared, "info": first["info"],
            "source": None, "sinks": sinks, "warnings": warnings, "batch": batch,
            "cameras": snaps}

    def prometheus(self) -> str:
        m = _Metrics()
        for s in self.cameras.values():
            s.add_metrics(m)
        with self._lock:
            counts = (self._ticks, self._det_runs, self._kp_runs, self._kp_persons)
            last = len(self._batch.get("persons", {}))
            shared = {n: (c.errors, c.skipped, c.failing) for n, c in self.sinks.items()}
        for (name, help_), value in zip((
                ("ticks_total", "Ticks: one detector batch + one keypoint batch over cameras"),
                ("detector_runs_total", "Detector engine runs (one per tick: dynamic batch)"),
                ("keypoint_runs_total", "Keypoint engine runs (chunks of max_batch per tick)"),
                ("keypoint_batch_persons_total", "Persons in the keypoint runs")), counts):
            m.add(name, "counter", help_, [({}, value)])
        m.add("batch_cameras", "gauge", "Cameras in the last tick", [({}, last)])
        for key, i, help_ in (("sink_errors_total", 0, "Failed sink writes"),
                              ("sink_skipped_total", 1, "Frames a failing sink skipped")):
            m.add(key, "counter", help_, [({"sink": n}, v[i]) for n, v in shared.items()])
        add_sink_metrics(m, self.shared_sink_stats(), {})
        refused = self.http_refused()
        if refused is not None:
            m.add("http_refused_connections_total", "counter",
                  "HTTP connections closed unserved ([http] max_connections were open)",
                  [({}, refused)])
        return m.text()


def _sum_sinks(per_camera: List[Dict[str, Dict[str, Any]]]) -> Dict[str, Dict[str, Any]]:
    """The cameras' MQTT clients as one ``{"mqtt": ...}``: connected when all are, counters
    summed, flags when any is set, the state and last error of the first one not connected."""
    clients = [s["mqtt"] for s in per_camera if s.get("mqtt")]
    if not clients:
        return {}
    worst = next((c for c in clients if not c["connected"]), clients[0])
    out = dict(worst)
    for key, value in worst.items():
        if key == "connected":
            out[key] = all(c[key] for c in clients)
        elif isinstance(value, bool):
            out[key] = any(c.get(key) for c in clients)
        elif isinstance(value, int):
            out[key] = sum(c.get(key, 0) for c in clients)
    return {"mqtt": out}
