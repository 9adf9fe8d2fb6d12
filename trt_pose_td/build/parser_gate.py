"""The parser check inside ``trt-pose-td build``: every ONNX file the build would hand to
TensorRT, checked (:mod:`.parser_check`) before any TensorRT network, parser or builder exists,
so a model the target TensorRT would refuse fails in one line naming the nodes and the fix.

The target is ``--parser-check VERSION`` or ``auto``: the installed TensorRT, else the oldest
supported (8.5, JetPack 5). ``--check-only`` prints the reports and stops.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from ..errors import ConfigError, DependencyError
from .options import BuildOptions
from .parser_check import ModelReport, check_model, finding_rows, resolve_target
from .parser_table import ParserTable, table_for

log = logging.getLogger(__name__)
#: Refused nodes named in the one-line error (the rest are counted).
NAMED_NODES = 3
SUMMARY_HEADER = ("model", "file", "TensorRT", "parser (per its docs)", "warnings", "nodes")


@dataclass
class ParserGate:
    """The check of a build's models. target: the TensorRT version asked for; table: the
    table standing for it; reports: one per model (every table version checked)."""

    target: str
    table: ParserTable
    reports: List[ModelReport]

    @property
    def label(self) -> str:
        """``TensorRT 8.5`` or ``TensorRT 10.3 (checked against the 10.8 table)``."""
        if self.target == self.table.version:
            return f"TensorRT {self.target}"
        return f"TensorRT {self.target} (checked against the {self.table.version} table)"

    def summary_rows(self) -> List[Tuple[str, ...]]:
        """One row per model and table version (columns: :data:`SUMMARY_HEADER`)."""
        rows: List[Tuple[str, ...]] = []
        for r in self.reports:
            for v in r.versions:
                refused = len({f.node for f in r.of(v)})
                verdict = "accepts" if not refused else f"refuses {refused} node(s)"
                target = " (target)" if v == self.table.version else ""
                rows.append((r.name, r.path.name, v + target, verdict,
                             str(len(r.of(v, "warning"))), str(sum(r.checked.values()))))
        return rows

    def finding_lines(self) -> List[str]:
        """``model  TensorRT 8.5  error    node (op): finding  [accepted by: 10.8]``."""
        return [f"{model}  TensorRT {version}  {level:<7}  {node} ({op}): {message}  "
                f"[accepted by: {accepted}]"
                for model, version, node, op, level, message, accepted
                in finding_rows(self.reports, ("error", "warning", "note"))]

    def refusal(self) -> Optional[str]:
        """The one-line error for the first model the target refuses (None: all pass)."""
        for r in self.reports:
            errors = r.of(self.table.version)
            if not errors:
                continue
            nodes = list(dict.fromkeys(f.node for f in errors))
            named = "; ".join(f"{f.node} ({f.op}): {f.message}" for f in errors
                              if f.node in nodes[:NAMED_NODES])
            more = f"; and {len(nodes) - NAMED_NODES} more" if len(nodes) > NAMED_NODES else ""
            return (f"{r.name} ({r.path.name}): {self.label} would refuse {len(nodes)} node(s) "
                    f"per {self.table.cite()}: {named}{more}. {_fix(r, nodes, self.table)}")
        return None

    def raise_refused(self) -> None:
        """:class:`ConfigError` (one line, exit 2) when the target refuses a model; warnings
        are logged."""
        for r in self.reports:
            warnings = r.of(self.table.version, "warning")
            if warnings:
                log.warning("%s: %d parser warning(s) for %s, e.g. %s (%s): %s; "
                            "--check-only lists them", r.name, len(warnings), self.label,
                            warnings[0].node, warnings[0].op, warnings[0].message)
        message = self.refusal()
        if message:
            raise ConfigError(message)


def _fix(report: ModelReport, nodes: Sequence[str], table: ParserTable) -> str:
    """What to do instead: the registry's twin without those nodes, a TensorRT version whose
    table accepts them, and the way to skip the check."""
    from ..int8_recipes import int8_source

    hints = []
    twin = int8_source(report.name)
    if twin != report.name:
        hints.append(f"Use {twin} (the same network with those nodes outside the graph)")
    newer = [v for v in report.versions if v != table.version
             and all(v in report.accepted_by(n) for n in nodes)]
    if newer:
        hints.append(f"build on TensorRT {newer[0].split('.')[0]} (the {newer[0]} table accepts "
                     "them)")
    hints.append("pass --parser-check none to leave the decision to TensorRT's own parser")
    text = ", or ".join(hints)
    return text[0].upper() + text[1:]


def parser_gate(opts: BuildOptions, target: str = "auto", required: bool = False,
                progress: bool = True) -> Optional[ParserGate]:
    """Check the ONNX files ``opts`` builds against TensorRT ``target`` (``auto``, a version, or
    ``none``: no check, None). Without the onnx package the check is skipped with a warning,
    unless ``required`` (``--check-only``): :class:`DependencyError`."""
    if target == "none":
        if required:
            raise ConfigError("--check-only runs the parser check: drop --parser-check none")
        return None
    if importlib.util.find_spec("onnx") is None:
        message = ("the parser check needs the onnx package: pip install onnx (or "
                   "'trt-pose-td[eval]')")
        if required:
            raise DependencyError(message)
        log.warning("%s; skipped, TensorRT's parser will have the last word", message)
        return None
    from .jobs import plan_jobs
    from .run import check_onnx_precision

    version = resolve_target(target)
    table = table_for(version)
    jobs = plan_jobs(opts, progress)
    for job in jobs:  # a Q/DQ file built without --int8-mode qdq: that error first
        check_onnx_precision(opts, job)
    reports = [check_model(job.onnx, name=job.spec.name, input_size=job.size) for job in jobs]
    return ParserGate(version, table, reports)
