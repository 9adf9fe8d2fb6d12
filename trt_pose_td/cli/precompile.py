"""``trt-pose-td precompile``: compile the CUDA kernels into the cache ahead of first use."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .common import format_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..cuda.nvrtc import DEFAULT_TARGETS

    p = sub.add_parser(
        "precompile", help="compile the GPU kernels (NVRTC) into the kernel cache",
        description="Compile the package's CUDA kernels (batched crop warp, keypoint decode) "
                    "with NVRTC and store them in the kernel cache, so the GPU pipeline starts "
                    "without compiling. Needs no GPU: use it in Docker image builds. Without "
                    "--arch: this machine's GPU, or (no GPU) "
                    f"{', '.join(DEFAULT_TARGETS)}. sm_XY targets are cubins for exactly that "
                    "GPU (sm_72 Xavier, sm_87 Orin, sm_90 H100); compute_XY are PTX the driver "
                    "compiles for newer GPUs.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", action="append", default=None, metavar="sm_XY|compute_XY",
                   help="target (repeatable), e.g. --arch sm_87 --arch compute_87")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="kernel cache folder (default: <cache>/kernels; the pipeline reads "
                        "the default, so set TRT_POSE_TD_CACHE instead when it must move)")
    p.add_argument("--force", action="store_true", help="recompile even when cached")
    p.set_defaults(func=run)


def _targets(args: argparse.Namespace) -> list:
    from ..cuda.driver import CudaUnavailableError, Device, gpu_available
    from ..cuda.nvrtc import DEFAULT_TARGETS, supported_archs, target_for

    if args.arch:
        return list(dict.fromkeys(args.arch))
    if gpu_available():
        try:
            with Device(0) as device:
                return [target_for(device.info.major, device.info.minor, supported_archs())]
        except CudaUnavailableError:
            pass
    return list(DEFAULT_TARGETS)


def run(args: argparse.Namespace) -> int:
    if args.cache_dir:  # a bad folder is the user's mistake to hear about first
        from ..io.paths import ensure_output_dir

        ensure_output_dir(Path(args.cache_dir), "--cache-dir")
    from ..cuda.nvrtc import nvrtc_version, precompile

    major, minor = nvrtc_version()
    t0 = time.perf_counter()
    rows = precompile(_targets(args), Path(args.cache_dir) if args.cache_dir else None,
                      refresh=args.force)
    print(format_table(("kernel", "target", "bytes", "file"),
                       [(name, target, size, str(path)) for name, target, path, size in rows],
                       f"NVRTC {major}.{minor}, {time.perf_counter() - t0:.1f} s"))
    return 0
