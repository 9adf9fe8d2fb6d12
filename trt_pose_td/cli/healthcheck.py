"""``trt-pose-td healthcheck``: ask a running ``trt-pose-td serve`` for its ``/healthz``.

The address comes from the service's own resolved config, never from a hard-coded port: the
command finds the ``trt-pose-td serve`` process (in a container, the entrypoint's) through
``/proc/<pid>/cmdline`` and resolves its arguments exactly as ``serve`` did (config file,
``--set``, ``--http``, ``--no-http``), or resolves the ``serve`` arguments given after ``--``.
Exit status follows Docker's HEALTHCHECK contract: 0 healthy, 1 unhealthy (with the reason on
one line).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional, Tuple

from ..errors import ConfigError, TrtPoseError

PROC = Path("/proc")
#: Hosts meaning "every address": the check asks the loopback address of the same family.
WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "healthcheck", help="probe the running service's /healthz at its configured address",
        description="Exit 0 when the running `trt-pose-td serve` answers /healthz with 200, "
                    "1 otherwise (Docker HEALTHCHECK semantics). The address is the service's "
                    "resolved [http] host and port: from its command line (found in /proc) or "
                    "from the serve arguments given after `--`. With HTTP disabled (--no-http) "
                    "there is nothing to ask: healthy while the service process runs.",
        epilog="examples:\n  trt-pose-td healthcheck                       # the running service\n"
               "  trt-pose-td healthcheck -- --config /etc/trt-pose-td/config.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timeout", type=float, default=4.0, metavar="S",
                   help="HTTP timeout in seconds (default: %(default)s)")
    p.add_argument("serve_args", nargs=argparse.REMAINDER, metavar="-- SERVE_ARGS",
                   help="the arguments of `trt-pose-td serve` to resolve (default: those of "
                        "the running service)")
    p.set_defaults(func=run)


def serve_args_of(argv: List[str]) -> Optional[List[str]]:
    """The arguments after ``serve`` when ``argv`` runs ``trt-pose-td serve`` (the console
    script, or ``python -m trt_pose_td``), else None."""
    for i, word in enumerate(argv):
        name = os.path.basename(word)
        if name == "trt-pose-td" or (name == "trt_pose_td" and i > 0 and argv[i - 1] == "-m"):
            rest = list(argv[i + 1:])
            while rest and rest[0].startswith("-") and rest[0] != "--":  # -v before the command
                rest.pop(0)
            return rest[1:] if rest and rest[0] == "serve" else None
    return None


def find_service(proc: Path = PROC) -> Optional[Tuple[int, List[str]]]:
    """(pid, serve arguments) of the lowest-pid ``trt-pose-td serve`` process, or None."""
    me = os.getpid()
    pids = sorted(int(p.name) for p in proc.iterdir() if p.name.isdigit())
    for pid in pids:
        if pid == me:
            continue
        try:
            raw = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        args = serve_args_of([w.decode(errors="replace") for w in raw.split(b"\0") if w])
        if args is not None:
            return pid, args
    return None


def healthz_url(serve_args: List[str]) -> Optional[str]:
    """The /healthz URL of a service started with ``serve_args``; None when HTTP is off."""
    from . import build_parser
    from .serve import resolve

    usage = io.StringIO()
    try:
        with contextlib.redirect_stderr(usage):  # argparse's usage text: keep the last line
            args = build_parser().parse_args(["serve", *serve_args])
    except SystemExit:
        said = usage.getvalue().strip().splitlines()
        raise ConfigError(f"cannot parse the service's arguments {serve_args}: "
                          f"{said[-1] if said else 'usage error'}") from None
    http = resolve(args).http
    if not http.enabled:
        return None
    if http.port == 0:
        raise ConfigError("[http] port 0 lets the service pick a free port: the healthcheck "
                          "needs a fixed one (--http PORT)")
    host = WILDCARDS.get(http.host, http.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{http.port}/healthz"


def probe(url: str, timeout: float) -> Tuple[bool, str]:
    """(healthy, one-line reason) from a GET of ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200, f"{url}: {resp.status}"
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        try:
            reason = json.loads(body).get("reason") or body
        except (ValueError, AttributeError):
            reason = body
        return False, f"{url}: {exc.code} {str(reason).strip()[:200]}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {getattr(exc, 'reason', exc)}"


def run(args: argparse.Namespace) -> int:
    serve_args = [a for a in args.serve_args if a != "--"] if args.serve_args else None
    try:
        if serve_args is None:
            found = find_service()
            if found is None:
                print("unhealthy: no `trt-pose-td serve` process is running", file=sys.stderr)
                return 1
            serve_args = found[1]
        url = healthz_url(serve_args)
    except TrtPoseError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if url is None:
        print("healthy: HTTP is disabled (--no-http): nothing to ask")
        return 0
    ok, reason = probe(url, args.timeout)
    print(f"{'healthy' if ok else 'unhealthy'}: {reason}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
