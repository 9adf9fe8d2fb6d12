"""``trt-pose-td follow``: print the service's JSONL poses as they are written, across rotations.

Like ``tail -F``, but a rotation never loses a line: the file being read is read to its end
after it was renamed, every file closed since is read (gzipped or not), then the new file from
its start (see :mod:`trt_pose_td.io.follow`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List

from ..errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "follow", help="print a rotating poses JSONL file as it grows (tail -F that loses "
                       "nothing at a rotation)",
        description="Print the lines of the JSONL file written by `trt-pose-td serve` "
                    "([jsonl] path) as they are appended, following its rotations "
                    "(PATH.000001, PATH.000002.gz, ...) without losing or repeating a line.",
        epilog="examples:\n"
               "  trt-pose-td follow /var/log/trt-pose-td/poses.jsonl\n"
               "  trt-pose-td follow poses.jsonl --from-start --once > all.jsonl\n"
               "  trt-pose-td follow poses.jsonl | jq -c '{camera, seq, n: (.persons|length)}'",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="PATH", help="the JSONL file ([jsonl] path of the service)")
    p.add_argument("--from-start", action="store_true",
                   help="first every closed file still on disk, oldest first (default: only "
                        "what is written from now on)")
    p.add_argument("--once", action="store_true",
                   help="print what is there now (with --from-start: everything) and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io.follow import follow
    from ..io.rotate import rotated_files

    path = Path(args.path)
    if not path.parent.is_dir():
        raise ConfigError(f"no folder {path.parent} (give the service's [jsonl] path)")
    if args.once and not path.exists() and not rotated_files(path):
        raise ConfigError(f"no file {path} and no rotated {path.name}.NNNNNN files beside it")
    try:
        for line in follow(str(path), from_start=args.from_start, wait=not args.once):
            sys.stdout.write(line)
            sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader is done
        sys.stderr.close()
    return 0


__all__: List[str] = ["add_parser", "run"]
