"""``trt-pose-td run``: poses for an image, folder, glob or video -> JSONL + annotated media."""

from __future__ import annotations

import argparse
import itertools
import logging
import os
from pathlib import Path
from typing import List

from ..api import open_pipeline
from ..io.sinks import ImageSink, JsonlSink, Sink, VideoSink
from ..io.sources import VideoSource, open_source
from ..progress import progress_bar
from ..types import StageTimes, summarize_times
from .common import add_pipeline_args, config_from_args, stage_table

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="estimate poses in images or a video file",
        description="Run the top-down pipeline over SOURCE and write DIR/poses.jsonl (one JSON "
                    "object per frame: frame, source, timestamp, persons[box, score, "
                    "keypoints[[x, y, score] x 17]] in original-image pixels) plus annotated "
                    "images (DIR/<name>.jpg) or an annotated video (DIR/<name>.mp4). Ends with "
                    "a per-stage timing table.",
        epilog="examples:\n  trt-pose-td run                      # the packaged sample photo\n"
               "  trt-pose-td run photos/ -o out       # every image of a folder\n"
               "  trt-pose-td run 'shots/*.png' --det-size 416\n"
               "  trt-pose-td run clip.mp4 -o out --pose pp_tinypose_128x96",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="?", default=None,
                   help="image, folder, glob or video file (default: the sample photo shipped "
                        "in the package, COCO val2017 000000001000.jpg, CC BY 2.0)")
    p.add_argument("-o", "--output", default="out", metavar="DIR",
                   help="output folder (default: %(default)s)")
    p.add_argument("--no-draw", action="store_true", help="write poses.jsonl only")
    p.add_argument("--keypoint-threshold", type=float, default=0.3,
                   help="hide keypoints below this score when drawing (default: %(default)s)")
    p.add_argument("--draw-min-score", type=float, default=0.3,
                   help="draw only persons whose box score reaches this; poses.jsonl keeps "
                        "everyone above --score-threshold (default: %(default)s)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0 = all)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or table")
    add_pipeline_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    uri = args.source
    if uri is None:
        from ..assets import sample_paths

        uri = str(sample_paths("sample")[0])
    source = open_source(uri)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info("config: %s", cfg.as_dict())
    sinks: List[Sink] = [JsonlSink(str(out_dir / "poses.jsonl"))]
    if not args.no_draw:
        if isinstance(source, VideoSource):
            stem = Path(source.uri).stem
            sinks.append(VideoSink(str(out_dir / f"{stem}.mp4"), source.fps,
                                   args.keypoint_threshold, args.draw_min_score))
        else:
            sinks.append(ImageSink(str(out_dir), args.keypoint_threshold, args.draw_min_score))
    times: List[StageTimes] = []
    persons = 0
    total = source.total
    if args.max_frames and total:
        total = min(total, args.max_frames)
    bar = progress_bar(total, "", "frame", args.quiet or total == 1)
    with open_pipeline(cfg, progress=not args.quiet) as pipeline:
        try:
            frames = itertools.islice(source, args.max_frames or None)
            for result in pipeline.stream(frames):
                for sink in sinks:
                    sink.write(result)
                times.append(result.times)
                persons += len(result.poses)
                bar.set_postfix(persons=len(result.poses), refresh=False)
                bar.update()
        finally:
            bar.close()
            for sink in sinks:
                sink.close()
            source.close()
    if not args.quiet and times:
        summary = summarize_times(times)
        print(stage_table(summary, f"{len(times)} frame(s), {persons} person(s), "
                                   f"{1e3 / summary['total']['mean']:.1f} FPS "
                                   f"({cfg.backend}, {cfg.detector} + {cfg.pose})"))
        print(f"wrote {out_dir / 'poses.jsonl'}" + ("" if args.no_draw else
                                                    f" and annotated media in {out_dir}"))
    if source.skipped:
        log.error("%d unreadable input(s) skipped: %s", len(source.skipped),
                  ", ".join(os.path.basename(s) for s in source.skipped[:5]))
        return 1
    return 0
