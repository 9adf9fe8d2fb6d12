"""Run :mod:`.cases` through the real ``Kernels`` on the shim and compare with the numpy twins.

:func:`run_cases` returns one :class:`Result` per case; :func:`group_lines` makes the one line per
kernel (and case group) that ``bench/kernels_on_cpu.py`` prints; :func:`math_study` repeats the
cases of kernels that call libm with every result moved by whole ulps (libdevice's error bound).
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .cases import CHECKS, Case
from .host_driver import HostDriver


@dataclass
class Result:
    """One case: max |kernel - twin| against its tolerance, and what the harness saw."""

    case: Case
    tol: float
    max_diff: float = 0.0
    differing: int = 0        # output elements not equal to the twin's (NaN == NaN)
    over: int = 0             # ... of them beyond the tolerance
    coarse: int = 0           # ... of them beyond 1e-3 (a different decision, not a rounding)
    poisoned: int = 0         # output elements holding the 0xff poison: unwritten, or computed
                              # from memory nothing wrote (global or __shared__)
    outputs: int = 0          # output elements compared
    launches: int = 0
    kernels: List[str] = field(default_factory=list)  # the .cu functions it launched
    seconds: float = 0.0
    reports: List[Tuple[str, str, str]] = field(default_factory=list)  # (kernel, kind, text)
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return not (self.error or self.over or self.poisoned or self.reports)

    def to_json(self) -> Dict[str, Any]:
        c = self.case
        return {"group": c.group, "case": c.name, "kernel": CHECKS[c.check].kernel,
                "params": {k: (str(v) if not isinstance(v, (int, float, str)) else v)
                           for k, v in c.params.items()},
                "schedule": c.schedule, "tolerance": self.tol, "max_diff": self.max_diff,
                "outputs": self.outputs, "differing": self.differing,
                "over_tolerance": self.over, "over_1e-3": self.coarse,
                "poisoned": self.poisoned, "launches": self.launches,
                "kernels_launched": self.kernels,
                "seconds": round(self.seconds, 3), "ok": self.ok, "error": self.error,
                "reports": [{"kernel": k, "kind": kind, "text": t} for k, kind, t in self.reports]}


def compare(got: np.ndarray, ref: np.ndarray) -> Tuple[np.ndarray, int]:
    """(|got - ref| per element as float64, NaN == NaN and inf == inf counting 0; NaN vs a
    number counting inf) and the number of elements still holding the 0xff poison."""
    bits = got.view(np.uint32 if got.dtype.itemsize == 4 else np.uint16)
    unwritten = int(np.count_nonzero(bits == np.iinfo(bits.dtype).max))
    g, r = got.astype(np.float64), ref.astype(np.float64)
    same = (g == r) | (np.isnan(g) & np.isnan(r))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(g - r))
    return np.where(np.isnan(diff), np.inf, diff), unwritten


def run_case(case: Case, kernels: Any, stream: Any, drv: HostDriver,
             rng: np.random.Generator) -> Result:
    check = CHECKS[case.check]
    result = Result(case, 0.0 if case.refused else float(check.tolerance(case.params)))
    x = check.make(rng, case.params)
    for lib in drv.libraries():
        lib.set_schedule(case.schedule)
    n_launch, n_report = len(drv.launches), len(drv.reports)
    start = time.perf_counter()
    got, ref, errors = None, None, {}
    try:
        got = check.run(kernels, stream, drv.memory, x)
    except Exception as exc:  # a refusal by the host code or a failed launch
        errors["kernel launch"] = f"{type(exc).__name__}: {exc}"
    result.seconds = time.perf_counter() - start
    result.launches = len(drv.launches) - n_launch
    result.kernels = sorted({name for name, _, _ in drv.launches[n_launch:]})
    result.reports = drv.reports[n_report:] + [
        (check.kernel, "memory", msg) for msg in drv.memory.free_arrays()]
    try:
        with np.errstate(all="ignore"):  # NaN / inf maps are cases, not accidents
            ref = check.twin(x)
    except Exception as exc:  # a twin that cannot do what the kernel did
        errors["twin"] = f"{type(exc).__name__}: {exc}"
    if case.refused:
        refused = [k for k, e in errors.items() if case.refused in e]
        if len(refused) < 2 or result.launches:
            result.error = (f"expected the host code and the twin to refuse ({case.refused!r}) "
                            f"before any launch; refused: {refused}, {result.launches} launches")
        return result
    if errors:
        result.error = "; ".join(f"{k}: {e}" for k, e in errors.items())
        return result
    if got.shape != ref.shape:
        result.error = f"kernel output {got.shape}, twin {ref.shape}"
        return result
    diff, result.poisoned = compare(got, ref)
    result.outputs = int(diff.size)
    result.max_diff = float(diff.max(initial=0.0))
    result.differing = int(np.count_nonzero(diff))
    result.over = int(np.count_nonzero(diff > result.tol))
    result.coarse = int(np.count_nonzero(diff > 1e-3))
    return result


def run_cases(cases: Sequence[Case], kernels: Any, stream: Any, drv: HostDriver, seed: int,
              schedule: Optional[str] = None) -> List[Result]:
    """Every case with inputs from ``seed`` and the case's name (the same inputs whichever
    cases run with it)."""
    out = []
    for case in cases:
        rng = np.random.default_rng([seed, zlib.crc32(f"{case.group}/{case.name}".encode())])
        if schedule:
            case = dataclasses.replace(case, schedule=schedule)
        out.append(run_case(case, kernels, stream, drv, rng))
    return out


def status(results: Sequence[Result]) -> str:
    if any(r.error for r in results):
        return "ERROR"
    kinds = {kind for r in results for _, kind, _ in r.reports}
    if "divergence" in kinds:
        return "DIVERGENT BARRIER"
    if "memory" in kinds:
        return "OUT OF BOUNDS"
    if kinds:
        return "SHIM REPORT"
    if any(r.poisoned for r in results):
        return "POISON IN OUTPUT"
    return "MISMATCH" if any(r.over for r in results) else "ok"


def groups(results: Sequence[Result]) -> Dict[str, List[Result]]:
    out: Dict[str, List[Result]] = {}
    for r in results:
        out.setdefault(r.case.group, []).append(r)
    return out


def group_lines(results: Sequence[Result]) -> List[str]:
    """One line per group: cases, launches, max |d| vs tolerance, status, time, worst case."""
    lines = []
    for group, rs in groups(results).items():
        worst = max(rs, key=lambda r: (not r.ok, r.max_diff))
        tol = max(r.tol for r in rs)
        lines.append(f"{group:<24} {len(rs):>3} cases {sum(r.launches for r in rs):>4} launches"
                     f"  max|d| {max(r.max_diff for r in rs):<9.3g} tol {tol:<8.2g}"
                     f" {status(rs):<17} {sum(r.seconds for r in rs):6.1f} s"
                     + (f"  worst: {worst.case.name}" if worst.max_diff or not worst.ok else ""))
    return lines


def failure_lines(results: Sequence[Result], most: int = 12) -> List[str]:
    """What went wrong, case by case, for the first ``most`` failing cases (empty when every
    case passed)."""
    lines = []
    failed = [r for r in results if not r.ok]
    for r in failed[:most]:
        parts = [f"{r.over} elements beyond {r.tol:g} (max |d| {r.max_diff:.6g})"] * bool(r.over)
        parts += [f"{r.poisoned} hold the 0xff poison (unwritten, or computed from memory "
                  "nothing wrote)"] * bool(r.poisoned)
        parts += [f"{len(r.reports)} harness reports"] * bool(r.reports)
        what = r.error or "; ".join(parts)
        lines.append(f"FAIL {r.case.group} / {r.case.name} [{r.case.schedule}]: {what}")
        lines += [f"     {kernel} {kind}: {text.splitlines()[0] if text else ''}"
                  for kernel, kind, text in r.reports[:3]]
    if len(failed) > most:
        lines.append(f"... and {len(failed) - most} more failing cases (--json has them all)")
    return lines


def math_study(cases: Sequence[Case], kernels: Any, stream: Any, drv: HostDriver, seed: int,
               ulps: int) -> List[Dict[str, Any]]:
    """The cases of checks that call libm, rerun with every libm result moved ``ulps`` up, down
    and by a random sign per call; per group and mode: max |d| vs the twin and how many output
    elements moved (beyond 1e-3: a DARK step accepted / rejected the other way)."""
    chosen = [c for c in cases if CHECKS[c.check].math]
    rows = []
    try:
        for mode in ("up", "down", "random"):
            for lib in drv.libraries():
                lib.set_math_ulps(mode, ulps)
            for group, rs in groups(run_cases(chosen, kernels, stream, drv, seed)).items():
                diffs = [r.max_diff for r in rs if not r.error]
                rows.append({"group": group, "mode": mode, "ulps": ulps,
                             "max_diff": max(diffs, default=float("nan")),
                             "moved": sum(r.differing for r in rs),
                             "moved_over_1e-3": sum(r.coarse for r in rs),
                             "outputs": sum(r.outputs for r in rs),
                             "cases": len(rs), "errors": sum(bool(r.error) for r in rs)})
    finally:
        for lib in drv.libraries():
            lib.set_math_ulps("exact")
    return rows
