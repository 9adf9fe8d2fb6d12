"""Measuring tracking: speed and agreement of skip-frame detection, identity, jitter, lag.

Used by ``bench/track_bench.py`` (and the lead's ``trt-pose-td bench --track``); numbers are
measured here, never asserted in tests. All keypoints: (N, 17, 2) float32 pixels, original frame.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .geometry import box_iou
from .tracking import PoseTracker, TrackerConfig
from .tracking.matching import assign, keypoint_oks
from .tracking.smoothing import OneEuroFilter
from .types import Frame, Poses

log = logging.getLogger(__name__)


def read_video(path: str, limit: Optional[int] = None) -> List[Frame]:
    """The first ``limit`` frames of a video, decoded up front (decode stays out of timings)."""
    from .io.sources import VideoSource

    frames: List[Frame] = []
    for frame in VideoSource(path):
        if limit is not None and len(frames) >= limit:
            break
        frames.append(frame)
    return frames


def run_modes(pipeline, frames: Sequence[Frame], configs: Dict[str, TrackerConfig]
              ) -> Dict[str, dict]:
    """Track ``frames`` once per config with ``pipeline``'s detector and keypoint model
    (``.detector(frame)``, ``.pose.estimate(frame, boxes)``), interleaved frame by frame so every
    config sees the same machine state. Per config: ``poses`` (list of :class:`Poses`),
    ``wall_s`` and ``cpu_s`` (process time, all threads) spent in ``step`` after one warm-up
    frame, and ``detector_frames``."""
    def estimate(frame: Frame, boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return pipeline.pose.estimate(frame, boxes)

    pipeline.pose.estimate(frames[0], pipeline.detector(frames[0]).boxes[:1])  # warm-up
    trackers = {name: PoseTracker(c) for name, c in configs.items()}
    out: Dict[str, dict] = {name: {"poses": [], "wall_s": 0.0, "cpu_s": 0.0} for name in configs}
    for frame in frames:
        for name, tracker in trackers.items():
            w0, c0 = time.perf_counter(), time.process_time()
            poses = tracker.step(frame, pipeline.detector, estimate)
            out[name]["wall_s"] += time.perf_counter() - w0
            out[name]["cpu_s"] += time.process_time() - c0
            out[name]["poses"].append(poses)
    for name, tracker in trackers.items():
        out[name]["detector_frames"] = tracker.detections_run
    return out


def run_tracked(pipeline, frames: Sequence[Frame], config: TrackerConfig
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
    from .io.sources import read_image

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


def mot_identity(pipeline, folders: Iterable[Path], config: TrackerConfig) -> Dict[str, int]:
    """ID switches summed over MOT17 sequences, tracking each from its first frame."""
    total = {"id_switches": 0, "matches": 0, "gt_boxes": 0, "frames": 0}
    for folder in folders:
        frames, gt = read_mot_sequence(folder)
        poses, _, _ = run_tracked(pipeline, frames, config)
        for key, value in mot_id_switches(poses, gt).items():
            total[key] += value
        total["frames"] += len(frames)
    return total
