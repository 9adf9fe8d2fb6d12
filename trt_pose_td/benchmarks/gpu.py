"""Benchmarks of the GPU pipeline (``trt-pose-td bench --backend tensorrt``).

Per-stage times are CUDA event times (see :mod:`trt_pose_td.pipelines.gpu`); FPS at fixed crowd
sizes uses a crowd frame's real boxes tiled to each size (:func:`.crowd.tile_detections`), so the
detector still runs on the real frame. The crop kernel's throughput counts the bytes it
must move: every output element written plus one source byte per output element read (the
bilinear taps beyond that come from cache). Numbers are measured, never asserted in tests.
"""

from __future__ import annotations

import logging
import time
from typing import Dict, List, Sequence

import numpy as np

from ..engines.trt_api import detect
from ..pipelines.gpu import GpuPipeline
from ..progress import progress_bar
from ..types import Frame, StageTimes, summarize_times
from .crowd import machine_info, tile_detections

log = logging.getLogger(__name__)

STAGES = ("upload", "det_pre", "det_infer", "det_post", "crop", "pose_infer", "pose_post",
          "total")


def crop_bytes(pipeline: GpuPipeline, persons: int) -> int:
    """Bytes the crop kernel writes + reads (one source byte per output element) for a crowd."""
    w, h = pipeline.pose.spec.preprocess.input_size
    elements = persons * 3 * h * w
    return elements * (int(np.dtype(pipeline.crop_dtype).itemsize) + 1)


def bench_frames(pipeline: GpuPipeline, frames: List[Frame], repeat: int = 2,
                 quiet: bool = False) -> Dict[str, dict]:
    """Whole frames, sequential (``pipeline(frame)``) and overlapped (``pipeline.stream``).

    Returns {"sequential": {fps, stages}, "overlapped": {fps}, "persons": {...}}.
    """
    for frame in frames[:2]:
        pipeline(frame)  # warm-up: kernels, engines, buffers
    times: List[StageTimes] = []
    persons: List[int] = []
    bar = progress_bar(repeat * len(frames), "frames", "frame", quiet)
    t0 = time.perf_counter()
    for _ in range(repeat):
        for frame in frames:
            result = pipeline(frame)
            times.append(result.times)
            persons.append(len(result.poses))
            bar.update()
    seq_s = time.perf_counter() - t0
    bar.close()
    t0 = time.perf_counter()
    count = sum(1 for _ in pipeline.stream(frames * repeat))
    overlap_s = time.perf_counter() - t0
    return {"sequential": {"fps": len(times) / seq_s, "stages": summarize_times(times)},
            "overlapped": {"fps": count / overlap_s},
            "persons": {"mean": float(np.mean(persons)), "min": int(np.min(persons)),
                        "max": int(np.max(persons))}}


def bench_crowd_sizes(pipeline: GpuPipeline, frame: Frame, counts: Sequence[int],
                      repeat: int = 20, quiet: bool = False) -> List[dict]:
    """Per-stage median GPU ms, FPS and crop-kernel bytes/s at each crowd size."""
    dets = pipeline(frame).poses
    if len(dets) == 0:
        raise ValueError("the crowd frame has no detections")
    from ..types import Detections

    base = Detections(dets.boxes, dets.box_scores)
    rows = []
    bar = progress_bar(len(counts), "crowd sizes", "size", quiet)
    for count in counts:
        d = tile_detections(base, count)
        pipeline(frame, d)  # warm-up at this size
        times, kernel_ms = [], []
        for _ in range(repeat):
            times.append(pipeline(frame, d).times)
            kernel_ms.append(pipeline.last_crop_kernel_ms)
        med = {s: float(np.median([t.get(s, 0.0) for t in times])) for s in STAGES}
        kernel = float(np.median(kernel_ms))
        rows.append({"persons": count, "stages_ms": med, "fps": 1e3 / med["total"],
                     "crop_kernel_ms": kernel,
                     "crop_bytes_per_s": crop_bytes(pipeline, count) / (kernel * 1e-3)
                     if kernel > 0 else 0.0})
        bar.update()
    bar.close()
    return rows


def gpu_machine_info(pipeline: GpuPipeline) -> dict:
    info = machine_info()
    dev = pipeline.device.info
    info.update({"gpu": dev.name, "compute_capability": dev.compute_capability,
                 "integrated": dev.integrated, "driver": dev.driver_version,
                 "zero_copy": pipeline.zero_copy, "kernel_target": pipeline.kernels.target})
    info["tensorrt"] = str(detect()[1].version)  # the pipeline runs on it: it is there
    return info
