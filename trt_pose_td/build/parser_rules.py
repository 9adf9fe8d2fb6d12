"""The per-node rules of the parser check: one function per check kind of
``data/onnx_trt_ops.json`` (``["const", 1, "K", "error"]`` -> :func:`_const`), plus the rules
every node gets (operator listed and supported, tensor types, the Q/DQ layer facts, INT64
clamping). :class:`GraphFacts` is what the rules know about a graph: constants, producers,
types and shapes (after ONNX shape inference), and values computed on ONNX Runtime.

A rule returns ``(level, message)`` pairs: ``error`` (the docs say this version refuses it),
``warning`` (the docs' condition cannot be proven from the file, or the sources disagree) or
``note`` (a restriction the docs state only in words, INT64 constants the parser clamps, a
computed value seen below its documented limit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np

from .parser_table import OpSupport, ParserTable, type_roles

Issue = Tuple[str, str]  # (level, message)
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class Finding:
    """One node a TensorRT version's parser would refuse (``error``) or might mishandle.
    node: the node's name (``TopK_534``; ``(model)`` for the opset); version: the table's key."""

    node: str
    op: str
    level: str
    message: str
    version: str


def type_name(elem_type: int) -> str:
    """ONNX element type -> the docs' spelling (``FP32``, ``INT64``, ``FP8``, ...)."""
    from onnx import TensorProto

    name = TensorProto.DataType.Name(elem_type)
    short = {"FLOAT": "FP32", "FLOAT16": "FP16", "BFLOAT16": "BF16", "FLOAT4E2M1": "FP4"}
    return short.get(name, "FP8" if name.startswith("FLOAT8") else name)


@dataclass
class GraphFacts:
    """What the rules read from a (shape-inferred) graph and its subgraphs.

    consts: name -> numpy value of every initializer and Constant output; producers: tensor ->
    (node name, op type); types: tensor -> ONNX element type; shapes: tensor -> dims (int, or
    None when symbolic); io: the main graph's input and output names; values: tensors computed
    on ONNX Runtime at a fixed input size (:func:`.parser_check.evaluate_tensors`), described by
    evaluated_at (``1x3x416x416``); reported: (version, constant) pairs already noted as clamped.
    """

    consts: Dict[str, np.ndarray] = field(default_factory=dict)
    producers: Dict[str, Tuple[str, str]] = field(default_factory=dict)
    types: Dict[str, int] = field(default_factory=dict)
    shapes: Dict[str, Tuple[Optional[int], ...]] = field(default_factory=dict)
    io: Set[str] = field(default_factory=set)
    values: Dict[str, np.ndarray] = field(default_factory=dict)
    evaluated_at: str = ""
    reported: Set[Tuple[str, str]] = field(default_factory=set)

    def origin(self, name: str) -> str:
        """``computed by Reshape_533 (Reshape)`` / ``the graph input x``."""
        if name in self.producers:
            node, op = self.producers[name]
            return f"computed by {node} ({op})"
        return f"the graph input {name}" if name in self.io else f"the tensor {name}"

    def rank(self, name: str) -> Optional[int]:
        shape = self.shapes.get(name)
        return None if shape is None else len(shape)


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _input(node: Any, index: int) -> str:
    return node.input[index] if len(node.input) > index else ""


# ---- check kinds of the JSON table (one function each) -------------------------------------

def _const(node: Any, facts: GraphFacts, index: int, what: str, level: str) -> List[Issue]:
    name = _input(node, index)
    if not name or name in facts.consts:
        return []
    if level == "error":
        return [("error", f"{what} is {facts.origin(name)}, not an initializer")]
    return [("warning", f"{what} is {facts.origin(name)}: it must fold to a build-time constant, "
                        "which cannot be checked before the build")]


def _const_below(node: Any, facts: GraphFacts, index: int, what: str, limit: int) -> List[Issue]:
    name = _input(node, index)
    if not name:
        return []
    if name in facts.consts:
        biggest = int(np.max(facts.consts[name]))
        return [("error", f"{what} = {biggest}: it must be below {limit}")] \
            if biggest >= limit else []
    if name not in facts.values:
        return [("warning", f"{what} is {facts.origin(name)}: it must stay below {limit}, which "
                            "cannot be checked without an input size")]
    biggest = int(np.max(facts.values[name]))
    seen = f"{what} is {facts.origin(name)}; for a blank {facts.evaluated_at} input {what} = " \
           f"{biggest}"
    if biggest >= limit:
        return [("error", f"{seen}: it must be below {limit}")]
    return [("note", f"{seen} (< {limit}); it must stay below {limit} for every input")]


def _attr_in(node: Any, facts: GraphFacts, attr: str, default: Any,
             allowed: Sequence[Any]) -> List[Issue]:
    value = _attr(node, attr, default)
    return [] if value in allowed else [("error", f"{attr}={value!r} (supported: "
                                                  f"{', '.join(map(str, allowed))})")]


