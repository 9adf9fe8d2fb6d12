"""``mse`` calibration: per-tensor activation scales that minimise each Conv's output error.

MinMax keeps every outlier and so crushes the small channels of a tensor whose channel ranges
differ by orders of magnitude; entropy and percentile clip by the histogram alone. This refines
a calibrated Q/DQ model instead: for every activation Q/DQ pair in front of Convs, try the
calibrated scale times a few factors <= 1 and keep the one whose Conv outputs (with the int8
weights) are closest to the float Convs' on calibration tensors — the "mse" calibrator of
NVIDIA's quantization toolkits, done layer by layer on ONNX Runtime.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from .errors import require
from .progress import track

log = logging.getLogger(__name__)

#: Multipliers of the calibrated (MinMax) scale that are tried.
FACTORS = (1.0, 0.8, 0.65, 0.5, 0.4, 0.3, 0.22, 0.16, 0.11)


def _fake_quant(x: np.ndarray, scale: np.ndarray, qmin: int, axis: int = -1) -> np.ndarray:
    s = scale if axis < 0 else scale.reshape([-1] + [1] * (x.ndim - 1 - axis))
    return (np.clip(np.round(x / s), qmin, 127) * s).astype(np.float32)


class _ConvRunner:
    """One Conv (float weights already int8-rounded) as a tiny ONNX Runtime session."""

    def __init__(self, node: Any, weight: np.ndarray, bias: Any) -> None:
        onnx = require("onnx", "eval")
        from onnx import TensorProto, helper, numpy_helper

        ort = require("onnxruntime", "ort")
        inits = [numpy_helper.from_array(weight, "w")]
        inputs = ["x", "w"]
        if bias is not None:
            inits.append(numpy_helper.from_array(bias, "b"))
            inputs.append("b")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        graph = helper.make_graph(
            [helper.make_node("Conv", inputs, ["y"], **attrs)], "conv",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = min(model.ir_version, 8)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(model.SerializeToString(), opts,
                                            providers=["CPUExecutionProvider"])
        del onnx

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(["y"], {"x": x})[0])


def _activation_groups(model: Any) -> Dict[str, List[Tuple[Any, Any]]]:
    """activation scale initializer -> [(Q node, Conv node)] for Convs fed by a Q/DQ pair."""
    producers = {o: n for n in model.graph.node for o in n.output}
    groups: Dict[str, List[Tuple[Any, Any]]] = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        dq = producers.get(node.input[0])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producers.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[1] != dq.input[1]:
            continue
        groups.setdefault(q.input[1], []).append((q, node))
    return groups


def _float_weight(model: Any, conv: Any, inits: Dict[str, np.ndarray]
                  ) -> Tuple[np.ndarray, Any]:
    """The Conv's int8-rounded weight (float) and its float bias (or None)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    w_dq = producers[conv.input[1]]
    w_q = producers.get(w_dq.input[0])
    if w_q is not None and w_q.op_type == "QuantizeLinear":
        w = inits[w_q.input[0]].astype(np.float32)
        weight = _fake_quant(w, inits[w_q.input[1]].astype(np.float32), -127,
                             0 if inits[w_q.input[1]].size > 1 else -1)
    else:
        raw = inits[w_dq.input[0]].astype(np.float32)
        scale = inits[w_dq.input[1]].astype(np.float32)
        weight = raw * (scale.reshape([-1] + [1] * (raw.ndim - 1)) if scale.size > 1 else scale)
    bias = inits.get(conv.input[2]) if len(conv.input) > 2 else None
    return weight, bias


def refine_scales(qdq: Any, float_outputs: Dict[str, np.ndarray],
                  factors: Sequence[float] = FACTORS, quiet: bool = True) -> Dict[str, float]:
    """Set each activation scale of ``qdq`` (in place) to the factor x calibrated scale with the
    least summed normalised Conv-output error. ``float_outputs``: the float model's value of
    every quantized Conv input (tensor name -> (N, C, H, W)). Returns scale name -> factor."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    chosen: Dict[str, float] = {}
    for scale_name, pairs in track(list(_activation_groups(qdq).items()), "mse", "tensor",
                                   quiet):
        x = float_outputs[pairs[0][0].input[0]]
        s0 = inits[scale_name].astype(np.float32)
        runners = []
        for _, conv in pairs:
            weight, bias = _float_weight(qdq, conv, inits)
            run = _ConvRunner(conv, weight, bias)
            ref = run(x)
            runners.append((run, ref, float(((ref - ref.mean()) ** 2).sum()) or 1.0))
        errors = []
        for f in factors:
            xq = _fake_quant(x, s0 * np.float32(f), -128)
            errors.append(sum(float(((run(xq) - ref) ** 2).sum()) / d for run, ref, d in runners))
        best = float(factors[int(np.argmin(errors))])
        chosen[scale_name] = best
        for init in qdq.graph.initializer:
            if init.name == scale_name:
                init.CopyFrom(numpy_helper.from_array((s0 * np.float32(best)).astype(s0.dtype),
                                                      scale_name))
    return chosen


def conv_inputs(qdq: Any) -> List[str]:
    """Names of the float tensors in front of the activation Q/DQ pairs of Convs."""
    return sorted({pairs[0][0].input[0] for pairs in _activation_groups(qdq).values()})


def float_values(float_model: Any, input_name: str, data: np.ndarray, names: Sequence[str]
                 ) -> Dict[str, np.ndarray]:
    """Values of intermediate tensors ``names`` of a float model on ``data``."""
    from onnx import TensorProto, helper

    from .qdq_sensitivity import run_model

    model = type(float_model)()
    model.CopyFrom(float_model)
    existing = {o.name for o in model.graph.output}
    for name in names:
        if name not in existing:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                                    None))
    outs = run_model(model, input_name, data)
    return {n: outs[n] for n in names}
