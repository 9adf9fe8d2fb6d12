"""Measuring tracking: speed and agreement of skip-frame detection, identity, jitter, lag.

Used by ``trt-pose-td bench --video`` (:mod:`trt_pose_td.cli.bench`); numbers are
measured here, never asserted in tests. All keypoints: (N, 17, 2) float32 pixels, original frame.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..geometry import box_iou
from ..tracking import TrackerConfig
from ..tracking.matching import assign, keypoint_oks
from ..tracking.smoothing import OneEuroFilter
from ..types import Frame, Poses

if TYPE_CHECKING:
    from ..pipelines.base import StagedPipeline

log = logging.getLogger(__name__)


def read_video(path: str, limit: Optional[int] = None) -> List[Frame]:
    """The first ``limit`` frames of a video, decoded up front (decode stays out of timings)."""
    from ..io.sources import VideoSource

    frames: List[Frame] = []
    for frame in VideoSource(path):
        if limit is not None and len(frames) >= limit:
            break
        frames.append(frame)
    return frames


def run_modes(pipeline: StagedPipeline, frames: Sequence[Frame],
              configs: Mapping[Any, TrackerConfig]) -> Dict[Any, dict]:
    """Track ``frames`` once per config through the product path (a
    :class:`~..pipelines.tracked.TrackedPipeline` around ``pipeline`` per config, one call per
    frame), interleaved frame by frame so every config sees the same machine state. Per config:
    ``poses`` (list of :class:`Poses`), ``wall_s`` and ``cpu_s`` (process time, all threads)
    after one warm-up frame, and ``detector_frames``."""
    from ..pipelines.tracked import TrackedPipeline

    pipeline(frames[0])  # warm-up
    tracked = {name: TrackedPipeline(pipeline, c) for name, c in configs.items()}
    out: Dict[Any, dict] = {name: {"poses": [], "wall_s": 0.0, "cpu_s": 0.0} for name in configs}
    for frame in frames:
        for name, tp in tracked.items():
            w0, c0 = time.perf_counter(), time.process_time()
            poses = tp(frame).poses
            out[name]["wall_s"] += time.perf_counter() - w0
            out[name]["cpu_s"] += time.process_time() - c0
            out[name]["poses"].append(poses)
    for name, tp in tracked.items():
        out[name]["detector_frames"] = tp.tracker.detections_run
    return out


def run_tracked(pipeline: StagedPipeline, frames: Sequence[Frame], config: TrackerConfig
                ) -> Tuple[List[Poses], float, int]:
    """One config of :func:`run_modes`: (poses per frame, wall seconds, detector frames)."""
    r = run_modes(pipeline, frames, {"only": config})["only"]
    return r["poses"], r["wall_s"], r["detector_frames"]


def agreement(mode: Sequence[Poses], reference: Sequence[Poses], min_score: float = 0.5,
              reported_oks: float = 0.5) -> Dict[str, float]:
    """OKS between a mode's persons and the reference (every-frame) persons scoring >=
    ``min_score``, matched one-to-one per frame by OKS. Median and 10th percentile over matched
    pairs; ``reported``: share of reference persons matched with OKS >= ``reported_oks``."""
    values: List[float] = []
    total = reported = 0
    for got, ref in zip(mode, reference):
        ref = ref[ref.box_scores >= min_score]
        total += len(ref)
        if len(ref) == 0 or len(got) == 0:
            continue
        sim = keypoint_oks(ref.keypoints, ref.keypoint_scores, ref.boxes, got.keypoints)
        pairs, _, _ = assign(sim, 1e-6)
        pair_oks = [float(sim[r, c]) for r, c in pairs]
        values.extend(pair_oks)
        reported += sum(v >= reported_oks for v in pair_oks)
    v = np.array(values) if values else np.zeros(1)
    return {"oks_median": float(np.median(v)), "oks_p10": float(np.percentile(v, 10)),
            "reported": reported / max(total, 1), "reference_persons": total}


def _track_rows(poses: Sequence[Poses]) -> Dict[int, List[Tuple[int, int]]]:
    """track id -> [(frame, row)] in frame order."""
    rows: Dict[int, List[Tuple[int, int]]] = {}
    for f, p in enumerate(poses):
        if p.track_ids is None:
            continue
        for r, tid in enumerate(p.track_ids):
            if tid >= 0:
                rows.setdefault(int(tid), []).append((f, r))
    return rows


def fragmentation(tracked: Sequence[Poses], reference: Sequence[Poses], fps: float,
                  iou: float = 0.5) -> Dict[str, float]:
    """Tracks that end while a reference detection overlapping their last box by IoU >= ``iou``
    exists in the next frame, and tracks started per minute of video."""
    rows = _track_rows(tracked)
    frags = 0
    for seq in rows.values():
        f, r = seq[-1]
        if f + 1 < len(reference) and len(reference[f + 1]):
            frags += int((box_iou(tracked[f].boxes[r], reference[f + 1].boxes) >= iou).any())
    minutes = len(tracked) / fps / 60.0
    return {"tracks": len(rows), "fragmented": frags, "tracks_per_minute": len(rows) / minutes}


def jitter(poses: Sequence[Poses], raw: bool = False, min_score: float = 0.5) -> float:
    """Median second difference (px) of tracked keypoints over three consecutive frames where the
    keypoint scores >= ``min_score`` in all three; ``raw``: of ``keypoints_raw``."""
    acc: List[np.ndarray] = []
    for seq in _track_rows(poses).values():
        for (f0, r0), (f1, r1), (f2, r2) in zip(seq, seq[1:], seq[2:]):
            if f2 - f0 != 2:
                continue
            ps = [poses[f] for f in (f0, f1, f2)]
            k = [(p.keypoints_raw if raw and p.keypoints_raw is not None else p.keypoints)[r]
                 for p, r in zip(ps, (r0, r1, r2))]
            ok = np.all([p.keypoint_scores[r] >= min_score for p, r in zip(ps, (r0, r1, r2))],
                        axis=0)
            acc.append(np.linalg.norm(k[2] - 2 * k[1] + k[0], axis=1)[ok])
    return float(np.median(np.concatenate(acc))) if acc else float("nan")


def smooth_offline(poses: Sequence[Poses], timestamps: Sequence[float], min_cutoff: float,
                   beta: float, d_cutoff: float = 1.0) -> List[Poses]:
    """Replay the tracker's one-euro smoothing on tracked poses (keypoints -> keypoints_raw)."""
    filters: Dict[int, OneEuroFilter] = {}
    out: List[Poses] = []
    for p, t in zip(poses, timestamps):
        raw = p.keypoints_raw if p.keypoints_raw is not None else p.keypoints
        sm = raw.copy()
        for r, tid in enumerate(p.track_ids if p.track_ids is not None else []):
            if tid < 0:
                continue
            filt = filters.setdefault(int(tid), OneEuroFilter(min_cutoff, beta, d_cutoff))
            sm[r] = filt(raw[r], float(t), float(max(p.boxes[r, 3] - p.boxes[r, 1], 1.0)))
        out.append(Poses(sm, p.keypoint_scores, p.boxes, p.box_scores, p.track_ids, raw))
    return out


