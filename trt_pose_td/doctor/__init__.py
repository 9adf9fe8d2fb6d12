"""``trt-pose-td doctor``: what an edge engineer checks first on a device, one line per check.

:func:`diagnose` gathers the facts of this machine (:mod:`.probes`: imports, versions, the GPU,
NVRTC, the engine cache, Jetson power state, the CSI camera socket) and judges them
(:mod:`.checks`, pure: each :class:`Check` says ok / warn / fail / skip, and when not ok, the
fix). The report says which backend the configured pipeline would use and whether it can run:
a failed check blocks the backends in its ``needed_by``.

The first-run failures it looks for are the ones users of peer projects hit on Jetson
(``docs/jetson-first-run.md`` in the shared docs): numpy versions TensorRT 8.5 or JetPack's
OpenCV reject (A1), a venv that cannot see JetPack's TensorRT (A2), engines from another
TensorRT or GPU (A4), a missing Argus socket for CSI cameras (A6), CUDA lazy loading (A7),
power mode and clocks (A18).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

from ..config import PipelineConfig
from .report import STATUSES, Check, Report, choose_backend


def diagnose(cfg: PipelineConfig, sources: Sequence[str] = (), root: Path = Path("/"),
             environ: Optional[Mapping[str, str]] = None) -> Report:
    """Probe this machine and judge it for the pipeline ``cfg`` with camera ``sources`` (URIs).
    root: where ``/etc``, ``/sys``, ``/dev`` and ``/tmp`` are read (tests point it at a tree)."""
    import os

    from .checks import judge
    from .probes import gather

    facts = gather(cfg, sources, Path(root), os.environ if environ is None else environ)
    checks = judge(facts)
    backend = choose_backend(cfg.backend, checks)
    blocking = [c.name for c in checks if c.blocks(backend)]
    return Report(checks, cfg.backend, backend, blocking)


__all__ = ["STATUSES", "Check", "Report", "choose_backend", "diagnose"]
