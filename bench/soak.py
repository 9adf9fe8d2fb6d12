#!/usr/bin/env python3
"""Soak test: run ``trt-pose-td serve`` for N minutes on a looping file; watch for leaks.

Samples the service process every ``--interval`` seconds: resident memory (VmRSS), open file
descriptors, threads, and the frame / MQTT counters from its /metrics. Prints a table, writes
JSON, then stops the service with SIGTERM and reports its exit status. Not a CI test.

    python bench/soak.py --minutes 10 --json soak.json
    python bench/soak.py --minutes 60 --source clip.mp4 --pose pp_tinypose_256x192 --no-mqtt

With mosquitto on PATH a private broker runs on a free port and the service publishes to it; an
MJPEG client keeps /stream.mjpg open so the preview encoder runs too (``--no-mjpeg`` to skip).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trt_pose_td.cli.common import format_table  # noqa: E402

DEFAULT_SOURCE = "crowd/mmpose_testdata/demo__resources__demo.mp4"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int) -> Dict[str, float]:
    """VmRSS (MiB), threads and open fds of a live process, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return {"rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
            "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def scrape(port: int) -> Dict[str, float]:
    """Unlabelled view of the service's /metrics: name -> value (first sample of each)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: Dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0].replace("trt_pose_td_", "")
        out.setdefault(name, float(value))
    return out


def mjpeg_client(port: int, stop: threading.Event, counter: List[int]) -> None:
    """Keeps /stream.mjpg open (reconnecting) and counts the JPEG parts received."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/stream.mjpg", timeout=10) as r:
                while not stop.is_set():
                    line = r.readline()
                    if not line:
                        break
                    if line.lower().startswith(b"content-length:"):
                        r.readline()
                        r.read(int(line.split(b":")[1]))
                        counter[0] += 1
        except OSError:
            stop.wait(1.0)


def start_service(args: argparse.Namespace, workdir: Path, http_port: int,
                  mqtt_port: Optional[int]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trt_pose_td", "serve", args.source, "--loop",
           "--pose", args.pose, "--http", f"127.0.0.1:{http_port}",
           "--jsonl", str(workdir / "poses.jsonl"), "--threads", str(args.threads)]
    if mqtt_port:
        cmd += ["--mqtt", f"127.0.0.1:{mqtt_port}"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = open(workdir / "service.log", "w")
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"service exited early with {proc.returncode}")
        try:
            if scrape(port).get("frames_total", 0) > 0:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("service did not process a frame in time")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    p.add_argument("--source", default=None, help="video file (default: mirror demo clip)")
    p.add_argument("--pose", default="pp_tinypose_128x96")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    p.add_argument("--no-mqtt", action="store_true")
    p.add_argument("--no-mjpeg", action="store_true")
    p.add_argument("--json", default="soak.json", help="where to write the samples")
    args = p.parse_args()
    if args.source is None:
        mirror = Path(os.environ.get("TRT_POSE_TD_MIRROR", REPO.parent / "shared"))
        args.source = str(mirror / DEFAULT_SOURCE)
    workdir = Path(tempfile.mkdtemp(prefix="trt-pose-td-soak-"))
    broker = None
    mqtt_port = None
    if not args.no_mqtt and shutil.which("mosquitto"):
        mqtt_port = free_port()
        broker = subprocess.Popen(["mosquitto", "-p", str(mqtt_port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    http_port = free_port()
    proc = start_service(args, workdir, http_port, mqtt_port)
    stop = threading.Event()
    parts = [0]
    samples: List[Dict[str, float]] = []
    try:
        wait_ready(http_port, proc)
        if not args.no_mjpeg:
            threading.Thread(target=mjpeg_client, args=(http_port, stop, parts),
                             daemon=True).start()
        sample_loop(args, proc, http_port, parts, samples)
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if broker is not None:
            broker.terminate()
            broker.wait()
    if not samples:
        raise SystemExit(f"no samples (service exit {code}); log: {workdir / 'service.log'}")
    report(samples, code, args, workdir)
    return 0 if code == 0 else 1


def sample_loop(args: argparse.Namespace, proc: subprocess.Popen, port: int,
                parts: List[int], samples: List[Dict[str, float]]) -> None:
    t0 = time.time()
    end = t0 + args.minutes * 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"service died with {proc.returncode} after "
                             f"{(time.time() - t0) / 60:.1f} min")
        m = scrape(port)
        sample = {"minute": round((time.time() - t0) / 60, 2), **proc_status(proc.pid),
                  "frames": m.get("frames_total", 0), "fps": m.get("fps", 0),
                  "persons_total": m.get("persons_total", 0),
                  "mqtt_published": m.get("mqtt_published_total", 0),
                  "mjpeg_parts": parts[0], "errors": m.get("errors_total", 0),
                  "up": m.get("up", 0)}
        samples.append(sample)
        print(f"  {sample['minute']:6.2f} min  rss {sample['rss_mib']:.1f} MiB  "
              f"fds {sample['fds']}  frames {int(sample['frames'])}", flush=True)
        if time.time() >= end:
            return
        time.sleep(min(args.interval, max(0.0, end - time.time())))


def report(samples: List[Dict[str, float]], code: int, args: argparse.Namespace,
           workdir: Path) -> None:
    cols = ("minute", "rss_mib", "fds", "threads", "frames", "fps", "mqtt_published",
            "mjpeg_parts", "errors", "up")
    rows = [[s[c] if isinstance(s[c], float) and c in ("minute", "rss_mib", "fps")
             else int(s[c]) for c in cols] for s in samples]
    first, last = samples[0], samples[-1]
    title = (f"soak: {args.minutes:g} min on {Path(args.source).name} ({args.pose}); "
             f"RSS {first['rss_mib']:.1f} -> {last['rss_mib']:.1f} MiB, fds {first['fds']} -> "
             f"{last['fds']}, {int(last['frames'])} frames; SIGTERM exit {code}")
    print(format_table(cols, rows, title))
    doc = {"args": vars(args), "samples": samples, "exit_code": code,
           "log": str(workdir / "service.log")}
    Path(args.json).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.json}; service log {workdir / 'service.log'}")


if __name__ == "__main__":
    sys.exit(main())
