"""``trt-pose-td doctor``: can this machine run the pipeline, and if not, what to do (one line per
check, the fix on the same line). The checks live in :mod:`trt_pose_td.doctor`."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

from ..config import BACKENDS, PipelineConfig
from ..engine_meta import PRECISIONS

if TYPE_CHECKING:
    from ..doctor import Report

#: Where ``/etc``, ``/sys``, ``/dev`` and ``/tmp`` are read (a test points it at a tree).
ROOT = Path("/")
_LABELS = {"ok": "ok", "skip": "--", "warn": "warn", "fail": "FAIL"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor", help="check this machine first: Python, numpy, TensorRT, OpenCV, CUDA, "
                       "engines, Jetson power and camera",
        description="One line per check, with the fix when it fails: Python and numpy (and "
                    "whether TensorRT 8.5 / JetPack's OpenCV accept this numpy), import "
                    "tensorrt, import cv2, onnxruntime, cuda-python and NVRTC, the GPU and its "
                    "SM, the engine folder (which engines match this TensorRT and GPU), "
                    "CUDA_MODULE_LOADING, Jetson L4T release / nvpmodel / jetson_clocks, and "
                    "the Argus socket when a CSI camera is configured or present. The pipeline "
                    "checked is the service's (--config, default /etc/trt-pose-td/config.toml "
                    "when it exists) or the defaults; --backend / --engine-dir / --precision "
                    "override it.",
        epilog="examples:\n  trt-pose-td doctor\n  trt-pose-td doctor --backend tensorrt "
               "--engine-dir /engines\n  trt-pose-td doctor --config /etc/trt-pose-td/"
               "config.toml --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, metavar="FILE",
                   help="the service's TOML config (its [pipeline] and camera sources)")
    p.add_argument("--source", action="append", default=[], metavar="URI",
                   help="a camera source to check as well, e.g. csi://0 (repeatable)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="the backend that must run (default: the config's, else auto)")
    p.add_argument("--engine-dir", default=None, metavar="DIR",
                   help="engine folder (default: the config's, else <cache>/engines)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="engine precision the pipeline loads (default: fp16 on TensorRT)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def pipeline_of(args: argparse.Namespace) -> Tuple[PipelineConfig, List[str], Optional[str]]:
    """(pipeline config, camera URIs, config file used): the service's, resolved exactly as
    ``serve`` resolves it, with this command's flags on top."""
    from . import build_parser
    from .serve import DEFAULT_CONFIG, resolve

    path = args.config or (DEFAULT_CONFIG if os.path.isfile(DEFAULT_CONFIG) else None)
    cfg, sources = PipelineConfig(backend="auto"), []  # no service: can either backend run?
    if path:
        service = resolve(build_parser().parse_args(["serve", "--config", path]))
        cfg, sources = service.pipeline, [src.uri for _, src in service.cameras() if src.uri]
    flags = {"backend": args.backend, "engine_dir": args.engine_dir, "precision": args.precision}
    cfg = replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    return cfg, sources + list(args.source), path


def format_report(report: Report, config: Optional[str]) -> str:
    """The lines ``doctor`` prints: a header, one line per check, the verdict."""
    from .. import __version__

    lines = [f"trt-pose-td doctor {__version__} (config: {config or 'none, defaults'})"]
    for c in report.checks:
        fix = f" -- fix: {c.fix}" if c.fix and c.status in ("warn", "fail") else ""
        lines.append(f"{_LABELS[c.status]:<5} {c.name:<13} {c.detail}{fix}")
    asked, chosen = report.requested, report.backend
    head = f"backend {asked} -> {chosen}" if asked != chosen else f"backend {chosen}"
    lines.append(f"{head}: " + ("can run here" if report.can_run else
                                f"cannot run here ({', '.join(report.blocking)} failed)"))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..doctor import diagnose

    cfg, sources, path = pipeline_of(args)
    report = diagnose(cfg, sources, ROOT)
    if args.json:
        print(json.dumps({**report.to_dict(), "config": path}, indent=2))
    else:
        print(format_report(report, path))
    return 0 if report.can_run else 1
