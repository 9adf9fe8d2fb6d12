"""Will TensorRT's ONNX parser take this model? Checked without TensorRT, against the operator
tables of onnx-tensorrt's own docs (:mod:`.parser_table`).

:func:`check_model` walks every node of an ONNX graph (subgraphs included) and names each one a
TensorRT version would refuse: an operator it does not import, an opset beyond its range, a tensor
type it lacks, a restriction of its docs broken (TopK whose ``K`` is computed instead of an
initializer on 8.5, Resize modes, Q/DQ zero points, ...). Values the docs limit but the file only
computes (TopK's ``K`` on 10.x) are evaluated on ONNX Runtime at the model's input size when one
is known. :func:`parser_gate` runs it in ``trt-pose-td build`` before any TensorRT work.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, TrtPoseError
from .parser_rules import Finding, GraphFacts, node_issues, opset_issue
from .parser_table import ParserTable, load_tables, oldest, version_key

log = logging.getLogger(__name__)


@dataclass
class ModelReport:
    """The findings of one ONNX file for every table version. name: a registry name or the file
    name; checked: how many nodes of each operator were walked (subgraphs included)."""

    name: str
    path: Path
    opset: int
    versions: Tuple[str, ...]
    findings: List[Finding] = field(default_factory=list)
    checked: Counter = field(default_factory=Counter)
    evaluated_at: str = ""

    def of(self, version: str, level: str = "error") -> List[Finding]:
        return [f for f in self.findings if f.version == version and f.level == level]

    def passes(self, version: str) -> bool:
        """No node this version's parser would refuse."""
        return not self.of(version)

    def accepted_by(self, node: str) -> List[str]:
        """The table versions with no error on ``node``."""
        refused = {f.version for f in self.findings if f.node == node and f.level == "error"}
        return [v for v in self.versions if v not in refused]


def _value(attr: Any) -> Optional[np.ndarray]:
    """A Constant node's value attribute as an array."""
    from onnx import helper, numpy_helper

    value = helper.get_attribute_value(attr)
    if attr.name == "value":
        return numpy_helper.to_array(value)
    if attr.name in ("value_float", "value_floats"):
        return np.asarray(value, np.float32)
    if attr.name in ("value_int", "value_ints"):
        return np.asarray(value, np.int64)
    return None


def _collect(graph: Any, facts: GraphFacts, prefix: str, nodes: List[Tuple[str, Any]]) -> None:
    """Fill ``facts`` from ``graph`` and its subgraphs; append (display name, node)."""
    from onnx import AttributeProto, numpy_helper

    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        t = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and t.elem_type:
            facts.types[vi.name] = t.elem_type
            if t.HasField("shape"):
                facts.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                              for d in t.shape.dim)
    for init in graph.initializer:
        facts.consts[init.name] = numpy_helper.to_array(init)
        facts.types[init.name] = init.data_type
        facts.shapes[init.name] = tuple(init.dims)
    for i, node in enumerate(graph.node):
        name = f"{prefix}{node.name or f'{node.op_type}_{i}'}"
        nodes.append((name, node))
        for out in node.output:
            facts.producers[out] = (name, node.op_type)
        if node.op_type == "Constant" and node.attribute and node.output:
            value = _value(node.attribute[0])
            if value is not None:
                facts.consts[node.output[0]] = value
        for attr in node.attribute:
            subs = [attr.g] if attr.type == AttributeProto.GRAPH else \
                list(attr.graphs) if attr.type == AttributeProto.GRAPHS else []
            for sub in subs:
                _collect(sub, facts, f"{name}/{attr.name}/", nodes)


def _default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _limited_inputs(nodes: Sequence[Tuple[str, Any]], facts: GraphFacts,
                    tables: Sequence[ParserTable]) -> List[str]:
    """Computed tensors some table limits by value (``const_below`` checks)."""
    names = []
    for _, node in nodes:
        for table in tables:
            op = table.ops.get(node.op_type)
            for kind, *params in (op.checks if op else ()):
                index = params[0] if kind == "const_below" else None
                if index is not None and len(node.input) > index:
                    name = node.input[index]
                    if name and name not in facts.consts and name not in names:
                        names.append(name)
    return names


