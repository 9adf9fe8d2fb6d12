"""Embed trt_pose_td in an application: count the people in every frame of a video (or an image
folder, a glob, a camera URI) and print a line whenever the count changes.

    python examples/count_people.py clip.mp4 --min-score 0.5
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import numpy as np

import trt_pose_td as tpt


def count_people(result: tpt.FrameResult, min_score: float) -> int:
    """Persons of one frame whose detector score is at least ``min_score``."""
    return int(np.count_nonzero(result.poses.box_scores >= min_score))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Print the number of people when it changes.")
    parser.add_argument("source", help="video file, image folder, glob or camera URI")
    parser.add_argument("--min-score", type=float, default=0.5,
                        help="detector score a person needs to be counted (default 0.5)")
    args = parser.parse_args(argv)
    last = -1
    try:
        with tpt.open_pipeline() as pipeline:
            for result in pipeline.stream(args.source):
                people = count_people(result, args.min_score)
                if people != last:
                    print(f"frame {result.frame.index}: {people} people", flush=True)
                    last = people
    except tpt.TrtPoseError as exc:  # bad source, missing model: one line, exit 2
        print(f"count_people: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
