#!/usr/bin/env python3
"""Does overlapping frame t+1's detection (a worker thread) with frame t's keypoints beat the
sequential CPU loop? The measurement behind CpuPipeline.stream staying sequential.

    python bench/cpu_overlap.py [--frames DIR|GLOB] [--rounds 3] [--json out.json]

Both variants run the same pipeline object (ONNX Runtime, default models), alternating round by
round so both see the same machine load; prints FPS per round and the median ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trt_pose_td.api import open_pipeline
from trt_pose_td.benchmarks.crowd import load_frames
from trt_pose_td.io.sources import expand_images
from trt_pose_td.pipelines.cpu import CpuPipeline
from trt_pose_td.types import Frame, FrameResult, StageTimes


def overlapped(pipe: CpuPipeline, frames: List[Frame]) -> Iterator[FrameResult]:
    """Frame t+1's detection in a worker thread while frame t's keypoints run here."""
    with ThreadPoolExecutor(1) as pool:
        pending = None
        for frame in frames:
            times = StageTimes()
            job = (frame, pool.submit(pipe.detector, frame, times), times)
            if pending is not None:
                f, fut, t = pending
                yield FrameResult(f, pipe.pose(f, fut.result(), t), t)
            pending = job
        if pending is not None:
            f, fut, t = pending
            yield FrameResult(f, pipe.pose(f, fut.result(), t), t)


def fps(run: Iterator[FrameResult], n: int) -> float:
    t0 = time.perf_counter()
    count = sum(1 for _ in run)
    assert count == n
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", help="images (default: the packaged photo, shifted x8)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per model")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.frames:
        frames = load_frames(expand_images(args.frames))
    else:
        from trt_pose_td.assets import sample_paths

        frames = load_frames([str(sample_paths("sample")[0])] * 8)
    rows = []
    with open_pipeline(threads=args.threads) as pipe:
        next(pipe.stream(frames[:1]))  # warm-up
        for r in range(args.rounds):
            seq = fps(pipe.stream(frames), len(frames))
            ovl = fps(overlapped(pipe, frames), len(frames))
            rows.append({"round": r, "sequential_fps": seq, "overlapped_fps": ovl,
                         "ratio": ovl / seq})
            print(f"round {r}: sequential {seq:.2f} FPS, overlapped {ovl:.2f} FPS, "
                  f"ratio {ovl / seq:.2f}")
    ratio = statistics.median(r["ratio"] for r in rows)
    print(f"median overlapped/sequential: {ratio:.2f} ({len(frames)} frames x {args.rounds})")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": rows, "median_ratio": ratio,
                                               "threads": args.threads}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
