"""``trt-pose-td bench``: batched pipeline vs one-person-at-a-time, per stage and crowd size."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, cast

from ..api import open_pipeline
from ..benchmarks import crowd as bench
from ..config import PipelineConfig
from ..errors import ConfigError
from ..io.paths import check_output_file
from ..io.sources import expand_images
from .common import (
    add_pipeline_args,
    config_from_args,
    format_table,
    nonneg_int,
    parse_int_list,
    positive_int,
)

if TYPE_CHECKING:
    from ..pipelines.base import StagedPipeline


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="measure FPS and per-stage latency, batched vs per person",
        description="Run the pipeline over crowd frames (default: the MOT17 sample frames, "
                    "19-42 pedestrians each) in two modes: batched (all crops of a frame in "
                    "one keypoint-model call, chunked by --max-batch) and per_person (the same "
                    "models, batch 1 per person). Prints median/p90 per stage, end-to-end FPS "
                    "and a crowd-size sweep; --json writes everything. With --backend tensorrt: "
                    "the GPU pipeline's per-stage CUDA-event times, FPS sequential and with "
                    "detection overlapping keypoints, and per crowd size the stage times, FPS "
                    "and the crop kernel's bytes/s.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", default=None, metavar="DIR|GLOB",
                   help="frames to use (default: the mot17 sample group)")
    p.add_argument("--max-frames", type=nonneg_int, default=0,
                   help="use at most N frames (0 = all)")
    p.add_argument("--repeat", type=positive_int, default=2,
                   help="passes over the frames (default: 2)")
    p.add_argument("--persons", type=parse_int_list, default=[1, 5, 10, 20, 40],
                   metavar="N,N,...", help="crowd sizes for the keypoint-stage sweep "
                                           "(default: 1,5,10,20,40)")
    p.add_argument("--batch-sizes", type=parse_int_list, default=None, metavar="N,N,...",
                   help="also report keypoint ms/person at these max batches (e.g. 1,4,8,16,32)")
    p.add_argument("--json", default=None, metavar="FILE", help="write results as JSON")
    p.add_argument("--video", nargs="?", const="vtest", default=None, metavar="FILE",
                   help="tracking bench instead: on this video (bare --video: OpenCV's vtest.avi "
                        "from the mirror or Debian's opencv-doc) run every --det-every K "
                        "interleaved frame by frame and report FPS, agreement with every-frame "
                        "detection, fragmentation, jitter and smoothing lag (docs/tracking.md); "
                        "--max-frames limits the frames")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="with --video: draw FPS and agreement against K (default: next to "
                        "--json)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_pipeline_args(p, det_every_list=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ks = sorted(set(args.det_every))
    # the benchmarks measure the pipeline itself; the tracking bench wraps it per K
    args.det_every, args.track, args.smooth = 1, False, False
    if args.video is not None:
        return run_tracking(args, ks)
    if ks != [1]:
        raise ConfigError("--det-every K,K,... compares skip-frame detection on a video: add "
                          "--video FILE (or a bare --video for vtest.avi)")
    cfg = config_from_args(args)
    if args.json:
        check_output_file(Path(args.json), "--json")  # before the benchmark, not after it
    if args.frames:
        paths = expand_images(args.frames)
        if not paths:
            raise ConfigError(f"no images at {args.frames}")
    else:
        from ..assets import sample_paths

        paths = [str(p) for p in sample_paths("mot17")]
    if args.max_frames:
        paths = paths[: args.max_frames]
    frames = bench.load_frames(paths)
    # Any: the CPU benchmark drives the CpuPipeline's stages, beyond the Pipeline protocol
    with cast(Any, open_pipeline(cfg, progress=not args.quiet)) as pipeline:
        if pipeline.backend == "tensorrt":
            return run_gpu(args, cfg, pipeline, frames, paths)
        modes = bench.bench_modes(pipeline, frames, args.repeat, quiet=args.quiet)
        crowd = bench.best_crowd_frame(pipeline, frames)
        sweep = bench.bench_person_counts(pipeline, crowd, args.persons, quiet=args.quiet) \
            if crowd is not None else []
        batches = bench.bench_batch_sizes(pipeline, crowd, args.batch_sizes) \
            if args.batch_sizes and crowd is not None else []
    b, s = modes["batched"], modes["per_person"]
    rows = []
    for stage in b["stages"]:
        sb, ss = b["stages"][stage], s["stages"].get(stage, {"median": 0.0, "p90": 0.0})
        rows.append((stage, sb["median"], sb["p90"], ss["median"], ss["p90"]))
    pm = modes["persons"]
    print(format_table(
        ("stage", "batched med ms", "batched p90", "per-person med ms", "per-person p90"), rows,
        f"{len(frames)} frames x {args.repeat}, persons/frame mean {pm['mean']:.1f} "
        f"(min {pm['min']}, max {pm['max']}); {cfg.backend}, {cfg.detector} + {cfg.pose}, "
        f"max batch {b['max_batch']}"))
    speedup = b["fps"] / s["fps"]
    print(f"\nend-to-end FPS: batched {b['fps']:.2f}  per-person {s['fps']:.2f}  "
          f"speedup {speedup:.2f}x\n")
    if sweep:
        print(format_table(("persons", "batched ms", "per-person ms", "speedup"),
                           [(r["persons"], r["batched_ms"], r["per_person_ms"],
                             f"{r['speedup']:.2f}x") for r in sweep],
                           "keypoint stage (crop + inference + decode), median per frame"))
    if batches:
        print()
        print(format_table(("max batch", "inference ms/person"),
                           [(r["max_batch"], r["infer_ms_per_person"]) for r in batches]))
    if args.json:
        doc = {"batched": b, "per_person": s, "speedup": speedup, "persons": pm,
               "sweep": sweep, "batch_sizes": batches, "frames": paths,
               "config": cfg.as_dict(), "machine": bench.machine_info()}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"\nwrote {args.json}")
    return 0


def run_gpu(args: argparse.Namespace, cfg: PipelineConfig, pipeline: Any, frames: list,
            paths: list) -> int:
    """``--backend tensorrt``: the GPU pipeline's tables (see :mod:`trt_pose_td.benchmarks.gpu`)."""
    from ..benchmarks import gpu as gpu_bench

    whole = gpu_bench.bench_frames(pipeline, frames, args.repeat, args.quiet)
    crowd = max(frames, key=lambda f: len(pipeline(f).poses))
    sweep = gpu_bench.bench_crowd_sizes(pipeline, crowd, args.persons, quiet=args.quiet)
    info = gpu_bench.gpu_machine_info(pipeline)
    seq, pm = whole["sequential"], whole["persons"]
    print(format_table(("stage", "median ms", "p90 ms"),
                       [(st, v["median"], v["p90"]) for st, v in seq["stages"].items()],
                       f"{len(frames)} frames x {args.repeat} on {info['gpu']}, persons/frame "
                       f"mean {pm['mean']:.1f} (min {pm['min']}, max {pm['max']}); "
                       f"{cfg.detector} + {cfg.pose}"))
    print(f"\nend-to-end FPS: sequential {seq['fps']:.1f}  overlapped "
          f"{whole['overlapped']['fps']:.1f}\n")
    print(format_table(("persons",) + gpu_bench.STAGES + ("FPS", "crop GB/s"),
                       [(r["persons"], *[r["stages_ms"][st] for st in gpu_bench.STAGES],
                         r["fps"], r["crop_bytes_per_s"] / 1e9) for r in sweep],
                       "median ms per stage at fixed crowd sizes (tiled real boxes)"))
    if args.json:
        doc = {"gpu": whole, "sweep": sweep, "frames": paths,
               "config": cfg.as_dict(), "machine": info}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"\nwrote {args.json}")
    return 0


