"""``trt-pose-td`` command line: one module per subcommand, each with ``add_parser`` and ``run``.

User errors (:class:`~trt_pose_td.errors.TrtPoseError`, an OS error on a path, a bad flag) print
one line and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import textwrap
from typing import Callable, List, NoReturn, Optional

from .. import __version__
from ..errors import TrtPoseError

#: Subcommand modules in --help order.
COMMANDS = ("doctor", "fetch", "run", "bench", "eval", "quantize", "serve", "follow",
            "healthcheck", "build", "precompile")

#: The exit-status line each subcommand's --help ends with (what 1 means, where it is used).
PARTIAL = {
    "doctor": "1 the pipeline's backend cannot run here (the FAIL lines say why and how to fix it)",
    "run": "1 some images of a folder or glob could not be read (the others were written)",
    "eval": "1 the --compare gate failed (AP fell more than --max-drop below the baseline)",
    "serve": "1 too many frames failed in a row (systemd restarts the service)",
}


def exit_status(command: str) -> str:
    """``exit status: 0 ok, [1 ...,] 2 bad input or usage (nothing the user had is changed),
    130 interrupted``."""
    middle = f"; {PARTIAL[command]}" if command in PARTIAL else ""
    return textwrap.fill(f"exit status: 0 ok{middle}; 2 bad input or usage, one line on stderr "
                         "(nothing written is replaced); 130 interrupted", 90)


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one ``PROG: error: ...`` line (exit 2), like every other user error."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

DESCRIPTION = """\
Top-down multi-person pose estimation: a person detector, then one batched keypoint-model call
for every person in the frame. Runs on ONNX Runtime (CPU, the default) or TensorRT engines.

quick start:
  trt-pose-td run                    # sample class photo -> out/poses.jsonl + out/*.jpg
  trt-pose-td run video.mp4 -o out   # annotated video + JSONL
  trt-pose-td bench                  # batched vs one-person-at-a-time on crowd frames
  trt-pose-td build --precision fp16 # TensorRT engines for this device (docs/engines.md)

Models are downloaded on first use (sha256-checked) into ~/.cache/trt_pose_td; offline, set
TRT_POSE_TD_MIRROR to a folder laid out like models/<file>.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="trt-pose-td", description=DESCRIPTION, epilog=exit_status(""),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.add_parser(sub)
        command = sub.choices[name]
        command.epilog = "\n\n".join(filter(None, [command.epilog, exit_status(name)]))
    return parser


def setup_logging(verbose: int) -> None:
    """WARNING, INFO with -v, DEBUG with -vv."""
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose, 2) if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace,
                prog: str) -> int:
    """Run a command: a user error prints ``PROG: error: ...`` on one line and returns 2."""
    try:
        return int(func(args) or 0)
    except TrtPoseError as exc:
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the user named: unreadable, unwritable, full disk
        where = f": {exc.filename}" if exc.filename else ""
        print(f"{prog}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if not args.command:
        parser.print_help()
        return 2
    return run_command(args.func, args, f"trt-pose-td {args.command}")


if __name__ == "__main__":
    sys.exit(main())