def evaluate_tensors(model: Any, names: Sequence[str], input_size: Optional[Tuple[int, int]]
                     ) -> Tuple[Dict[str, np.ndarray], str]:
    """Compute tensors ``names`` on ONNX Runtime (CPU) for one zero image of ``input_size``
    (W, H); a graph with a fully static input needs no size. Returns ({} , "") when the model
    has several inputs, no size is known or ONNX Runtime is missing or fails."""
    from onnx import helper

    inits = {i.name for i in model.graph.initializer}
    feeds = [i for i in model.graph.input if i.name not in inits]
    if not names or len(feeds) != 1 or importlib.util.find_spec("onnxruntime") is None:
        return {}, ""
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in feeds[0].type.tensor_type.shape.dim]
    if len(dims) == 4 and input_size is not None:
        dims = [dims[0] or 1, dims[1] or 3, int(input_size[1]), int(input_size[0])]
    if len(dims) != 4 or any(d is None for d in dims[1:]):
        return {}, ""
    shape = [dims[0] or 1] + dims[1:]
    import onnxruntime as ort

    probe = type(model)()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    try:
        session = ort.InferenceSession(probe.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        values = session.run(list(names), {feeds[0].name: np.zeros(shape, np.float32)})
    except Exception as exc:  # ORT raises its own exception types; the check then warns
        log.debug("could not evaluate %s: %s", ", ".join(names), exc)
        return {}, ""
    return dict(zip(names, (np.asarray(v) for v in values))), "x".join(map(str, shape))


def check_model(path: Path, versions: Sequence[str] = (), name: str = "",
                input_size: Optional[Tuple[int, int]] = None) -> ModelReport:
    """Check the ONNX file ``path`` against the tables ``versions`` (default: all of them).

    input_size: (W, H) of the image input, for values the docs limit but the graph computes
    (TopK's K on 10.x): evaluated on ONNX Runtime at that size. :class:`ConfigError` when the
    file cannot be read as ONNX.
    """
    from ..errors import require

    onnx = require("onnx", "eval")
    tables = [load_tables()[v] for v in versions] if versions else list(load_tables().values())
    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends: the file is not ONNX
        raise ConfigError(f"{path}: not a readable ONNX file ({exc})") from exc
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # shape inference is best effort: types come from value_info
        log.debug("shape inference failed on %s: %s", path.name, exc)
        inferred = model
    facts = GraphFacts(io={v.name for v in list(model.graph.input) + list(model.graph.output)})
    nodes: List[Tuple[str, Any]] = []
    _collect(inferred.graph, facts, "", nodes)
    facts.values, facts.evaluated_at = evaluate_tensors(
        model, _limited_inputs(nodes, facts, tables), input_size)
    report = ModelReport(name or path.name, path, _default_opset(model),
                         tuple(t.version for t in tables), evaluated_at=facts.evaluated_at)
    report.checked.update(node.op_type for _, node in nodes)
    for table in tables:
        issue = opset_issue(report.opset, table)
        if issue:
            report.findings.append(Finding("(model)", "opset", issue[0], issue[1], table.version))
        for display, node in nodes:
            for level, message in node_issues(node, facts, table):
                report.findings.append(Finding(display, node.op_type, level, message,
                                               table.version))
    return report


def _tensorrt_installed() -> bool:
    """Whether ``import tensorrt`` can work, without importing it (a module already imported,
    e.g. a test's stand-in with no ``__spec__``, counts)."""
    if "tensorrt" in sys.modules:
        return sys.modules["tensorrt"] is not None
    try:
        return importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):
        return False


def resolve_target(text: str) -> str:
    """``auto``: the installed TensorRT's version (read before any network, parser or builder
    exists), else the oldest supported (8.5, what JetPack 5 builds with); or a version."""
    if text != "auto":
        version_key(text)
        return text
    if not _tensorrt_installed():
        return oldest().version
    from ..engines.trt_api import detect

    try:
        return str(detect()[1].version)
    except TrtPoseError as exc:
        log.warning("parser check: %s; checking against TensorRT %s", exc, oldest().version)
        return oldest().version


def finding_rows(reports: Sequence[ModelReport], levels: Sequence[str] = ("error", "warning")
                 ) -> Iterator[Tuple[str, ...]]:
    """(model, TensorRT, node, op, level, finding, accepted by) per finding."""
    for r in reports:
        for f in r.findings:
            if f.level in levels:
                yield (r.name, f.version, f.node, f.op, f.level, f.message,
                       ", ".join(r.accepted_by(f.node)) or "none")
