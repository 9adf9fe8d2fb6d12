"""Which convolutions of a Q/DQ model lose the most accuracy in int8 (measured, on train data).

Naive per-tensor int8 activations collapse models whose channels differ by orders of magnitude
(RTMDet-nano: one tensor's channel maxima span 0.3 .. 121). The cure that keeps TensorRT's
explicit quantization is to keep the few convolutions that suffer most in higher precision.
:func:`conv_sensitivity` ranks them: for each quantized Conv, the output error of the model in
which *only that Conv* is quantized (Q/DQ of every other Conv bypassed), on calibration tensors.
:func:`pick_float_convs` then keeps the worst in float until the whole model's error is small.

The error of a model is the sum over outputs of ``||y - y_fp32||^2 / ||y_fp32 - mean||^2``
(normalised MSE). Everything runs on ONNX Runtime (CPU) with the Q/DQ graph simulated in float.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import require
from .progress import track

log = logging.getLogger(__name__)


def bypass_convs(model: Any, convs: Sequence[str]) -> Any:
    """A copy of a Q/DQ ``onnx.ModelProto`` whose Convs ``convs`` read float inputs again.

    Rewires each Conv's activation and weight inputs from ``DequantizeLinear(QuantizeLinear(x))``
    to ``x`` and drops Q/DQ nodes nothing reads any more.
    """
    onnx = require("onnx", "eval")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    producers = {o: n for n in graph.node for o in n.output}
    wanted = set(convs)
    for node in graph.node:
        if node.op_type != "Conv" or node.name not in wanted:
            continue
        for i in range(min(2, len(node.input))):
            dq = producers.get(node.input[i])
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
    _drop_unused(graph)
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
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    wanted, floats = set(op_types), set(keep_float)
    count = 0
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or (
                node.op_type in wanted and node.name not in floats):
            continue
        for i, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
                count += 1
    _drop_unused(graph)
    return count


def _drop_unused(graph: Any) -> None:
    keep_outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | keep_outputs
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def _session(model: Any) -> Any:
    ort = require("onnxruntime", "ort")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # simulate the Q/DQ graph in float (what TensorRT computes, up to int32 accumulation),
    # not ONNX Runtime's own int8 kernels
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def run_model(model: Any, input_name: str, data: np.ndarray, batch: int = 8
              ) -> Dict[str, np.ndarray]:
    """All outputs of ``model`` (an ``onnx.ModelProto``) on ``data``, batched, concatenated."""
    sess = _session(model)
    names = [o.name for o in sess.get_outputs()]
    step = 1 if sess.get_inputs()[0].shape[0] == 1 else batch
    parts: Dict[str, List[np.ndarray]] = {n: [] for n in names}
    for start in range(0, len(data), step):
        for name, value in zip(names, sess.run(names, {input_name: data[start:start + step]})):
            parts[name].append(np.asarray(value))
    return {n: np.concatenate(v) for n, v in parts.items()}


def output_error(outputs: Dict[str, np.ndarray], reference: Dict[str, np.ndarray]) -> float:
    """Sum over float outputs of the normalised MSE against ``reference``."""
    total = 0.0
    for name, ref in reference.items():
        if not np.issubdtype(ref.dtype, np.floating) or ref.size == 0:
            continue
        ref64 = ref.astype(np.float64)
        denom = float(((ref64 - ref64.mean()) ** 2).sum()) or 1.0
        total += float(((outputs[name].astype(np.float64) - ref64) ** 2).sum()) / denom
    return total


def quantized_convs(model: Any) -> List[str]:
    """Convs of a Q/DQ model whose activation input comes from a DequantizeLinear."""
    producers = {o: n for n in model.graph.node for o in n.output}
    return [n.name for n in model.graph.node if n.op_type == "Conv"
            and getattr(producers.get(n.input[0]), "op_type", "") == "DequantizeLinear"]


def conv_sensitivity(qdq_path: Path, float_path: Path, input_name: str, data: np.ndarray,
                     quiet: bool = True) -> List[Tuple[str, float]]:
    """(conv name, error with only that conv in int8), worst first."""
    onnx = require("onnx", "eval")
    qdq = onnx.load(str(qdq_path))
    reference = run_model(onnx.load(str(float_path)), input_name, data)
    convs = quantized_convs(qdq)
    scores = []
    for conv in track(convs, "sensitivity", "conv", quiet):
        only = bypass_convs(qdq, [c for c in convs if c != conv])
        scores.append((conv, output_error(run_model(only, input_name, data), reference)))
    return sorted(scores, key=lambda t: -t[1])


def pick_float_convs(qdq_path: Path, float_path: Path, input_name: str, data: np.ndarray,
                     ranking: Sequence[Tuple[str, float]], target: float,
                     steps: Sequence[int] = (0, 1, 2, 4, 8, 12, 16, 24, 32, 48, 64),
                     ) -> Tuple[List[str], List[Tuple[int, float]]]:
    """Keep the worst ``k`` convs of ``ranking`` in float, for growing ``k`` in ``steps``, until
    the whole model's error is <= ``target``. Returns (convs to keep float, [(k, error)])."""
    onnx = require("onnx", "eval")
    qdq = onnx.load(str(qdq_path))
    reference = run_model(onnx.load(str(float_path)), input_name, data)
    curve: List[Tuple[int, float]] = []
    chosen: Optional[List[str]] = None
    for k in sorted({k for k in steps if k < len(ranking)} | {len(ranking)}):
        names = [c for c, _ in ranking[:k]]
        err = output_error(run_model(bypass_convs(qdq, names), input_name, data), reference)
        curve.append((k, err))
        log.info("%d convs in float: error %.4f", k, err)
        if err <= target:
            chosen = names
            break
    if chosen is None:
        chosen = [c for c, _ in ranking[:curve[-1][0]]] if curve else []
    return chosen, curve
