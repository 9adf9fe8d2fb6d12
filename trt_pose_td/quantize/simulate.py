"""Running float and Q/DQ ONNX models on ONNX Runtime (CPU), the Q/DQ graph simulated in float.

What the ``mse`` refinement and the sensitivity ranking measure with: every output or chosen
intermediate tensor of a model on calibration tensors, and the normalised error between two
sets of outputs.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np

from ..errors import require


def session(model: Any) -> Any:
    """An ONNX Runtime CPU session of an ``onnx.ModelProto`` that computes Q/DQ pairs in float."""
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
    sess = session(model)
    names = [o.name for o in sess.get_outputs()]
    step = 1 if sess.get_inputs()[0].shape[0] == 1 else batch
    parts: Dict[str, List[np.ndarray]] = {n: [] for n in names}
    for start in range(0, len(data), step):
        for name, value in zip(names, sess.run(names, {input_name: data[start:start + step]})):
            parts[name].append(np.asarray(value))
    return {n: np.concatenate(v) for n, v in parts.items()}


def float_values(float_model: Any, input_name: str, data: np.ndarray, names: Sequence[str]
                 ) -> Dict[str, np.ndarray]:
    """Values of intermediate tensors ``names`` of a float model on ``data``."""
    from onnx import TensorProto, helper

    model = type(float_model)()
    model.CopyFrom(float_model)
    existing = {o.name for o in model.graph.output}
    for name in names:
        if name not in existing:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                                    None))
    outs = run_model(model, input_name, data)
    return {n: outs[n] for n in names}


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
