"""Tiny ONNX stand-ins with the I/O contracts of the real models, built in memory.

Each is small, deterministic, and behaves predictably so a test can tell what the pipeline must
return: the keypoint stand-ins put every keypoint on the brightest spot of the crop, the detector
stand-ins report fixed boxes. Batch is dynamic unless the real model's is static.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

onnx = __import__("pytest").importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

OPSET = 13


def _save(graph: onnx.GraphProto, path: Path, opset: int = OPSET) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _zero_from_input(name: str, out: str, nodes: list, inits: list) -> None:
    """out = ReduceMean(input) * 0, shape [B, 1, 1, 1]: ties constant outputs to the batch."""
    nodes.append(helper.make_node("ReduceMean", [name], [out + "_m"], axes=[1, 2, 3],
                                  keepdims=1))
    inits.append(numpy_helper.from_array(np.zeros((1,), np.float32), out + "_zero"))
    nodes.append(helper.make_node("Mul", [out + "_m", out + "_zero"], [out]))


def heatmap_pose_model(path: Path, input_hw: Sequence[int] = (256, 192), name: str = "image",
                       output: str = "conv2d_441.tmp_1", stride: int = 4) -> Path:
    """PP-TinyPose contract: [B, 3, H, W] -> [B, 17, H/4, W/4] heatmaps.

    Heatmap = average of the 3 channels pooled over stride x stride cells, repeated for the 17
    keypoints: every keypoint lands on the brightest cell of the crop.
    """
    h, w = input_hw
    nodes, inits = [], []
    inits.append(numpy_helper.from_array(np.full((17, 3, 1, 1), 1 / 3, np.float32), "w"))
    nodes.append(helper.make_node("AveragePool", [name], ["pooled"], kernel_shape=[stride, stride],
                                  strides=[stride, stride]))
    nodes.append(helper.make_node("Conv", ["pooled", "w"], [output]))
    graph = helper.make_graph(
        nodes, "heatmap_standin",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 3, h, w])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT,
                                       ["batch", 17, h // stride, w // stride])], inits)
    return _save(graph, path)


def simcc_pose_model(path: Path, input_hw: Sequence[int] = (256, 192), split: int = 2) -> Path:
    """RTMPose contract: ``input`` [B, 3, H, W] -> ``simcc_x`` [B, 17, W*2], ``simcc_y``
    [B, 17, H*2]. The x (y) logits are the column (row) means of the image, upsampled by
    ``split`` (nearest): both argmaxes point at the brightest column / row."""
    h, w = input_hw
    nodes, inits = [], []
    inits.append(numpy_helper.from_array(np.array([1, 1, 1, split], np.float32), "sx"))
    inits.append(numpy_helper.from_array(np.array([1, 1, 1, split], np.float32), "sy"))
    inits.append(numpy_helper.from_array(np.array([1, 17, 1], np.int64), "rep"))
    inits.append(numpy_helper.from_array(np.array([0, 1, w * split], np.int64), "shape_x"))
    inits.append(numpy_helper.from_array(np.array([0, 1, h * split], np.int64), "shape_y"))
    inits.append(numpy_helper.from_array(np.array([], np.float32), "roi"))
    # columns: mean over C and H -> [B,1,1,W]; rows: mean over C and W -> [B,1,1,H]
    nodes.append(helper.make_node("ReduceMean", ["input"], ["col"], axes=[1, 2], keepdims=1))
    nodes.append(helper.make_node("ReduceMean", ["input"], ["row_t"], axes=[1, 3], keepdims=1))
    nodes.append(helper.make_node("Transpose", ["row_t"], ["row"], perm=[0, 1, 3, 2]))
    for src, scale, out, shape in (("col", "sx", "x", "shape_x"), ("row", "sy", "y", "shape_y")):
        nodes.append(helper.make_node("Resize", [src, "roi", scale], [out + "_up"],
                                      mode="nearest"))
        nodes.append(helper.make_node("Reshape", [out + "_up", shape], [out + "_flat"]))
        nodes.append(helper.make_node("Tile", [out + "_flat", "rep"], ["simcc_" + out]))
    graph = helper.make_graph(
        nodes, "simcc_standin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, h, w])],
        [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, ["batch", 17, w * split]),
         helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, ["batch", 17, h * split])],
        inits)
    return _save(graph, path)


def nms_detector_model(path: Path, dets: np.ndarray) -> Path:
    """RTMDet NMS-in-graph contract: ``input`` [B, 3, H, W] -> ``dets`` [B, N, 5] (input
    pixels + score) and ``labels`` [1, N] int64 (all 0), fixed values ``dets`` (N, 5)."""
    dets = np.asarray(dets, np.float32).reshape(1, -1, 5)
    n = dets.shape[1]
    nodes, inits = [], []
    _zero_from_input("input", "z", nodes, inits)
    inits.append(numpy_helper.from_array(dets, "dets_const"))
    inits.append(numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape3"))
    nodes.append(helper.make_node("Reshape", ["z", "shape3"], ["z3"]))
    nodes.append(helper.make_node("Add", ["z3", "dets_const"], ["dets"]))
    nodes.append(helper.make_node("Constant", [], ["labels"], value=numpy_helper.from_array(
        np.zeros((1, n), np.int64), "labels_value")))
    graph = helper.make_graph(
        nodes, "nms_detector_standin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("dets", TensorProto.FLOAT, ["batch", n, 5]),
         helper.make_tensor_value_info("labels", TensorProto.INT64, [1, n])], inits)
    return _save(graph, path, opset=11)


def constant_outputs_model(path: Path, input_name: str, input_shape: Sequence,
                           outputs: dict) -> Path:
    """A graph whose outputs are fixed arrays (plus 0 x input), for decoder contracts.

    outputs: name -> array with a leading batch axis of 1.
    """
    nodes, inits = [], []
    _zero_from_input(input_name, "z", nodes, inits)
    outs = []
    for name, value in outputs.items():
        value = np.asarray(value, np.float32)
        inits.append(numpy_helper.from_array(value, name + "_const"))
        shape = np.array([-1] + [1] * (value.ndim - 1), np.int64)
        inits.append(numpy_helper.from_array(shape, name + "_zshape"))
        nodes.append(helper.make_node("Reshape", ["z", name + "_zshape"], [name + "_z"]))
        nodes.append(helper.make_node("Add", [name + "_z", name + "_const"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                  [input_shape[0]] + list(value.shape[1:])))
    graph = helper.make_graph(
        nodes, "constant_standin",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))],
        outs, inits)
    return _save(graph, path)


def small_conv_model(path: Path, opset: int = 11, seed: int = 0) -> Path:
    """A tiny real CNN for quantization tests: ``image`` [B, 3, 32, 24] -> Conv 3x3 (8) + Relu
    -> Conv 1x1 (8) + a residual Add of the Relu output -> Conv 1x1 (17) ``heatmaps``
    [B, 17, 32, 24]. Weights are random with per-channel magnitudes spread over 100x, so
    per-channel weight scales matter. Opset 11 by default (the quantizer must upgrade it)."""
    rng = np.random.default_rng(seed)
    spread = np.logspace(-1, 1, 8).astype(np.float32)
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32) * spread[:, None, None, None]
    w2 = rng.normal(0, 0.3, (8, 8, 1, 1)).astype(np.float32)
    w3 = rng.normal(0, 0.3, (17, 8, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(w3, "w3"),
             numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, 0.1, 17).astype(np.float32), "b3")]
    nodes = [helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1],
                              name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"),
             helper.make_node("Add", ["c2", "r1"], ["res"], name="residual"),
             helper.make_node("Conv", ["res", "w3", "b3"], ["heatmaps"], name="head")]
    graph = helper.make_graph(
        nodes, "small_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 24])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["batch", 17, 32, 24])],
        inits)
    return _save(graph, path, opset=opset)
