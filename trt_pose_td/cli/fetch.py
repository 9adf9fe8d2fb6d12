"""``trt-pose-td fetch``: download and verify models and sample media ahead of time."""

from __future__ import annotations

import argparse

from ..assets import MIRROR_ENV, SAMPLES, all_assets, cache_dir, fetch, mirror
from ..models import REGISTRY
from .common import format_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fetch", help="download models / samples into the cache (sha256-checked)",
        description=f"Download registry models and sample media into {cache_dir()} "
                    f"(or $TRT_POSE_TD_CACHE). ${MIRROR_ENV} names a mirror folder or URL base "
                    "laid out like models/<file>, coco/..., crowd/...; it is tried first.")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="model names or sample groups (default: every model with a known "
                        "sha256 and every sample)")
    p.add_argument("--list", action="store_true", help="list models and samples, fetch nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        rows = [(n, s.task, "x".join(map(str, s.preprocess.input_size)), s.decoder,
                 "yes" if s.sha256 else "no", s.description) for n, s in REGISTRY.items()]
        print(format_table(("model", "task", "input WxH", "decoder", "sha256", "description"),
                           rows))
        print()
        print(format_table(("sample", "files"), [(g, len(a)) for g, a in SAMPLES.items()]))
        print(f"\ncache: {cache_dir()}   mirror (${MIRROR_ENV}): {mirror() or '(unset)'}")
        return 0
    for asset in all_assets(args.names):
        path = fetch(asset)
        print(f"{asset.name:40s} {path}")
    return 0