def walking_speed(poses: Sequence[Poses], fps: float) -> Tuple[float, float]:
    """Median speed of tracked box centres (px/s) and the median box height (px)."""
    speeds, heights = [], []
    for seq in _track_rows(poses).values():
        for (f0, r0), (f1, r1) in zip(seq, seq[1:]):
            b0, b1 = poses[f0].boxes[r0], poses[f1].boxes[r1]
            c0, c1 = (b0[:2] + b0[2:]) / 2, (b1[:2] + b1[2:]) / 2
            speeds.append(float(np.linalg.norm(c1 - c0)) * fps / (f1 - f0))
            heights.append(float(b1[3] - b1[1]))
    return float(np.median(speeds)), float(np.median(heights))


def filter_lag(speed: float, height: float, fps: float, min_cutoff: float, beta: float,
               d_cutoff: float = 1.0, seconds: float = 3.0) -> float:
    """Steady-state lag (px) of the one-euro filter behind a point moving at ``speed`` px/s on a
    person ``height`` px tall, sampled at ``fps``."""
    filt = OneEuroFilter(min_cutoff, beta, d_cutoff)
    n = int(seconds * fps)
    lag = 0.0
    for i in range(n):
        t = i / fps
        x = np.array([[speed * t, 0.0]], np.float32)
        lag = float(np.linalg.norm(filt(x, t, height) - x))
    return lag