def _attr_eq(node: Any, facts: GraphFacts, attr: str, default: Any, want: Any) -> List[Issue]:
    value = _attr(node, attr, default)
    return [] if value == want else [("error", f"{attr}={value!r} (must be {want!r})")]


def _spatial(node: Any, facts: GraphFacts, ranks: Sequence[int]) -> List[Issue]:
    kernel = _attr(node, "kernel_shape")
    rank = len(kernel) if kernel else facts.rank(node.input[0])
    if kernel is None and rank is not None:
        rank -= 2
    if rank is None or rank in ranks:
        return []
    return [("error", f"{rank}D pooling (supported: {' or '.join(f'{r}D' for r in ranks)})")]


def _dilations_one(node: Any, facts: GraphFacts) -> List[Issue]:
    dilations = _attr(node, "dilations") or []
    return [("error", f"dilations={list(dilations)} (must be empty or all ones)")] \
        if any(d != 1 for d in dilations) else []


def _no_output(node: Any, facts: GraphFacts, index: int, what: str) -> List[Issue]:
    used = len(node.output) > index and node.output[index]
    return [("error", f"the {what} output ({node.output[index]}) is unsupported")] if used else []


def _zero_point_zero(node: Any, facts: GraphFacts, index: int) -> List[Issue]:
    value = facts.consts.get(_input(node, index))
    if value is None or not np.any(value):
        return []
    return [("error", f"zero point {_input(node, index)} holds non-zero values (max |zp| = "
                      f"{int(np.max(np.abs(value.astype(np.int64))))}): symmetric only")]


def _rank(node: Any, facts: GraphFacts, index: int, low: int, high: int) -> List[Issue]:
    rank = facts.rank(_input(node, index))
    if rank is None or low <= rank <= high:
        return []
    return [("error", f"input {node.input[index]} has rank {rank} (supported: {low}..{high})")]


def _static(node: Any, facts: GraphFacts, index: int) -> List[Issue]:
    name = _input(node, index)
    shape = facts.shapes.get(name)
    if shape is None:
        return [("warning", f"the shape of {name} is unknown; it must be static")]
    return [] if all(d is not None for d in shape) else \
        [("error", f"{name} has dynamic dimensions {list(shape)}")]


def _einsum_plain(node: Any, facts: GraphFacts) -> List[Issue]:
    equation = str(_attr(node, "equation", "")).replace(" ", "")
    if "..." in equation:
        return [("error", f"equation {equation!r} uses an ellipsis")]
    terms = equation.split("->")[0].split(",")
    if any(len(set(t)) != len(t) for t in terms):
        return [("error", f"equation {equation!r} takes a diagonal (a repeated index)")]
    return []


def _rnn_same_activations(node: Any, facts: GraphFacts) -> List[Issue]:
    acts = [a.decode() if isinstance(a, bytes) else a for a in _attr(node, "activations", [])]
    half = len(acts) // 2
    if _attr(node, "direction", "forward") == "bidirectional" and acts[:half] != acts[half:]:
        return [("error", f"bidirectional with different activations {acts[:half]} / "
                          f"{acts[half:]}")]
    return []


def _ignored_attr(node: Any, facts: GraphFacts, attr: str) -> List[Issue]:
    return [("warning", f"{attr} is ignored by TensorRT")] if _attr(node, attr) is not None \
        else []


def _const_false(node: Any, facts: GraphFacts, index: int, what: str) -> List[Issue]:
    name = _input(node, index)
    if not name:
        return []
    if name not in facts.consts:
        return [("error", f"{what} is {facts.origin(name)}, not an initializer")]
    return [("error", f"{what} is True")] if bool(np.any(facts.consts[name])) else []


def _no_attr(node: Any, facts: GraphFacts, names: Sequence[str]) -> List[Issue]:
    given = [a.name for a in node.attribute if a.name in names]
    return [("error", f"attribute {', '.join(given)} is unsupported")] if given else []


def _resize_axes_iota(node: Any, facts: GraphFacts) -> List[Issue]:
    axes = _attr(node, "axes")
    if axes is None or not _input(node, 2):
        return []
    rank = facts.rank(node.input[0])
    if rank is not None and list(axes) == list(range(rank)):
        return []
    return [("error", f"axes={list(axes)} with a scales input (must be 0..rank-1)")]


def _note(node: Any, facts: GraphFacts) -> List[Issue]:
    return [("note", "restriction not checked automatically")]


CHECKS: Dict[str, Callable[..., List[Issue]]] = {
    "const": _const, "const_below": _const_below, "attr_in": _attr_in, "attr_eq": _attr_eq,
    "spatial": _spatial, "dilations_one": _dilations_one, "no_output": _no_output,
    "zero_point_zero": _zero_point_zero, "rank": _rank, "static": _static,
    "einsum_plain": _einsum_plain, "rnn_same_activations": _rnn_same_activations,
    "ignored_attr": _ignored_attr, "const_false": _const_false, "no_attr": _no_attr,
    "resize_axes_iota": _resize_axes_iota, "note": _note,
}