def run_tracking(args: argparse.Namespace, ks: List[int]) -> int:
    """``--video``: the tracking bench (table, JSON, PNG) for every K of ``ks``."""
    from ..assets import mirror_dir, vtest_path
    from ..benchmarks import tracking as track_bench
    from ..io.sources import VideoSource

    for path in (args.json, args.plot):
        if path:
            check_output_file(Path(path), "--json / --plot")
    video = str(vtest_path()) if args.video == "vtest" else args.video
    if 1 not in ks:
        ks = [1] + ks  # every-frame detection is the reference
    with VideoSource(video) as source:
        fps = float(source.fps or 10.0)
    frames = track_bench.read_video(video, args.max_frames or None)
    if len(frames) < 3:
        raise ConfigError(f"{video} has {len(frames)} frame(s): the tracking bench needs 3")
    mirror = mirror_dir()
    mot = mirror / "crowd" / "MOT17" if mirror else None
    mot_dirs = sorted(d for d in mot.iterdir() if (d / "gt" / "gt.txt").is_file()) \
        if mot is not None and mot.is_dir() else []
    cfg = config_from_args(args)
    with open_pipeline(cfg, progress=not args.quiet) as pipeline:
        staged = cast("StagedPipeline", pipeline)  # no tracking asked (run): not wrapped
        report = track_bench.tracking_report(staged, frames, ks, fps,
                                             min(50, len(frames)), mot_dirs)
    report.update(video=video, config=cfg.as_dict(), machine=bench.machine_info())
    print(f"{len(frames)} frames of {Path(video).name} at {fps:g} fps; {cfg.backend}, "
          f"{cfg.detector} + {cfg.pose}")
    print(track_bench.format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")
    png = args.plot or (str(Path(args.json).with_suffix(".png")) if args.json else None)
    if png:
        track_bench.plot(report, png, f"{Path(video).name}, first {len(frames)} frames "
                                      f"({cfg.backend})")
        print(f"wrote {png}")
    return 0