def mot_id_switches(tracked: Sequence[Poses], gt: Sequence[Dict[int, np.ndarray]],
                    iou: float = 0.5) -> Dict[str, int]:
    """CLEAR-MOT identity switches: per frame, gt boxes (id -> (4,) x1y1x2y2) matched one-to-one
    to tracked boxes by IoU >= ``iou``; a switch is a gt person matched to a different track id
    than the last time it was matched."""
    last: Dict[int, int] = {}
    switches = matches = gt_total = 0
    for poses, frame_gt in zip(tracked, gt):
        gt_ids = list(frame_gt)
        gt_total += len(gt_ids)
        if poses.track_ids is None:
            continue
        track_ids = poses.track_ids
        keep = np.flatnonzero(track_ids >= 0)
        if not gt_ids or len(keep) == 0:
            continue
        sim = box_iou(np.stack([frame_gt[g] for g in gt_ids]), poses.boxes[keep])
        pairs, _, _ = assign(sim.astype(np.float64), iou)
        for g, c in pairs:
            tid = int(track_ids[keep[c]])
            gid = gt_ids[g]
            switches += int(gid in last and last[gid] != tid)
            last[gid] = tid
            matches += 1
    return {"id_switches": switches, "matches": matches, "gt_boxes": gt_total}


def read_mot_sequence(folder: Path, min_visibility: float = 0.25
                      ) -> Tuple[List[Frame], List[Dict[int, np.ndarray]]]:
    """MOT17 frames of one sequence (timestamps from seqinfo's frame rate) and per frame the
    ground-truth pedestrians {id: x1y1x2y2} (class 1, considered, visibility >= given)."""
    from ..io.sources import read_image

    fps = 30.0
    for line in (folder / "seqinfo.ini").read_text().splitlines():
        if line.startswith("frameRate="):
            fps = float(line.split("=")[1])
    paths = sorted((folder / "img1").glob("*.jpg"))
    frames = [Frame(read_image(str(p)), i, i / fps, str(p)) for i, p in enumerate(paths)]
    gt: List[Dict[int, np.ndarray]] = [{} for _ in frames]
    rows = np.loadtxt(folder / "gt" / "gt.txt", delimiter=",", ndmin=2)
    for f, tid, x, y, w, h, conf, cls, vis in rows[:, :9]:
        if conf == 1 and cls == 1 and vis >= min_visibility and 1 <= f <= len(frames):
            gt[int(f) - 1][int(tid)] = np.array([x, y, x + w, y + h], np.float32)
    return frames, gt


def mot_identity(pipeline: StagedPipeline, folders: Iterable[Path], config: TrackerConfig
                 ) -> Dict[str, int]:
    """ID switches summed over MOT17 sequences, tracking each from its first frame."""
    total = {"id_switches": 0, "matches": 0, "gt_boxes": 0, "frames": 0}
    for folder in folders:
        frames, gt = read_mot_sequence(folder)
        poses, _, _ = run_tracked(pipeline, frames, config)
        for key, value in mot_id_switches(poses, gt).items():
            total[key] += value
        total["frames"] += len(frames)
    return total


# --------------------------------------------------------------------------------------------
# tables and plot
#: one-euro settings tried for the smoothing table (min_cutoff Hz, beta)
SMOOTH_GRID = [(mc, b) for mc in (0.3, 0.5, 1.0, 2.0) for b in (0.0, 0.5, 1.0, 2.0, 4.0)]


def skip_frame_rows(pipe, frames: Sequence[Frame], ks: List[int], fps: float
                    ) -> Tuple[List[dict], List[Poses]]:
    """Every K interleaved frame by frame; agreement against the first K (1: every frame)."""
    runs = run_modes(pipe, frames, {k: TrackerConfig(det_every=k) for k in ks})
    ref = runs[ks[0]]["poses"]
    base = runs[ks[0]]
    rows = []
    for k in ks:
        r = runs[k]
        row = {"det_every": k, "fps": len(frames) / r["wall_s"],
               "cpu_fps": len(frames) / r["cpu_s"],
               "speedup_wall": base["wall_s"] / r["wall_s"],
               "speedup_cpu": base["cpu_s"] / r["cpu_s"], "detector_frames": r["detector_frames"],
               **agreement(r["poses"], ref), **fragmentation(r["poses"], ref, fps),
               "jitter_px": jitter(r["poses"])}
        rows.append(row)
        log.info("K=%d: %s", k, row)
    return rows, ref


def motion_rows(pipe, frames: Sequence[Frame], ref: List[Poses], k: int, fps: float
                ) -> List[dict]:
    """The motion models at skip-frame K, against the every-frame reference."""
    runs = run_modes(pipe, frames, {m: TrackerConfig(det_every=k, motion=m)
                                    for m in ("kalman", "ema", "none")})
    rows = []
    for motion, r in runs.items():
        rows.append({"motion": motion, "det_every": k,
                     **agreement(r["poses"], ref[:len(frames)]),
                     **fragmentation(r["poses"], ref[:len(frames)], fps)})
        log.info("motion %s: %s", motion, rows[-1])
    return rows