# ---- rules every node gets ---------------------------------------------------------------

def _as_seen(type_: str, table: ParserTable) -> str:
    return table.cast.get(type_, type_)


def _types(node: Any, op: OpSupport, facts: GraphFacts, table: ParserTable) -> List[Issue]:
    issues: List[Issue] = []
    allowed = set(table.native) | set(table.cast)
    for name in list(node.input) + list(node.output):  # every tensor: a type the parser imports
        if name and name in facts.types:
            t = type_name(facts.types[name])
            if t not in allowed and not (t in table.io_only and name in facts.io):
                where = " inside the network" if t in table.io_only else ""
                issues.append(("error", f"{name} is {t}{where}: not a type TensorRT "
                                        f"{table.version} imports"))
    kind, index = type_roles().get(node.op_type, ("input", 0))
    tensors = node.input if kind == "input" else node.output if kind == "output" else []
    name = tensors[index] if op.types and len(tensors) > index else ""
    if name and name in facts.types and not issues:
        t = type_name(facts.types[name])
        at_io = t in table.io_only and name in facts.io  # e.g. a UINT8 network input
        if _as_seen(t, table) not in op.types and not at_io:
            cast = f" (imported as {_as_seen(t, table)})" if t in table.cast else ""
            issues.append(("error", f"{name} is {t}{cast}; the table lists "
                                    f"{', '.join(op.types)}"))
    return issues


def _qdq(node: Any, facts: GraphFacts, table: ParserTable) -> List[Issue]:
    """The Q/DQ layer facts of the TensorRT API docs (table.qdq)."""
    issues: List[Issue] = []
    scale, zero = _input(node, 1), _input(node, 2)
    for name, what in ((scale, "scale"), (zero, "zero point")):
        if name and name not in facts.consts:
            issues.append(("error", f"{what} is {facts.origin(name)}: must be a build-time "
                                    "constant"))
    if zero and zero in facts.types:
        t = type_name(facts.types[zero])
        if t not in table.qdq["zero_point_types"]:
            issues.append(("error", f"zero point {zero} is {t} (TensorRT {table.version} "
                                    f"quantizes to {', '.join(table.qdq['zero_point_types'])})"))
    value = facts.consts.get(scale)
    if value is not None and value.ndim > 1:
        issues.append(("error", f"scale {scale} has shape {list(value.shape)}: must be a scalar "
                                "or 1-D"))
    elif value is not None and value.size > 1:
        axis = int(_attr(node, "axis", 1))
        shape = facts.shapes.get(node.input[0])
        dim = shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None
        if dim is not None and dim != value.size:
            issues.append(("error", f"per-axis scale has {value.size} values but axis {axis} of "
                                    f"{node.input[0]} has {dim}"))
    return issues


def _clamped(node: Any, facts: GraphFacts, version: str) -> List[Issue]:
    """INT64 constants beyond INT32 (reported once per constant and version)."""
    for name in node.input:
        value = facts.consts.get(name)
        if value is None or value.dtype != np.int64 or not value.size or \
                (version, name) in facts.reported:
            continue
        if int(np.max(np.abs(value.astype(np.float64)))) > INT32_MAX:
            facts.reported.add((version, name))
            return [("note", f"INT64 constant {name} holds values beyond INT32: the parser casts "
                             "it to INT32, clamping them")]
    return []


def node_issues(node: Any, facts: GraphFacts, table: ParserTable) -> Iterator[Issue]:
    """Everything ``table``'s TensorRT would refuse (or warn about) in ``node``."""
    if node.domain not in ("", "ai.onnx"):
        yield ("error", f"custom operator {node.domain}.{node.op_type}: TensorRT imports it "
                        "only through a plugin of that name (none ships with this project)")
        return
    op = table.ops.get(node.op_type)
    if op is None:
        yield ("error", f"{node.op_type} is not in the TensorRT {table.version} operator table "
                        "(no built-in importer: it would need a plugin)")
        return
    if op.supported == "N":
        yield ("error", f"{node.op_type} is listed as unsupported (N)")
        return
    if op.supported == "?":
        yield ("warning", op.restrictions)
    yield from _types(node, op, facts, table)
    for kind, *params in op.checks:
        yield from CHECKS[kind](node, facts, *params)
    if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
        yield from _qdq(node, facts, table)
    if "INT64" in table.cast:
        yield from _clamped(node, facts, table.version)


def opset_issue(opset: int, table: ParserTable) -> Optional[Issue]:
    """The model's default-domain opset against the table's range."""
    low, high = table.opset
    if opset > high or (low is not None and opset < low):
        span = f"{low} to {high}" if low is not None else f"up to {high}"
        return ("error", f"opset {opset}: TensorRT {table.version} supports {span}")
    return None
