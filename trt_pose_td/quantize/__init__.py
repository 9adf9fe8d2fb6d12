"""INT8 Q/DQ ONNX models (explicit quantization) calibrated on the real preprocessing.

The output is what TensorRT's explicit-quantization path consumes (the only INT8 path TensorRT 11
keeps) and what ONNX Runtime runs on a CPU, which is how INT8 accuracy is measured without a GPU:

* ``QuantizeLinear``/``DequantizeLinear`` pairs (QDQ format, opset >= 13) on the inputs of the
  quantized operators (by default every ``Conv``: the activation and the weight);
* symmetric int8 everywhere (zero point 0; activations [-128, 127], weights [-127, 127]), as
  TensorRT requires; weights per output channel (axis 0) unless ``per_channel=False``;
* weights stay float behind a Q/DQ pair and biases stay float (TensorRT folds both; TensorRT
  8.5 on JetPack 5 needs no int8/int32 initializers);
* activation ranges from ONNX Runtime's calibrators: ``entropy`` (KL), ``minmax`` or
  ``percentile`` over calibration tensors from :mod:`trt_pose_td.quantize.calibration` (letterboxed
  frames for detectors, run-time person crops for keypoint models; train2017, never val), or
  ``mse``: MinMax ranges refined layer by layer to the least Conv-output error.

Files: ``<cache>/quantized/<model>.int8-<method>.onnx`` (:func:`quantized_path`); the ONNX
``metadata_props`` record the source ONNX sha256, the calibration tensors' key, the method and the
nodes kept in float, so a builder can put them into the engine's provenance.

This package's public API is what this module exports; the modules by concern behind it:
:mod:`trt_pose_td.int8_recipes` (per-model method and kept-float Convs, file names,
:func:`int8_config`: a pure module below the pipeline's plan, which needs them too),
:mod:`.quantizer` (writing a Q/DQ file), :mod:`.graph` (the one producer walk: which Q/DQ pair
feeds a tensor, bypassing pairs, the summary), :mod:`.simulate` (running models on ONNX
Runtime), :mod:`.mse` (scale refinement) and :mod:`.sensitivity` (which Convs to keep float).
"""

from __future__ import annotations

from ..int8_recipes import (
    DEFAULT_EXCLUDES,
    DEFAULT_METHOD,
    DEFAULT_METHODS,
    METHODS,
    OP_SETS,
    default_method,
    int8_config,
    int8_source,
    quantized_path,
)
from .graph import FIRST_CONV, LAST_CONV, qdq_summary, resolve_excludes
from .quantizer import prepared_float_model, quantize_model, quantize_registry_model
from .sensitivity import conv_sensitivity, pick_float_convs

__all__ = [
    "DEFAULT_EXCLUDES", "DEFAULT_METHOD", "DEFAULT_METHODS", "FIRST_CONV", "LAST_CONV", "METHODS",
    "OP_SETS", "conv_sensitivity", "default_method", "int8_config", "int8_source",
    "pick_float_convs", "prepared_float_model", "qdq_summary", "quantize_model",
    "quantize_registry_model", "quantized_path", "resolve_excludes",
]