def smoothing_rows(ref: List[Poses], frames: Sequence[Frame], fps: float) -> Dict[str, object]:
    """Jitter and lag of every :data:`SMOOTH_GRID` setting; ``chosen``: the least lag among
    those that halve the jitter (else the least jitter)."""
    stamps = [f.timestamp for f in frames]
    speed, height = walking_speed(ref, fps)
    raw = jitter(ref)
    grid = []
    for mc, beta in SMOOTH_GRID:
        sm = smooth_offline(ref, stamps, mc, beta)
        grid.append({"min_cutoff": mc, "beta": beta, "jitter_px": jitter(sm),
                     "lag_px": filter_lag(speed, height, fps, mc, beta)})
    halving = [g for g in grid if g["jitter_px"] <= 0.5 * raw]
    best = min(halving, key=lambda g: g["lag_px"]) if halving else min(
        grid, key=lambda g: g["jitter_px"])
    return {"jitter_raw_px": raw, "walking_speed_px_s": speed, "median_height_px": height,
            "grid": grid, "chosen": best}


def tracking_report(pipe: StagedPipeline, frames: Sequence[Frame], ks: List[int], fps: float,
                    motion_frames: int = 50, mot_dirs: Sequence[Path] = ()) -> dict:
    """The document of ``trt-pose-td bench --video``: every K (skip-frame rows), the motion
    models at K=5, the smoothing grid, and ID switches on MOT17 sequences (when given)."""
    skip, ref = skip_frame_rows(pipe, frames, ks, fps)
    report: Dict[str, Any] = {"frames": len(frames), "video_fps": fps, "skip_frame": skip,
              "motion": motion_rows(pipe, frames[:motion_frames], ref, 5, fps)
              if motion_frames else [],
              "smoothing": smoothing_rows(ref, frames, fps), "mot17": {}}
    for k in sorted({1, max(ks)}) if mot_dirs else ():
        report["mot17"][f"det_every={k}"] = mot_identity(pipe, mot_dirs,
                                                        TrackerConfig(det_every=k))
    return report


def format_report(report: dict) -> str:
    """The tracking bench as text tables."""
    lines = ["K  fps    x_wall  x_cpu  det_frames  oks_med  oks_p10  reported  tracks/min  "
             "fragmented  jitter_px"]
    for r in report["skip_frame"]:
        lines.append(f"{r['det_every']:<3}{r['fps']:<7.2f}{r['speedup_wall']:<8.2f}"
                     f"{r['speedup_cpu']:<7.2f}{r['detector_frames']:<12}"
                     f"{r['oks_median']:<9.3f}{r['oks_p10']:<9.3f}{r['reported']:<10.3f}"
                     f"{r['tracks_per_minute']:<12.1f}{r['fragmented']:<12}{r['jitter_px']:.2f}")
    for r in report["motion"]:
        lines.append(f"motion {r['motion']:<7} K={r['det_every']}: oks_med "
                     f"{r['oks_median']:.3f} p10 {r['oks_p10']:.3f} reported "
                     f"{r['reported']:.3f} fragmented {r['fragmented']} tracks {r['tracks']}")
    s = report["smoothing"]
    c = s["chosen"]
    lines.append(f"smoothing: raw jitter {s['jitter_raw_px']:.2f} px; min_cutoff "
                 f"{c['min_cutoff']} beta {c['beta']}: jitter {c['jitter_px']:.2f} px, lag "
                 f"{c['lag_px']:.1f} px at {s['walking_speed_px_s']:.0f} px/s walking")
    for name, m in report["mot17"].items():
        lines.append(f"MOT17 {name}: {m}")
    return "\n".join(lines)


def plot(report: dict, path: str, title: str = "") -> None:
    """PNG: speed-up and agreement against K."""
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
          title=title or f"first {report['frames']} frames")
    a.legend(loc="upper left")
    for key, label in (("oks_median", "median OKS vs every-frame"), ("oks_p10", "p10 OKS"),
                       ("reported", "share of persons reported")):
        b.plot(ks, [r[key] for r in rows], "o-", label=label)
    b.axhline(0.9, color="grey", lw=0.8, ls="--")
    b.set(xlabel="detector every K frames", ylim=(0, 1.02), title="agreement with every-frame")
    b.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
