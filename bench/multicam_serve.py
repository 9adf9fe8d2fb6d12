"""Process helpers of ``bench/multicam.py``: memory and CPU of a process, and the ``--serve``
mode (real ``trt-pose-td serve`` processes measured through their ``/metrics``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List


def memory_kib(pid: int) -> Dict[str, int]:
    """VmRSS and Pss (KiB) of a live process, 0 when it is gone."""
    out = {"rss": 0, "pss": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss"] = int(line.split()[1])
    except OSError:
        pass
    return out


def stop(procs: List[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def serve_metrics(port: int) -> Dict[str, float]:
    """``{name{camera}: value}`` of one serve's /metrics (label-less samples as ``name``)."""
    import re
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    out: Dict[str, float] = {}
    for m in re.finditer(r'^(trt_pose_td_\w+)(?:\{([^}]*)\})? (\S+)$', text.decode(), re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if set(labels) <= {"camera"}:
            out[f"{m.group(1)}{{{labels['camera']}}}" if labels else m.group(1)] = float(m.group(3))
    return out


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # utime, stime:
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # fields 14, 15


def _sum(m: Dict[str, float], name: str) -> float:
    return sum(v for k, v in m.items() if k.startswith(name + "{"))


def run_serve_config(video: str, procs: int, cams_each: int, seconds: float, threads: int
                     ) -> Dict[str, Any]:
    """``procs`` real ``trt-pose-td serve`` processes with ``cams_each`` cameras each (the
    video looping), default models, no JSONL; counters read from /metrics before and after one
    shared window, once every camera has processed a frame."""
    import socket
    import urllib.error

    ports, servers = [], []
    for i in range(procs):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        cams = [video] if cams_each == 1 else [f"p{i}c{c}={video}" for c in range(cams_each)]
        cmd = [sys.executable, "-m", "trt_pose_td", "serve", *cams, "--loop", "--jsonl", "",
               "--http", f"127.0.0.1:{ports[-1]}", "--camera", f"p{i}c0"]
        if threads:
            cmd += ["--threads", str(threads)]
        servers.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))
    try:
        def warm() -> List[Dict[str, float]]:
            got = []
            for port in ports:
                m = serve_metrics(port)
                frames = [v for k, v in m.items() if k.startswith("trt_pose_td_frames_total{")]
                if len(frames) < cams_each or min(frames) < 1:
                    raise RuntimeError("not warm")
                got.append(m)
            return got

        deadline = time.time() + 300
        while True:
            try:
                before = warm()
                break
            except (RuntimeError, OSError, urllib.error.URLError):
                if time.time() > deadline or any(p.poll() is not None for p in servers):
                    raise RuntimeError("serve did not start (or exited)") from None
                time.sleep(1.0)
        t0, cpu0 = time.time(), [cpu_s(p.pid) for p in servers]
        peak = {p.pid: {"rss": 0, "pss": 0} for p in servers}
        while time.time() < t0 + seconds:
            time.sleep(min(2.0, max(0.0, t0 + seconds - time.time())))
            for p in servers:
                mem = memory_kib(p.pid)
                peak[p.pid] = {k: max(v, mem[k]) for k, v in peak[p.pid].items()}
        after = [serve_metrics(port) for port in ports]
        elapsed, cpu = time.time() - t0, sum(cpu_s(p.pid) for p in servers) - sum(cpu0)
    finally:
        stop(servers)
    return serve_row(before, after, elapsed, cpu, peak, procs * cams_each)


def serve_row(before: List[Dict[str, float]], after: List[Dict[str, float]], elapsed: float,
              cpu: float, peak: Dict[int, Dict[str, int]], cameras: int) -> Dict[str, Any]:
    delta = [{k: a[k] - b.get(k, 0.0) for k in a} for b, a in zip(before, after)]
    persons = sum(_sum(d, "trt_pose_td_persons_total") for d in delta)
    frames = sum(_sum(d, "trt_pose_td_frames_total") for d in delta)
    runs = sum(d.get("trt_pose_td_keypoint_runs_total", 0.0) for d in delta)
    batched = sum(d.get("trt_pose_td_keypoint_batch_persons_total", 0.0) for d in delta)
    return {
        "processes": len(before), "cameras": cameras, "persons_per_s": persons / elapsed,
        "fps_per_camera": frames / elapsed / cameras, "persons_per_cpu_s": persons / cpu,
        "cpu_s": cpu, "ticks": int(sum(d.get("trt_pose_td_ticks_total", 0.0) for d in delta)),
        "keypoint_batch_mean": batched / runs if runs else 0.0, "keypoint_batches": {},
        "rss_mib": sum(p["rss"] for p in peak.values()) / 1024,
        "pss_mib": sum(p["pss"] for p in peak.values()) / 1024,
        "rss_mib_each": [round(p["rss"] / 1024, 1) for p in peak.values()],
    }
