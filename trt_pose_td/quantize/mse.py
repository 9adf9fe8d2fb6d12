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

from ..errors import require
from ..progress import track
from .graph import Producers, activation_groups

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


def _float_weight(prod: Producers, conv: Any, inits: Dict[str, np.ndarray]
                  ) -> Tuple[np.ndarray, Any]:
    """The Conv's int8-rounded weight (float) and its float bias (or None)."""
    pair = prod.qdq(conv.input[1])
    if pair is None:
        raise ValueError(f"Conv {conv.name}: its weight has no DequantizeLinear")
    if pair.q is not None:
        w_q = pair.q
        w = inits[w_q.input[0]].astype(np.float32)
        weight = _fake_quant(w, inits[w_q.input[1]].astype(np.float32), -127,
                             0 if inits[w_q.input[1]].size > 1 else -1)
    else:
        raw = inits[pair.dq.input[0]].astype(np.float32)
        scale = inits[pair.dq.input[1]].astype(np.float32)
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
    prod = Producers(qdq.graph)
    chosen: Dict[str, float] = {}
    for scale_name, pairs in track(list(activation_groups(qdq).items()), "mse", "tensor",
                                   quiet):
        x = float_outputs[pairs[0][0].input[0]]
        s0 = inits[scale_name].astype(np.float32)
        runners = []
        for _, conv in pairs:
            weight, bias = _float_weight(prod, conv, inits)
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
    return sorted({pairs[0][0].input[0] for pairs in activation_groups(qdq).values()})
