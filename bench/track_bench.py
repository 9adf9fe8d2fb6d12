"""Tracking benchmark on vtest.avi (CPU): FPS and agreement per --det-every K, identity on
MOT17, jitter and lag of the one-euro smoothing. Prints a table, writes JSON and a PNG plot.

    PYTHONPATH=. TRT_POSE_TD_MIRROR=../shared nice -n 10 python bench/track_bench.py \
        --frames 150 --json docs/tracking_bench.json --png docs/tracking_bench.png
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from pathlib import Path
from typing import Dict, List

from trt_pose_td import track_bench as tb
from trt_pose_td.assets import mirror_dir, vtest_path
from trt_pose_td.pipeline import PipelineConfig, TopDownPipeline
from trt_pose_td.tracking import TrackerConfig

log = logging.getLogger("track_bench")
VIDEO_FPS = 10.0
SMOOTH_GRID = [(mc, b) for mc in (0.3, 0.5, 1.0, 2.0) for b in (0.0, 0.5, 1.0, 2.0, 4.0)]


def skip_frame_rows(pipe, frames, ks: List[int]) -> List[dict]:
    """Every K interleaved frame by frame; agreement against the first K (1: every frame)."""
    runs = tb.run_modes(pipe, frames, {k: TrackerConfig(det_every=k) for k in ks})
    ref = runs[ks[0]]["poses"]
    base = runs[ks[0]]
    rows = []
    for k in ks:
        r = runs[k]
        row = {"det_every": k, "fps": len(frames) / r["wall_s"],
               "cpu_fps": len(frames) / r["cpu_s"],
               "speedup_wall": base["wall_s"] / r["wall_s"],
               "speedup_cpu": base["cpu_s"] / r["cpu_s"], "detector_frames": r["detector_frames"],
               **tb.agreement(r["poses"], ref), **tb.fragmentation(r["poses"], ref, VIDEO_FPS),
               "jitter_px": tb.jitter(r["poses"])}
        rows.append(row)
        log.info("K=%d: %s", k, row)
    return rows, ref


def motion_rows(pipe, frames, ref, k: int) -> List[dict]:
    runs = tb.run_modes(pipe, frames, {m: TrackerConfig(det_every=k, motion=m)
                                       for m in ("kalman", "ema", "none")})
    rows = []
    for motion, r in runs.items():
        rows.append({"motion": motion, "det_every": k,
                     **tb.agreement(r["poses"], ref[:len(frames)]),
                     **tb.fragmentation(r["poses"], ref[:len(frames)], VIDEO_FPS)})
        log.info("motion %s: %s", motion, rows[-1])
    return rows


def smoothing_rows(ref, frames) -> Dict[str, object]:
    stamps = [f.timestamp for f in frames]
    speed, height = tb.walking_speed(ref, VIDEO_FPS)
    raw = tb.jitter(ref)
    grid = []
    for mc, beta in SMOOTH_GRID:
        sm = tb.smooth_offline(ref, stamps, mc, beta)
        grid.append({"min_cutoff": mc, "beta": beta, "jitter_px": tb.jitter(sm),
                     "lag_px": tb.filter_lag(speed, height, VIDEO_FPS, mc, beta)})
    halving = [g for g in grid if g["jitter_px"] <= 0.5 * raw]
    best = min(halving, key=lambda g: g["lag_px"]) if halving else min(
        grid, key=lambda g: g["jitter_px"])
    return {"jitter_raw_px": raw, "walking_speed_px_s": speed, "median_height_px": height,
            "grid": grid, "chosen": best}


def print_table(report: dict) -> None:
    out = sys.stdout
    out.write("K  fps    x_wall  x_cpu  det_frames  oks_med  oks_p10  reported  tracks/min  "
              "fragmented  jitter_px\n")
    for r in report["skip_frame"]:
        out.write(f"{r['det_every']:<3}{r['fps']:<7.2f}{r['speedup_wall']:<8.2f}"
                  f"{r['speedup_cpu']:<7.2f}{r['detector_frames']:<12}"
                  f"{r['oks_median']:<9.3f}{r['oks_p10']:<9.3f}{r['reported']:<10.3f}"
                  f"{r['tracks_per_minute']:<12.1f}{r['fragmented']:<12}{r['jitter_px']:.2f}\n")
    for r in report["motion"]:
        out.write(f"motion {r['motion']:<7} K={r['det_every']}: oks_med {r['oks_median']:.3f} "
                  f"p10 {r['oks_p10']:.3f} reported {r['reported']:.3f} "
                  f"fragmented {r['fragmented']} tracks {r['tracks']}\n")
    s = report["smoothing"]
    out.write(f"smoothing: raw jitter {s['jitter_raw_px']:.2f} px; chosen {s['chosen']}\n")
    for name, m in report["mot17"].items():
        out.write(f"MOT17 {name}: {m}\n")


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["skip_frame"]
    ks = [r["det_every"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ks, [r["speedup_wall"] for r in rows], "o-", label="wall clock")
    a.plot(ks, [r["speedup_cpu"] for r in rows], "s--", label="CPU time")
    for r in rows:
        a.annotate(f"{r['fps']:.2f} fps", (r["det_every"], r["speedup_wall"]), fontsize=8,
                   textcoords="offset points", xytext=(4, -10))
    a.axhline(1.6, color="grey", lw=0.8, ls="--")
    a.set(xlabel="detector every K frames", ylabel="speed-up vs every-frame detection",
          title=f"vtest.avi, first {report['frames']} frames (CPU)")
    a.legend(loc="upper left")
    for key, label in (("oks_median", "median OKS vs every-frame"), ("oks_p10", "p10 OKS"),
                       ("reported", "share of persons reported")):
        b.plot(ks, [r[key] for r in rows], "o-", label=label)
    b.axhline(0.9, color="grey", lw=0.8, ls="--")
    b.set(xlabel="detector every K frames", ylim=(0, 1.02), title="agreement with every-frame")
    b.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video", help="default: vtest.avi (mirror or Debian's opencv-doc)")
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--det-every", default="1,3,5,10")
    p.add_argument("--motion-frames", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default="docs/tracking_bench.json")
    p.add_argument("--png", default="docs/tracking_bench.png")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    frames = tb.read_video(args.video or str(vtest_path()), args.frames)
    ks = [int(k) for k in args.det_every.split(",")]
    with TopDownPipeline.from_config(PipelineConfig(threads=args.threads), progress=False) as pipe:
        skip, ref = skip_frame_rows(pipe, frames, ks)
        report = {"frames": len(frames), "video": "vtest.avi", "threads": args.threads,
                  "machine": platform.processor() or platform.machine(),
                  "skip_frame": skip,
                  "motion": motion_rows(pipe, frames[:args.motion_frames], ref, 5),
                  "smoothing": smoothing_rows(ref, frames), "mot17": {}}
        mot = mirror_dir() / "crowd" / "MOT17" if mirror_dir() else None
        if mot and mot.is_dir():
            seqs = sorted(d for d in mot.iterdir() if (d / "gt" / "gt.txt").is_file())
            for k in (1, 5):
                report["mot17"][f"det_every={k}"] = tb.mot_identity(
                    pipe, seqs, TrackerConfig(det_every=k))
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    plot(report, args.png)
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
