"""Per-layer precision from engine-inspector JSON, in the shapes TensorRT writes it: 8.x (format
sentences), 10.x (bare type names), 11.x (separate DataType), names-only and dynamic-shape N/A."""

import json

import pytest

from trt_pose_td.build.inspect import (
    int8_collapse,
    layer_precisions,
    precision_counts,
    summary_line,
    tensor_precision,
)
from trt_pose_td.errors import EngineError


def layer(name, kind, fmt_in, fmt_out, key="Format/Datatype"):
    return {"Name": name, "LayerType": kind,
            "Inputs": [{"Name": name + "_in", "Location": "Device",
                        "Dimensions": [8, 3, 256, 192], key: fmt_in}],
            "Outputs": [{"Name": name + "_out", "Location": "Device",
                         "Dimensions": [8, 32, 128, 96], key: fmt_out}],
            "TacticValue": "0x0000000000000000", "StreamId": 0}


TRT85_INT8 = {"Layers": [
    layer("Reformatting CopyNode for Input Tensor 0 to conv1 + relu1", "Reformat",
          "Row major linear FP32", "Four wide channel vectorized row major Int8 format"),
    layer("conv1 + relu1", "CaskConvolution", "Four wide channel vectorized row major Int8 format",
          "Thirty-two wide channel vectorized row major Int8 format."),
    layer("conv2", "CaskConvolution", "Thirty-two wide channel vectorized row major Int8 format.",
          "Channel major FP16 format where channel % 8 == 0"),
    layer("resize", "Resize", "Channel major FP16 format where channel % 8 == 0",
          "Row major linear FP16 format"),
    layer("head", "CaskConvolution", "Row major linear FP16 format", "Row major linear FP32"),
], "Bindings": ["image", "heatmaps"]}


def test_tensorrt_8_format_sentences():
    layers = layer_precisions(json.dumps(TRT85_INT8))
    assert [x.precision for x in layers] == ["fp32", "int8", "int8", "fp16", "fp16"]
    assert layers[1].name == "conv1 + relu1" and layers[1].layer_type == "CaskConvolution"
    assert precision_counts(layers) == {"int8": 2, "fp16": 2}  # the Reformat is bookkeeping
    assert summary_line(layers) == "4 layers: 2 int8, 2 fp16"
    assert int8_collapse(layers, "int8") is None


def test_tensorrt_10_bare_type_names_and_11_datatype_field():
    t10 = {"Layers": [layer("c", "CaskConvolution", "Half", "Half"),
                      layer("d", "CaskConvolution", "Float", "Float")]}
    assert [x.precision for x in layer_precisions(t10)] == ["fp16", "fp32"]
    t11 = {"Layers": [layer("c", "CaskConvolution", "Int8", "Half", key="DataType")],
           "I/O Tensors": [{"Name": "image", "IOMode": "Input", "DataType": "Float"}]}
    assert layer_precisions(t11)[0].precision == "int8"
    assert tensor_precision({"Format/Datatype": "Row major linear UInt8 format"}) == "uint8"
    assert tensor_precision({"Format/Datatype": "Row major linear Int32 format"}) == "int32"


def test_unknown_precisions_stay_unknown():
    names_only = {"Layers": ["conv1 + relu1", "conv2"], "Bindings": ["image", "out"]}
    assert {x.precision for x in layer_precisions(names_only)} == {"?"}
    dynamic = {"Layers": [layer("noop", "NoOp", "N/A due to dynamic shapes",
                                "N/A due to dynamic shapes")]}
    layers = layer_precisions(dynamic)
    assert layers[0].precision == "?"
    assert int8_collapse(layers, "int8") is None  # cannot tell: no false alarm
    with pytest.raises(EngineError, match="Layers"):
        layer_precisions("{}")


def test_int8_engine_without_int8_layers_is_flagged():
    collapsed = {"Layers": [layer("c1", "CaskConvolution", "Half", "Half"),
                            layer("c2", "CaskConvolution", "Float", "Half")]}
    warning = int8_collapse(layer_precisions(collapsed), "int8")
    assert warning and "no layer" in warning and "1 fp16, 1 fp32" in warning
    assert int8_collapse(layer_precisions(collapsed), "fp16") is None
