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
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import require
from ..progress import track
from .graph import bypass_convs, quantized_convs
from .simulate import output_error, run_model

log = logging.getLogger(__name__)


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
