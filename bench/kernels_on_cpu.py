"""The shipped CUDA kernel source executed on the CPU and compared with its numpy twins.

Compiles ``trt_pose_td/cuda/kernels/*.cu`` as they ship with g++ through
``bench/cpu_cuda/cuda_shim.h`` (grid looped, the threads of a block real OS threads with real
``__syncthreads`` barriers and shared ``__shared__`` memory, IEEE float without contraction as
``--fmad=false``, round-to-nearest-even halves), launches them through the package's own
``Kernels`` host code (argument checks, parameter packing, ``cuLaunchKernel``) with host memory as
device memory, and compares every output with ``trt_pose_td/cuda/twins.py``. One line per kernel
and case group with the measured max difference and its tolerance; exit 1 on any mismatch,
divergent barrier, write out of bounds, unwritten output or error. This is not a GPU: see
docs/gpu-runtime.md ("The kernel source on a CPU") for what it proves and what only a GPU can.

    python bench/kernels_on_cpu.py                 # the CI set (about 20 s on 2 busy cores)
    python bench/kernels_on_cpu.py --full          # every case (bigger crops, 40 x 17 maps)
    python bench/kernels_on_cpu.py --json out.json # results per case
    python bench/kernels_on_cpu.py --math-ulps 1   # DARK with libm's log moved by 1 ulp
    python bench/kernels_on_cpu.py --sanitize address   # AddressSanitizer (thread: TSan)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from cpu_cuda import harness  # noqa: E402
from cpu_cuda.build import CXX, SANITIZERS, SCHEDULES, BuildError, compiler_version  # noqa: E402
from cpu_cuda.cases import Case, cases  # noqa: E402
from cpu_cuda.host_driver import GUARD, host_kernels, libraries  # noqa: E402

KERNEL_DIR = REPO / "trt_pose_td" / "cuda" / "kernels"
_SANITIZED = "KERNELS_ON_CPU_SANITIZED"


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="every case, not only the CI set")
    p.add_argument("--json", type=Path, help="write the results per case to this file")
    p.add_argument("--seed", type=int, default=19, help="input seed (default 19)")
    p.add_argument("--only", default="", help="only groups or cases whose name contains this")
    p.add_argument("--schedule", choices=SCHEDULES,
                   help="run every case with this thread schedule (default: each case's own)")
    p.add_argument("--math-ulps", type=int, default=0, metavar="N",
                   help="also rerun the kernels that call libm with every result moved N ulps")
    p.add_argument("--sanitize", choices=sorted(SANITIZERS),
                   help="compile with -fsanitize=... and run under its runtime")
    p.add_argument("--kernel-dir", type=Path, default=KERNEL_DIR,
                   help="folder of the .cu files (default: the package's)")
    p.add_argument("--cache", type=Path, help="where compiled libraries go "
                   "(default: <cache>/cpu_cuda, <cache> as for trt-pose-td fetch)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    args = p.parse_args(argv)
    if not args.kernel_dir.is_dir():
        p.error(f"--kernel-dir {args.kernel_dir} is not a folder; give the folder of the .cu files")
    if args.math_ulps < 0:
        p.error("--math-ulps must be >= 0")
    return args


def _sanitized_rerun(kind: str, argv: List[str]) -> int:
    """Rerun this script with the sanitizer runtime preloaded (python itself is not built with
    it, so the runtime must come first)."""
    lib = subprocess.run([CXX, f"-print-file-name=lib{'asan' if kind == 'address' else 'tsan'}.so"],
                         capture_output=True, text=True).stdout.strip()
    if not Path(lib).is_file():
        print(f"error: {CXX} has no {kind} sanitizer runtime ({lib}); install libasan / libtsan",
              file=sys.stderr)
        return 2
    env = dict(os.environ, LD_PRELOAD=lib, **{_SANITIZED: "1"})
    env.setdefault("ASAN_OPTIONS", "detect_leaks=0")  # CPython's own allocations are not leaks
    env.setdefault("TSAN_OPTIONS", "report_signal_unsafe=0")
    rc = subprocess.run([sys.executable, __file__, *argv], env=env).returncode
    if rc not in (0, 1):
        print(f"FAIL: the {kind} sanitizer reported errors (exit {rc}; its report is above)")
        return 1
    return rc


def run(args: argparse.Namespace, chosen: List[Case]) -> Dict[str, Any]:
    """Build the libraries, run the cases (and the math study); everything the report needs."""
    start = time.perf_counter()
    libs = libraries(args.kernel_dir, args.cache, args.sanitize)
    build_s = time.perf_counter() - start
    from trt_pose_td.cuda.driver import Stream

    # AddressSanitizer sees each allocation's exact end without guard bytes around it.
    with host_kernels(libs, guard=0 if args.sanitize == "address" else GUARD) as (kernels, drv):
        stream = Stream()
        results = harness.run_cases(chosen, kernels, stream, drv, args.seed, args.schedule)
        study = harness.math_study(chosen, kernels, stream, drv, args.seed, args.math_ulps) \
            if args.math_ulps else []
        stream.close()
        selftest = run_self_test(kernels)
    return {"results": results, "study": study, "selftest": selftest, "build_s": build_s,
            "total_s": time.perf_counter() - start}


def run_self_test(kernels: Any) -> Dict[str, Any]:
    """The self-test every ``Kernels`` runs at open on a GPU (trt_pose_td/cuda/selftest.py),
    here on the CPU-compiled source: its checks, or the one-line error it raised."""
    from trt_pose_td.errors import EngineError

    try:
        checks = kernels.self_test()
    except EngineError as exc:
        return {"ok": False, "error": str(exc), "checks": []}
    return {"ok": True, "error": "", "checks": [
        {"kernel": c.kernel, "max_diff": c.max_diff, "tolerance": c.allowed} for c in checks]}


def report(args: argparse.Namespace, run_: Dict[str, Any]) -> bool:
    """Print one line per group (and the failures, the math study); True when all passed."""
    results = run_["results"]
    sanitizer = f" + {args.sanitize} sanitizer" if args.sanitize else ""
    print(f"{len(results)} cases ({'full' if args.full else 'CI'} set, seed {args.seed}): the "
          f".cu files of {args.kernel_dir} compiled by {compiler_version()} through "
          f"bench/cpu_cuda/cuda_shim.h{sanitizer}, launched by trt_pose_td.cuda.launchers."
          "Kernels on CPU threads, vs the numpy twins")
    for line in harness.group_lines(results) + harness.failure_lines(results):
        print(line)
    for row in run_["study"]:
        print(f"math {row['group']:<19} libm results moved {row['ulps']} ulp {row['mode']:<6}: "
              f"max|d| {row['max_diff']:.3g}, {row['moved']} of {row['outputs']} outputs moved,"
              f" {row['moved_over_1e-3']} by more than 1e-3")
    st = run_["selftest"]
    if st["ok"]:
        worst = max((c["max_diff"] for c in st["checks"]), default=0.0)
        print(f"{'self-test at open':<25} {len(st['checks']):>2} kernels                "
              f"max|d| {worst:<9.2g} ok (Kernels.self_test, what a GPU runs at open)")
    else:
        print(f"{'self-test at open':<25} FAIL: {st['error']}")
    ok = all(r.ok for r in results) and st["ok"]
    print(f"{'PASS' if ok else 'FAIL'}: {sum(r.ok for r in results)}/{len(results)} cases agree "
          f"with their twins; build {run_['build_s']:.1f} s, total {run_['total_s']:.1f} s")
    return ok


def write_json(path: Path, args: argparse.Namespace, run_: Dict[str, Any], ok: bool) -> None:
    results = run_["results"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "ok": ok, "seed": args.seed, "set": "full" if args.full else "ci",
        "compiler": compiler_version(), "sanitize": args.sanitize,
        "kernel_dir": str(args.kernel_dir), "build_seconds": round(run_["build_s"], 2),
        "seconds": round(run_["total_s"], 2),
        "groups": [{"group": g, "status": harness.status(rs), "cases": len(rs),
                    "max_diff": max(r.max_diff for r in rs),
                    "tolerance": max(r.tol for r in rs)}
                   for g, rs in harness.groups(results).items()],
        "cases": [r.to_json() for r in results], "math_study": run_["study"],
        "self_test": run_["selftest"]}, indent=1))


def main(argv: Optional[List[str]] = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw)
    if args.sanitize and not os.environ.get(_SANITIZED):
        return _sanitized_rerun(args.sanitize, raw)
    chosen = [c for c in cases(args.full) if args.only in f"{c.group} / {c.name}"]
    if not chosen:
        print(f"error: no case matches --only {args.only!r} (--list shows them)", file=sys.stderr)
        return 2
    if args.list:
        for c in chosen:
            print(f"{c.group:<24} {c.name:<40} {c.schedule:<8} {'full' if c.full else 'CI'}")
        return 0
    try:
        run_ = run(args, chosen)
    except BuildError as exc:
        print(f"FAIL build: {exc}", file=sys.stderr)
        return 1
    ok = report(args, run_)
    if args.json:
        write_json(args.json, args, run_, ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
