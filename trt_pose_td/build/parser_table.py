"""What the TensorRT ONNX parser accepts, per TensorRT version: ``data/onnx_trt_ops.json`` read
into :class:`ParserTable` objects, the table that stands for a TensorRT version, and the Markdown
rendering in docs/engines.md.

The JSON holds facts from onnx-tensorrt's own ``docs/operators.md`` (one commit per table, named in
its ``source``) and the TensorRT Python API's Q/DQ layer docs; nothing here imports TensorRT or
onnx. :mod:`.parser_check` walks a graph against these tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from ..errors import ConfigError

TABLE_FILE = Path(__file__).resolve().parent.parent / "data" / "onnx_trt_ops.json"


@dataclass(frozen=True)
class OpSupport:
    """One row of operators.md: supported ``Y`` / ``N`` / ``?`` (the sources disagree), the
    supported types (``FP32``, ``INT32``, ...; empty: the doc lists none), the restriction text
    and the checks that test it (``[kind, *params]``, see :mod:`.parser_rules`)."""

    op: str
    supported: str
    types: Tuple[str, ...] = ()
    restrictions: str = ""
    checks: Tuple[Tuple[Any, ...], ...] = ()


@dataclass(frozen=True)
class ParserTable:
    """The parser of one TensorRT version as its docs describe it.

    version: the table's key (``"8.5"``); opset: (min or None, max) of the default ONNX domain;
    native / cast / io_only: tensor types imported as they are, cast down (``INT64`` -> ``INT32``)
    or allowed at network inputs and outputs only; qdq: the Q/DQ layer facts
    (``zero_point_types``, ``facts``, ``source``).
    """

    version: str
    source: Mapping[str, str]
    opset: Tuple[Optional[int], int]
    native: Tuple[str, ...]
    cast: Mapping[str, str]
    io_only: Tuple[str, ...]
    ops: Mapping[str, OpSupport]
    notes: Tuple[str, ...] = ()
    qdq: Mapping[str, Any] = field(default_factory=dict)
    jetpack: str = ""

    @property
    def key(self) -> Tuple[int, ...]:
        return version_key(self.version)

    def cite(self) -> str:
        """``onnx/onnx-tensorrt docs/operators.md @ 0f305925``."""
        s = self.source
        return f"{s['repository']} {s['file']} @ {s['commit'][:8]}"


def version_key(text: str) -> Tuple[int, ...]:
    """``"10.3.0.26"`` -> ``(10, 3, 0, 26)`` (:class:`ConfigError` if not a version)."""
    from packaging.version import InvalidVersion, Version

    try:
        return tuple(Version(str(text)).release)
    except InvalidVersion:
        raise ConfigError(f"not a TensorRT version: {text!r} (expected e.g. 8.5 or 10.3)"
                          ) from None


def _op(name: str, row: Mapping[str, Any]) -> OpSupport:
    return OpSupport(name, row["supported"], tuple(row.get("types", ())),
                     row.get("restrictions", ""),
                     tuple(tuple(c) for c in row.get("checks", ())))


@lru_cache(maxsize=None)
def load_tables(path: Path = TABLE_FILE) -> Dict[str, ParserTable]:
    """Every table in the JSON, by version key, oldest first."""
    doc = json.loads(Path(path).read_text())
    tables = {}
    for version, t in doc["tables"].items():
        types = t["types"]
        tables[version] = ParserTable(
            version=version, source=dict(t["source"]),
            opset=(t["opset"]["min"], t["opset"]["max"]), native=tuple(types["native"]),
            cast=dict(types.get("cast", {})), io_only=tuple(types.get("io_only", ())),
            ops={name: _op(name, row) for name, row in t["ops"].items()},
            notes=tuple(t.get("notes", ())), qdq=dict(doc["qdq"][version]),
            jetpack=t.get("jetpack", ""))
    return dict(sorted(tables.items(), key=lambda kv: version_key(kv[0])))


@lru_cache(maxsize=None)
def type_roles(path: Path = TABLE_FILE) -> Dict[str, Tuple[str, int]]:
    """Operator -> (``input`` | ``output`` | ``none``, index): the tensor whose type the
    'Supported Types' column describes (``("input", 0)`` for operators not listed)."""
    roles = json.loads(Path(path).read_text())["type_roles"]
    out = {}
    for op, text in roles.items():
        kind, _, index = text.partition(" ")
        out[op] = (kind, int(index or 0))
    return out


def oldest() -> ParserTable:
    """The table of the oldest TensorRT the project supports (8.5, JetPack 5)."""
    return next(iter(load_tables().values()))


def table_for(version: str) -> ParserTable:
    """The table that stands for TensorRT ``version``: the newest table of the same major version
    at or below it, else the oldest table of that major version (10.3 -> the 10.8 table: no 10.3
    doc was found), else the newest table below it."""
    want = version_key(version)
    tables = list(load_tables().values())
    same = [t for t in tables if t.key[0] == want[0]]
    below = [t for t in same if t.key <= want] or (same[:1] if same else [])
    if not below:
        below = [t for t in tables if t.key <= want]
    if not below:
        raise ConfigError(f"TensorRT {version} is older than every parser table "
                          f"({', '.join(load_tables())}); the project needs TensorRT >= 8.5")
    return below[-1]


def _cell(op: Optional[OpSupport]) -> str:
    if op is None:
        return "not listed"
    if op.supported == "N":
        return "N"
    text = "Y" if op.supported == "Y" else "disputed"
    if op.types:
        text += f" ({', '.join(op.types)})"
    return text


def render_markdown(versions: Sequence[str] = ()) -> str:
    """The operator table of docs/engines.md: one row per operator, one column per version
    (support and types), then the restrictions per version, then the sources."""
    tables = [load_tables()[v] for v in versions] if versions else list(load_tables().values())
    names = sorted({op for t in tables for op in t.ops}, key=str.lower)
    head = ["operator"] + [f"TensorRT {t.version}" for t in tables] + ["restrictions"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name in names:
        cells = [f"`{name}`"] + [_cell(t.ops.get(name)) for t in tables]
        notes = []
        for t in tables:
            op = t.ops.get(name)
            if op is not None and op.restrictions:
                notes.append(f"{t.version}: {op.restrictions}")
        cells.append("<br>".join(notes).replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for t in tables:
        s = t.source
        lo = f"{t.opset[0]} to " if t.opset[0] else "up to "
        lines.append(f"- **TensorRT {t.version}** ({t.jetpack}): [{s['repository']} "
                     f"`{s['file']}` at `{s['commit'][:12]}`]({s['url']}), {s['release']}; "
                     f"opset {lo}{t.opset[1]}. Also read: {s['also_read']}.")
        for note in t.notes:
            lines.append(f"  - {note}")
        lines.append(f"  - Q/DQ: {t.qdq['source']}: " + "; ".join(t.qdq["facts"]) + ".")
    return "\n".join(lines) + "\n"

