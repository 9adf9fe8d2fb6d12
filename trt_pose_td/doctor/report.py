"""The doctor's report (pure data): one :class:`Check` per line, and what they mean for the
backend the pipeline would use."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

#: Check outcomes, in increasing severity (skip: does not apply here).
STATUSES = ("ok", "skip", "warn", "fail")


@dataclass(frozen=True)
class Check:
    """One line of the report. needed_by: the backends a ``fail`` here stops from running."""

    name: str
    status: str
    detail: str
    fix: str = ""
    needed_by: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")

    def blocks(self, backend: str) -> bool:
        return self.status == "fail" and backend in self.needed_by


@dataclass(frozen=True)
class Report:
    """Every check, the backend asked for and the one the pipeline would take (``auto``
    decided as :func:`trt_pose_td.pipelines.plan.resolve_backend` decides it), and what stops it."""

    checks: List[Check]
    requested: str
    backend: str
    blocking: List[str] = field(default_factory=list)

    @property
    def can_run(self) -> bool:
        return not self.blocking

    def to_dict(self) -> Dict[str, Any]:
        return {"checks": [asdict(c) for c in self.checks], "requested_backend": self.requested,
                "backend": self.backend, "can_run": self.can_run, "blocking": self.blocking}


def choose_backend(requested: str, checks: Sequence[Check]) -> str:
    """``auto`` -> tensorrt when TensorRT imports, a GPU answers and the pipeline's engines exist
    (the rule of :func:`trt_pose_td.pipelines.plan.tensorrt_unavailable`), else onnxruntime."""
    if requested != "auto":
        return requested
    by_name = {c.name: c for c in checks}
    needed = ("tensorrt", "gpu", "engines")
    usable = all(name in by_name and by_name[name].status in ("ok", "warn") for name in needed)
    return "tensorrt" if usable else "onnxruntime"
