"""Benchmarks: the batched pipeline against one-person-at-a-time, per stage and per crowd size.

Used by ``trt-pose-td bench``; numbers are measured here, never asserted in tests.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..io.sources import read_image
from ..pipelines.cpu import CpuPipeline
from ..pipelines.stages import PoseEstimator
from ..progress import progress_bar
from ..types import Detections, Frame, StageTimes, summarize_times

log = logging.getLogger(__name__)


def load_frames(paths: Sequence[str]) -> List[Frame]:
    return [Frame(read_image(str(p)), i, 0.0, str(p)) for i, p in enumerate(paths)]


def per_person_estimator(pose: PoseEstimator) -> PoseEstimator:
    """The same keypoint engine, called once per person (batch 1), as most peers do."""
    return PoseEstimator(pose.engine, pose.spec, 1, pose.refine, pose.pre)


def bench_modes(pipeline: CpuPipeline, frames: List[Frame], repeat: int = 3,
                warmup: int = 1, quiet: bool = False) -> Dict[str, dict]:
    """Whole-frame runs of the batched pipeline and of the per-person loop, interleaved frame by
    frame so both see the same machine state. Returns {mode: {fps, stages, persons}}."""
    modes: Dict[str, PoseEstimator] = {"batched": pipeline.pose,
                                       "per_person": per_person_estimator(pipeline.pose)}
    times: Dict[str, List[StageTimes]] = {m: [] for m in modes}
    persons: List[int] = []
    for frame in frames[:warmup]:
        for est in modes.values():
            next(CpuPipeline(pipeline.detector, est).stream([frame]))
    bar = progress_bar(repeat * len(frames), "frames", "frame", quiet)
    for _ in range(repeat):
        for frame in frames:
            for mode, est in modes.items():
                result = next(CpuPipeline(pipeline.detector, est).stream([frame]))
                times[mode].append(result.times)
            persons.append(len(result.poses))
            bar.update()
    bar.close()
    out: Dict[str, dict] = {}
    for mode, est in modes.items():
        summary = summarize_times(times[mode])
        total = np.array([t["total"] for t in times[mode]])
        out[mode] = {
            "fps": float(1e3 / total.mean()),
            "ms_per_frame": {"mean": float(total.mean()), "median": float(np.median(total)),
                             "p90": float(np.percentile(total, 90))},
            "max_batch": est.max_batch,
            "stages": summary,
        }
    out["persons"] = {"mean": float(np.mean(persons)), "min": int(np.min(persons)),
                      "max": int(np.max(persons))}
    return out


def tile_detections(dets: Detections, count: int) -> Detections:
    """``count`` detections: the first ``count`` of ``dets``, repeated cyclically if too few.

    The keypoint stage costs the same for a repeated box as for a new one, so this gives any crowd
    size from a real frame's real boxes.
    """
    if len(dets) == 0:
        raise ValueError("no detections to tile")
    idx = np.arange(count) % len(dets)
    return Detections(dets.boxes[idx], dets.scores[idx])


def _time_ms(fn: Callable[[], object], repeat: int) -> List[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def bench_person_counts(pipeline: CpuPipeline, frame: Frame, counts: Sequence[int],
                        repeat: int = 5, quiet: bool = False) -> List[dict]:
    """Keypoint stage (crop + inference + decode) at each crowd size, batched vs per person.

    Detections come from ``frame`` (the crowd frame with the most people), tiled to ``count``.
    Reports median milliseconds per frame for both modes and their ratio.
    """
    dets = pipeline.detector(frame)
    single = per_person_estimator(pipeline.pose)
    rows = []
    bar = progress_bar(len(counts), "crowd sizes", "size", quiet)
    for count in counts:
        d = tile_detections(dets, count)
        pipeline.pose(frame, d)
        single(frame, d)  # warm-up at this size
        b, s = [], []
        for _ in range(repeat):  # interleave the two modes
            b += _time_ms(partial(pipeline.pose, frame, d), 1)
            s += _time_ms(partial(single, frame, d), 1)
        rows.append({"persons": count, "batched_ms": float(np.median(b)),
                     "per_person_ms": float(np.median(s)),
                     "speedup": float(np.median(s) / np.median(b))})
        bar.update()
    bar.close()
    return rows


def bench_batch_sizes(pipeline: CpuPipeline, frame: Frame, sizes: Sequence[int],
                      persons: int = 32, repeat: int = 3) -> List[dict]:
    """Keypoint inference milliseconds per person at each max batch (how to choose it)."""
    dets = tile_detections(pipeline.detector(frame), persons)
    rows = []
    for size in sizes:
        est = PoseEstimator(pipeline.pose.engine, pipeline.pose.spec, size, pipeline.pose.refine,
                            pipeline.pose.pre)
        est(frame, dets)
        ms = []
        for _ in range(repeat):
            t = StageTimes()
            est(frame, dets, t)
            ms.append(t["pose_infer"])
        rows.append({"max_batch": est.max_batch, "infer_ms_per_person":
                     float(np.median(ms) / persons)})
    return rows


def machine_info() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def best_crowd_frame(pipeline: CpuPipeline, frames: List[Frame]) -> Optional[Frame]:
    """The frame where the detector finds the most persons."""
    best, count = None, -1
    for f in frames:
        n = len(pipeline.detector(f))
        if n > count:
            best, count = f, n
    return best
