#!/usr/bin/env python3
"""N cameras in ONE serve-like process (``pipeline.batch``: one detector batch and one keypoint
batch across the cameras per tick) against N separate single-camera processes, on this CPU.

    python bench/multicam.py [--serve] [--cameras 1 2 4] [--seconds 40] [--rounds 1]
                             [--video PATH] [--threads N] [--json out.json] [--png out.png]

``--serve``: the processes are real ``trt-pose-td serve`` services (``serve NAME=URI ...``
with N cameras against N ``serve URI`` processes, default models, JSONL off, HTTP on loopback);
their counters are read from ``/metrics`` before and after one shared window once every camera
has processed a frame, CPU time from ``/proc``. Without it, the serve-like workers below.

Each configuration starts its worker process(es) (``--worker``, this same file); every worker
loads the default pipeline, opens its cameras (the video looping, each camera starting at
another frame), runs one warm-up tick and says ``ready``. When all are ready the driver sends
every worker the same deadline; a worker then runs ticks (the next frame of each of its cameras
-> ``pipeline.batch``) and counts the ticks that end before the deadline, so all processes of a
configuration are measured over the same wall-clock window, all of them running throughout.
The driver samples every worker's resident memory (VmRSS) and proportional set size (Pss: shared
pages divided among the processes sharing them) during the window.

Reported per configuration: total persons/s, frames/s per camera, keypoint batch sizes, memory
(sum over processes). Without ``--video``: ``/work/shared/video/vtest.avi`` style input from
``$TRT_POSE_TD_MIRROR/video/vtest.avi`` when there is a mirror, else an MP4 made from the
packaged sample photo panning (a group of ~24 detected persons per frame).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from multicam_serve import memory_kib, run_serve_config, stop


# -- worker -----------------------------------------------------------------------------------
def worker(video: str, cameras: int, threads: int) -> int:
    """One serve-like process with ``cameras`` looping copies of ``video``: stdout gets
    ``ready``, then (after ``go DEADLINE`` on stdin) one JSON line of counts."""
    from trt_pose_td.api import open_pipeline
    from trt_pose_td.io.sources import open_source

    feeds = []
    for cam in range(cameras):
        it = iter(open_source(video, loop=True))
        for _ in range(17 * cam):  # each camera sees other frames
            next(it)
        feeds.append(it)
    with open_pipeline(threads=threads or None) as pipe:
        pipe.batch([next(f) for f in feeds])  # warm-up (first runs allocate)
        print("ready", flush=True)
        deadline = float(sys.stdin.readline().split()[1])
        start, cpu_start = time.time(), time.process_time()
        ticks: List[Dict[str, Any]] = []
        while True:
            results = pipe.batch([next(f) for f in feeds])
            end = time.time()
            if end > deadline:
                break
            info = results[0].batch
            assert info is not None
            ticks.append({"end": end, "cpu": time.process_time(), "persons": info.persons,
                          "keypoint_batches": info.keypoint_batches,
                          "detector_calls": info.detector_calls})
    print(json.dumps({"pid": os.getpid(), "start": start, "cpu_start": cpu_start,
                      "cameras": cameras, "ticks": ticks}), flush=True)
    return 0


# -- driver -----------------------------------------------------------------------------------


def run_config(video: str, procs: int, cams_each: int, seconds: float, threads: int
               ) -> Dict[str, Any]:
    """``procs`` workers with ``cams_each`` cameras each, measured over one shared window."""
    cmd = [sys.executable, __file__, "--worker", "--video", video, "--cameras", str(cams_each),
           "--threads", str(threads)]
    workers = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for _ in range(procs)]
    try:
        for w in workers:
            line = w.stdout.readline().strip()  # type: ignore[union-attr]
            if line != "ready":
                raise RuntimeError(f"worker {w.pid} failed to start ({line!r})")
        deadline = time.time() + 1.0 + seconds
        for w in workers:
            w.stdin.write(f"go {deadline}\n")  # type: ignore[union-attr]
            w.stdin.flush()  # type: ignore[union-attr]
        peak = {w.pid: {"rss": 0, "pss": 0} for w in workers}
        while time.time() < deadline:
            time.sleep(min(2.0, max(0.0, deadline - time.time())))
            for w in workers:
                m = memory_kib(w.pid)
                peak[w.pid] = {k: max(v, m[k]) for k, v in peak[w.pid].items()}
        reports = [json.loads(w.communicate(timeout=600)[0].splitlines()[-1]) for w in workers]
    finally:
        stop(workers)
    return summarize(reports, peak, procs * cams_each, deadline - seconds)




def summarize(reports: List[Dict[str, Any]], peak: Dict[int, Dict[str, int]], cameras: int,
              window_start: float) -> Dict[str, Any]:
    persons_per_s, frames_per_s, batches = 0.0, [], []
    persons = cpu_s = 0.0
    for r in reports:
        ticks = r["ticks"]
        if not ticks:
            raise RuntimeError(f"worker {r['pid']}: no tick ended within the window "
                               "(raise --seconds)")
        elapsed = ticks[-1]["end"] - max(r["start"], window_start)
        n = sum(sum(t["persons"]) for t in ticks)
        persons_per_s += n / elapsed
        persons += n
        cpu_s += ticks[-1]["cpu"] - r["cpu_start"]
        frames_per_s += [len(ticks) / elapsed] * r["cameras"]
        batches += [b for t in ticks for b in t["keypoint_batches"]]
    return {
        "processes": len(reports), "cameras": cameras,
        "persons_per_s": persons_per_s,
        "fps_per_camera": statistics.mean(frames_per_s),
        "persons_per_cpu_s": persons / cpu_s if cpu_s else 0.0, "cpu_s": cpu_s,
        "ticks": sum(len(r["ticks"]) for r in reports),
        "keypoint_batch_mean": statistics.mean(batches) if batches else 0.0,
        "keypoint_batches": {str(b): batches.count(b) for b in sorted(set(batches))},
        "rss_mib": sum(p["rss"] for p in peak.values()) / 1024,
        "pss_mib": sum(p["pss"] for p in peak.values()) / 1024,
        "rss_mib_each": [round(p["rss"] / 1024, 1) for p in peak.values()],
    }











def sample_clip(path: Path, frames: int = 34) -> str:
    """An MP4 of the packaged photo panning 4 px a frame (640x480, 10 fps)."""
    import cv2
    import numpy as np

    from trt_pose_td.assets import sample_paths

    image = cv2.imread(str(sample_paths("sample", progress=False)[0]))
    h, w = image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    for i in range(frames):
        shift = np.float32([[1, 0, 4 * (i % 17) - 32], [0, 1, 0]])
        writer.write(cv2.warpAffine(image, shift, (w, h), borderMode=cv2.BORDER_REPLICATE))
    writer.release()
    return str(path)


def default_video(tmp: Path) -> str:
    mirror = os.environ.get("TRT_POSE_TD_MIRROR")
    if mirror and (Path(mirror) / "video" / "vtest.avi").is_file():
        return str(Path(mirror) / "video" / "vtest.avi")
    return sample_clip(tmp / "sample_clip.mp4")


def measure(video: str, counts: List[int], seconds: float, rounds: int, threads: int,
            serve: bool = False) -> List[Dict[str, Any]]:
    """Every configuration ``rounds`` times (one process / separate processes back to back,
    alternating which goes first, so a pair sees about the same machine load); the median round
    of each is kept, and ``rounds`` lists every round's persons/s and persons/CPU-s in order."""
    runs: Dict[tuple, List[Dict[str, Any]]] = {}
    for r in range(rounds):
        for n in counts:
            layouts = [("one", 1, n)] + ([("separate", n, 1)] if n > 1 else [])
            for mode, procs, each in (layouts if r % 2 == 0 else layouts[::-1]):
                row = (run_serve_config if serve else run_config)(video, procs, each, seconds,
                                                                  threads)
                row["mode"] = mode
                print(f"round {r}: {fmt(row)}", flush=True)
                runs.setdefault((n, mode), []).append(row)
    rows = []
    for rs in runs.values():
        per_round = [[x["persons_per_s"], x["persons_per_cpu_s"]] for x in rs]
        rs = sorted(rs, key=lambda x: x["persons_per_s"])
        rows.append(dict(rs[len(rs) // 2], rounds=per_round))
    return rows


def fmt(row: Dict[str, Any]) -> str:
    return (f"{row['cameras']} camera(s) {row['mode']:<8} {row['processes']} process(es): "
            f"{row['persons_per_s']:6.2f} persons/s, {row['fps_per_camera']:5.2f} fps/camera, "
            f"{row['persons_per_cpu_s']:5.2f} persons/CPU-s, "
            f"keypoint batch {row['keypoint_batch_mean']:4.1f}, RSS {row['rss_mib']:6.0f} MiB, "
            f"PSS {row['pss_mib']:6.0f} MiB")


def verdict(rows: List[Dict[str, Any]], n: int) -> Dict[str, Any]:
    """The goal: n cameras in one process >= 1.3x the persons/s of n processes, < half the
    memory (RSS and PSS)."""
    by = {r["mode"]: r for r in rows if r["cameras"] == n}
    if "one" not in by or "separate" not in by:
        return {}
    one, sep = by["one"], by["separate"]
    # per round (a pair measured back to back), then the median: the load of other work on
    # the machine changes between rounds far more than within a pair
    speeds = [a[0] / b[0] for a, b in zip(one["rounds"], sep["rounds"])]
    cpus = [a[1] / b[1] for a, b in zip(one["rounds"], sep["rounds"])]
    speed, cpu = statistics.median(speeds), statistics.median(cpus)
    rss, pss = one["rss_mib"] / sep["rss_mib"], one["pss_mib"] / sep["pss_mib"]
    return {"cameras": n, "speedup": speed, "speedups": speeds, "cpu_efficiency": cpu,
            "rss_ratio": rss, "pss_ratio": pss,
            "met": speed >= 1.3 and rss < 0.5 and pss < 0.5}


def table(rows: List[Dict[str, Any]]) -> str:
    head = ("| cameras | layout | processes | persons/s | fps/camera | persons/CPU-s "
            "| keypoint batch (mean) | RSS MiB | PSS MiB |\n|---|---|---|---|---|---|---|---|---|")
    lines = [f"| {r['cameras']} | {r['mode']} | {r['processes']} | {r['persons_per_s']:.2f} | "
             f"{r['fps_per_camera']:.2f} | {r['persons_per_cpu_s']:.2f} | "
             f"{r['keypoint_batch_mean']:.1f} | "
             f"{r['rss_mib']:.0f} | {r['pss_mib']:.0f} |"
             for r in sorted(rows, key=lambda r: (r["cameras"], r["mode"]))]
    return "\n".join([head, *lines])


def plot(rows: List[Dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for mode, marker in (("one", "o"), ("separate", "s")):
        rs = sorted((r for r in rows if r["mode"] == mode or r["cameras"] == 1),
                    key=lambda r: r["cameras"])
        label = "one process" if mode == "one" else "one process per camera"
        axes[0].plot([r["cameras"] for r in rs], [r["persons_per_s"] for r in rs],
                     marker=marker, label=label)
        axes[1].plot([r["cameras"] for r in rs], [r["rss_mib"] for r in rs], marker=marker,
                     label=label)
    for ax, title in zip(axes, ("total persons/s", "resident memory, MiB (sum)")):
        ax.set_ylim(bottom=0)
        ax.set_xlabel("cameras")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--seconds", type=float, default=40.0, help="measured window per run")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--video", help="video file each camera loops (default: see above)")
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: default)")
    ap.add_argument("--json")
    ap.add_argument("--png")
    ap.add_argument("--serve", action="store_true",
                    help="measure real `trt-pose-td serve` processes (counters from /metrics; "
                         "keypoint batch sizes only for the multi-camera ones)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.video, args.cameras[0], args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or default_video(Path(tmp))
        load = os.getloadavg()
        rows = measure(video, args.cameras, args.seconds, args.rounds, args.threads,
                       args.serve)
    print(table(rows))
    goals = [v for v in (verdict(rows, n) for n in args.cameras) if v]
    for v in goals:
        print(f"{v['cameras']} cameras, one process vs separate: {v['speedup']:.2f}x persons/s "
              f"(per round {', '.join(f'{x:.2f}' for x in v['speedups'])}) "
              f"({v['cpu_efficiency']:.2f}x persons per CPU-second), "
              f"{v['rss_ratio']:.2f}x RSS, {v['pss_ratio']:.2f}x PSS -> goal (>= 1.3x, < 0.5x "
              f"memory) {'met' if v['met'] else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "video": Path(video).name, "seconds": args.seconds, "rounds": args.rounds,
            "processes": "trt-pose-td serve" if args.serve else "serve-like workers",
            "threads": args.threads, "cpus": os.cpu_count(), "loadavg_before": load,
            "loadavg_after": os.getloadavg(), "rows": rows, "goals": goals}, indent=1))
    if args.png:
        plot(rows, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
