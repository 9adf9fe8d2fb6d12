"""Reading and rewiring Q/DQ ONNX graphs: the one producer walk the Q/DQ code shares.

A tensor is *Q/DQ'd* when a ``DequantizeLinear`` produces it, usually from a
``QuantizeLinear`` of the float tensor (``x -> Q -> DQ -> Conv``); a weight may instead be
stored as int8 and dequantized directly. :class:`Producers` answers "which Q/DQ pair feeds this
tensor" for every caller; :func:`rewire_to_float` bypasses such pairs and drops the ones
nothing reads any more. Everything works on ``onnx.ModelProto`` / ``GraphProto`` objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, require

#: Aliases accepted in ``exclude_nodes``: the first / last Conv in graph order.
FIRST_CONV, LAST_CONV = "@first-conv", "@last-conv"
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


class QdqPair(NamedTuple):
    """The Q/DQ nodes in front of a tensor: ``dq`` produces it; ``q`` (or None, for a weight
    stored as int8) produces the DQ's input."""

    q: Optional[Any]
    dq: Any

    @property
    def float_input(self) -> Optional[str]:
        """The float tensor quantized by the pair (None when there is no QuantizeLinear)."""
        return None if self.q is None else str(self.q.input[0])


class Producers:
    """Tensor name -> the node that writes it, for one graph (built once per walk)."""

    def __init__(self, graph: Any) -> None:
        self._by_output: Dict[str, Any] = {o: n for n in graph.node for o in n.output}

    def get(self, tensor: str) -> Optional[Any]:
        return self._by_output.get(tensor)

    def qdq(self, tensor: str) -> Optional[QdqPair]:
        """The Q/DQ pair that produces ``tensor``, or None when no DequantizeLinear does."""
        dq = self._by_output.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        q = self._by_output.get(dq.input[0])
        return QdqPair(q if q is not None and q.op_type == "QuantizeLinear" else None, dq)


def opset(model: Any) -> int:
    """The model's default-domain opset (0 when it declares none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def conv_nodes(model: Any) -> List[str]:
    """Names of the Conv nodes of an ``onnx.ModelProto`` in graph order."""
    return [n.name for n in model.graph.node if n.op_type == "Conv"]


def quantized_convs(model: Any) -> List[str]:
    """Convs of a Q/DQ model whose activation input comes from a DequantizeLinear."""
    prod = Producers(model.graph)
    return [n.name for n in model.graph.node
            if n.op_type == "Conv" and prod.qdq(n.input[0]) is not None]


def resolve_excludes(model: Any, exclude_nodes: Sequence[str]) -> List[str]:
    """Node names to keep in float; ``@first-conv`` / ``@last-conv`` name the first/last Conv."""
    convs = conv_nodes(model)
    names = {n.name for n in model.graph.node}
    out = []
    for name in exclude_nodes:
        if name in (FIRST_CONV, LAST_CONV):
            if not convs:
                raise ConfigError(f"{name}: the model has no Conv node")
            out.append(convs[0] if name == FIRST_CONV else convs[-1])
        elif name in names:
            out.append(name)
        else:
            raise ConfigError(f"no node named {name!r} to keep in float")
    return out


def rewire_to_float(graph: Any, inputs_of: Callable[[Any], Iterable[int]]) -> int:
    """For every node, point each input index in ``inputs_of(node)`` that a full Q/DQ pair
    feeds at the float tensor in front of the pair (in place); then drop Q/DQ nodes nothing
    reads. Returns how many inputs were rewired."""
    prod = Producers(graph)
    count = 0
    for node in graph.node:
        for i in inputs_of(node):
            pair = prod.qdq(node.input[i])
            if pair is not None and pair.float_input is not None:
                node.input[i] = pair.float_input
                count += 1
    _drop_unused(graph)
    return count


def bypass_convs(model: Any, convs: Sequence[str]) -> Any:
    """A copy of a Q/DQ ``onnx.ModelProto`` whose Convs ``convs`` read float inputs again.

    Rewires each Conv's activation and weight inputs from ``DequantizeLinear(QuantizeLinear(x))``
    to ``x`` and drops Q/DQ nodes nothing reads any more.
    """
    onnx = require("onnx", "eval")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    wanted = set(convs)
    rewire_to_float(out.graph, lambda n: range(min(2, len(n.input)))
                    if n.op_type == "Conv" and n.name in wanted else ())
    return out


def unquantize_other_consumers(model: Any, op_types: Sequence[str],
                               keep_float: Sequence[str] = ()) -> int:
    """Rewire every consumer of a ``DequantizeLinear`` that is not one of ``op_types`` (a
    residual ``Add``, a ``Concat``) or is named in ``keep_float`` to the float tensor in front
    of the Q/DQ pair, in place.

    ONNX Runtime quantizes a tensor for all its readers once one reader is quantized; TensorRT's
    placement (and this package's intent) keeps Q/DQ in front of the weighted layers only.
    Returns how many inputs were rewired.
    """
    wanted, floats = set(op_types), set(keep_float)

    def inputs_of(node: Any) -> Iterable[int]:
        if node.op_type in QDQ_OPS or (node.op_type in wanted and node.name not in floats):
            return ()
        return range(len(node.input))

    return rewire_to_float(model.graph, inputs_of)


def _drop_unused(graph: Any) -> None:
    keep_outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | keep_outputs
        dead = [n for n in graph.node if n.op_type in QDQ_OPS
                and not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def activation_groups(model: Any) -> Dict[str, List[Tuple[Any, Any]]]:
    """Activation scale initializer -> ``[(Q node, Conv node)]`` for the Convs fed by a Q/DQ
    pair whose QuantizeLinear and DequantizeLinear share that scale."""
    prod = Producers(model.graph)
    groups: Dict[str, List[Tuple[Any, Any]]] = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        pair = prod.qdq(node.input[0])
        if pair is None or pair.q is None or pair.q.input[1] != pair.dq.input[1]:
            continue
        groups.setdefault(pair.q.input[1], []).append((pair.q, node))
    return groups


def qdq_summary(path: Path) -> Dict[str, Any]:
    """What a Q/DQ file holds: counts of Q/DQ nodes, Convs with a DQ'd weight and activation,
    per-channel weight scales, nonzero zero points, and the provenance metadata."""
    onnx = require("onnx", "eval")
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    prod = Producers(graph)
    inits = {i.name: i for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    weights = {c.name: prod.qdq(c.input[1]) for c in convs}
    quantized = [c for c in convs
                 if prod.qdq(c.input[0]) is not None and weights[c.name] is not None]
    per_channel = 0
    for c in quantized:
        scale = inits.get(weights[c.name].dq.input[1])  # type: ignore[union-attr]
        if scale is not None and numpy_helper.to_array(scale).size > 1:
            per_channel += 1
    zero_points = [numpy_helper.to_array(inits[n.input[2]]) for n in graph.node
                   if n.op_type in QDQ_OPS and len(n.input) > 2 and n.input[2] in inits]
    return {
        "quantize": sum(n.op_type == "QuantizeLinear" for n in graph.node),
        "dequantize": sum(n.op_type == "DequantizeLinear" for n in graph.node),
        "convs": len(convs), "quantized_convs": len(quantized),
        "per_channel_convs": per_channel,
        "nonzero_zero_points": int(sum(int(np.any(z != 0)) for z in zero_points)),
        "int8_zero_points": all(z.dtype == np.int8 for z in zero_points),
        "opset": opset(model),
        "metadata": {p.key: p.value for p in model.metadata_props},
    }
