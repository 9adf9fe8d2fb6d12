"""Tiny ONNX graphs for the parser check (trt_pose_td/build/parser_check.py), built in memory:
one node ``n`` with its inputs, per rule a graph on which the rule fires and one on which it stays
quiet (:data:`CASES`). Constants are initializers; a "computed" tensor is an ``Identity`` (or a
``Shape``/``Slice`` chain) of one, which the parser docs do not count as an initializer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

onnx = __import__("pytest").importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

F, I32, I64, U8, I8, BOOL = (TensorProto.FLOAT, TensorProto.INT32, TensorProto.INT64,
                             TensorProto.UINT8, TensorProto.INT8, TensorProto.BOOL)
X4 = ("x", F, [1, 3, 8, 8])
Tensor = Tuple[str, int, Optional[Sequence[Any]]]


def op_model(path: Path, op: str, ins: Sequence[str], outs: Sequence[str] = ("y",),
             attrs: Optional[Dict[str, Any]] = None, inputs: Sequence[Tensor] = (X4,),
             consts: Optional[Dict[str, Any]] = None, computed: Sequence[str] = (),
             pre: Sequence[Any] = (), outputs: Optional[Sequence[Tensor]] = None,
             opset: int = 13, domain: str = "") -> Path:
    """A graph around one node ``n``: ``op(ins) -> outs``.

    consts: initializers (name -> array); computed: names of ``consts`` to route through an
    ``Identity`` (``<name>`` becomes the Identity's output, fed by ``<name>_init``); pre: extra
    nodes before ``n``; outputs: graph outputs (default ``outs[0]`` as float, any shape).
    """
    inits, nodes = [], list(pre)
    for name, value in (consts or {}).items():
        stored = f"{name}_init" if name in computed else name
        inits.append(numpy_helper.from_array(np.asarray(value), stored))
        if name in computed:
            nodes.append(helper.make_node("Identity", [stored], [name], name=f"id_{name}"))
    nodes.append(helper.make_node(op, list(ins), list(outs), name="n", domain=domain,
                                  **(attrs or {})))
    outputs = outputs if outputs is not None else [(outs[0], F, None)]
    graph = helper.make_graph(
        nodes, f"{op}_case", [helper.make_tensor_value_info(*t) for t in inputs],
        [helper.make_tensor_value_info(*t) for t in outputs], inits)
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    if not domain:  # node schemas and types valid (graph outputs may leave their shape open)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _k_from_shape() -> List[Any]:
    """k = Shape(x)[axis:axis+1]: a TopK K computed the way exporters do (a Shape chain)."""
    return [helper.make_node("Shape", ["x"], ["s"], name="shape"),
            helper.make_node("Slice", ["s", "k_start", "k_end"], ["k"], name="slice")]


def _k_consts(axis: int) -> Dict[str, Any]:
    return {"k_start": np.array([axis], np.int64), "k_end": np.array([axis + 1], np.int64)}


def _qdq(zp: Any, scale: Any = np.float32(0.1), axis: int = 1,
         computed: Sequence[str] = ()) -> Dict[str, Any]:
    return dict(op="QuantizeLinear", ins=["x", "scale", "zp"], outs=["q"], attrs={"axis": axis},
                consts={"scale": scale, "zp": zp}, computed=computed,
                outputs=[("q", U8 if np.asarray(zp).dtype == np.uint8 else I8, None)])


def _resize(opset: int = 13, scales: Sequence[float] = (1, 1, 2, 2), **attrs: Any
            ) -> Dict[str, Any]:
    return dict(op="Resize", ins=["x", "", "scales"], attrs=attrs, opset=opset,
                consts={"scales": np.array(scales, np.float32)})


def _lstm(activations: Sequence[str]) -> Dict[str, Any]:
    rng = np.random.default_rng(0)
    return dict(op="LSTM", ins=["x", "w", "r"], outs=["y"], inputs=[("x", F, [2, 1, 3])],
                attrs={"hidden_size": 2, "direction": "bidirectional",
                       "activations": list(activations)},
                consts={"w": rng.normal(size=(2, 8, 3)).astype(np.float32),
                        "r": rng.normal(size=(2, 8, 2)).astype(np.float32)})


def _if(then_op: str = "Relu") -> Dict[str, Any]:
    def branch(name: str, op: str) -> Any:
        node = helper.make_node(op, ["x"], [f"{name}_out"], name=f"{name}_op")
        return helper.make_graph([node], name, [],
                                 [helper.make_tensor_value_info(f"{name}_out", F, [1, 3, 8, 8])])
    return dict(op="If", ins=["cond"], consts={"cond": np.array(True)},
                attrs={"then_branch": branch("then", then_op),
                       "else_branch": branch("else", "Relu")})


def _einsum(equation: str, shapes: Sequence[Sequence[int]]) -> Dict[str, Any]:
    names = [f"e{i}" for i in range(len(shapes))]
    return dict(op="Einsum", ins=names, attrs={"equation": equation},
                inputs=[(n, F, list(s)) for n, s in zip(names, shapes)])


@dataclass(frozen=True)
class Case:
    """A rule of the check: the graph it ``fires`` on (``level`` finding on ``node`` at
    ``version`` whose message holds ``text``) and the graph it stays ``quiet`` on (same kwargs
    at ``quiet_version`` when ``quiet`` is None)."""

    fires: Dict[str, Any]
    version: str
    level: str
    text: str
    quiet: Optional[Dict[str, Any]] = None
    quiet_version: Optional[str] = None
    node: str = "n"
    size: Optional[Tuple[int, int]] = field(default=None)


TOPK = dict(op="TopK", ins=["x", "k"], outs=["y", "i"], attrs={"axis": 3})
CASES: Dict[str, Case] = {
    "topk_k_computed": Case(dict(TOPK, pre=_k_from_shape(), consts=_k_consts(3)), "8.5",
                            "error", "K is computed by slice (Slice), not an initializer",
                            dict(TOPK, consts={"k": np.array([3], np.int64)})),
    "topk_k_limit": Case(dict(TOPK, inputs=[("x", F, [1, 1, 1, 4000])],
                              consts={"k": np.array([3900], np.int64)}), "10.8", "error",
                         "K = 3900: it must be below 3840",
                         dict(TOPK, consts={"k": np.array([3], np.int64)})),
    "topk_k_evaluated": Case(dict(TOPK, inputs=[("x", F, [1, 1, 1, "w"])], pre=_k_from_shape(),
                                  consts=_k_consts(3)), "10.8", "error",
                             "for a blank 1x1x1x4000 input K = 4000: it must be below 3840",
                             dict(TOPK, inputs=[("x", F, [1, 1, 1, "w"])],
                                  consts={"k": np.array([3], np.int64)}), size=(4000, 1)),
    "topk_sorted": Case(dict(TOPK, attrs={"axis": 3, "sorted": 0},
                             consts={"k": np.array([3], np.int64)}), "10.8", "error",
                        "sorted=0 (must be 1)",
                        dict(TOPK, consts={"k": np.array([3], np.int64)})),
    "resize_mode": Case(_resize(mode="cubic"), "8.5", "error", "mode='cubic'",
                        _resize(mode="nearest")),
    "resize_coordinates": Case(_resize(coordinate_transformation_mode="tf_crop_and_resize"),
                               "10.8", "error", "coordinate_transformation_mode=",
                               _resize(coordinate_transformation_mode="asymmetric")),
    "resize_antialias": Case(_resize(18, mode="linear", antialias=1), "10.8", "error",
                             "antialias=1", _resize(18, mode="linear")),
    "resize_axes": Case(_resize(18, (2, 2), axes=[2, 3]), "10.8", "error", "axes=[2, 3]",
                        _resize(18)),
    "qdq_zero_point": Case(_qdq(np.int8(3)), "8.5", "error", "holds non-zero values",
                           _qdq(np.int8(0))),
    "qdq_uint8": Case(_qdq(np.uint8(0)), "8.5", "error", "zero point zp is UINT8",
                      _qdq(np.int8(0))),
    "qdq_per_axis": Case(_qdq(np.zeros(4, np.int8), np.full(4, 0.1, np.float32)), "8.5",
                         "error", "per-axis scale has 4 values but axis 1 of x has 3",
                         _qdq(np.zeros(3, np.int8), np.full(3, 0.1, np.float32))),
    "qdq_scale_computed": Case(_qdq(np.int8(0), computed=["scale"]), "10.8", "error",
                               "scale is computed by id_scale (Identity): must be a build-time",
                               _qdq(np.int8(0))),
    "op_unsupported": Case(dict(op="Hardmax", ins=["x"]), "8.5", "error",
                           "Hardmax is listed as unsupported (N)", quiet_version="10.8"),
    "op_not_listed": Case(dict(op="CastLike", ins=["x", "like"], opset=15,
                               consts={"like": np.zeros(1, np.float32)}), "8.5", "error",
                          "CastLike is not in the TensorRT 8.5 operator table",
                          quiet_version="10.8"),
    "custom_op": Case(dict(op="TRTBatchedNMS", ins=["x"], domain="mmdeploy"), "10.8", "error",
                      "custom operator mmdeploy.TRTBatchedNMS", dict(op="Relu", ins=["x"])),
    "opset_too_new": Case(dict(op="Relu", ins=["x"], opset=18), "8.5", "error",
                          "opset 18: TensorRT 8.5 supports up to 17",
                          dict(op="Relu", ins=["x"], opset=17), node="(model)"),
    "opset_too_old": Case(dict(op="Relu", ins=["x"], opset=8), "10.8", "error",
                          "opset 8: TensorRT 10.8 supports 9 to 22",
                          dict(op="Relu", ins=["x"], opset=9), node="(model)"),
    "types_int32": Case(dict(op="ArgMax", ins=["x"], inputs=[("x", I32, [1, 4])],
                             outputs=[("y", I64, None)]), "8.5",
                        "error", "x is INT32; the table lists FP32, FP16", quiet_version="10.8"),
    "types_int64": Case(dict(TOPK, attrs={"axis": 1}, inputs=[("x", I64, [1, 4])],
                             outputs=[("y", I64, None)],
                             consts={"k": np.array([2], np.int64)}), "8.5", "error",
                        "x is INT64 (imported as INT32); the table lists FP32, FP16",
                        quiet_version="10.8"),
    "uint8_inside": Case(dict(op="Cast", ins=["u"], attrs={"to": F}, pre=[helper.make_node(
                              "Cast", ["x"], ["u"], to=U8, name="to_u8")]), "8.5", "error",
                         "u is UINT8 inside the network",
                         dict(op="Cast", ins=["x"], attrs={"to": F},
                              inputs=[("x", U8, [1, 3, 8, 8])])),
    "int64_clamped": Case(dict(op="Slice", ins=["x", "s0", "s1", "ax"], consts={
                               "s0": np.array([0], np.int64), "ax": np.array([3], np.int64),
                               "s1": np.array([2**63 - 1], np.int64)}), "8.5", "note",
                          "INT64 constant s1 holds values beyond INT32", quiet_version="10.8"),
    "slice_axes_computed": Case(dict(op="Slice", ins=["x", "s0", "s1", "ax"], computed=["ax"],
                                     consts={"s0": np.array([0], np.int64),
                                             "s1": np.array([4], np.int64),
                                             "ax": np.array([3], np.int64)}), "8.5", "error",
                                "axes is computed by id_ax (Identity), not an initializer",
                                quiet_version="10.8"),
    "squeeze_axes_computed": Case(dict(op="Squeeze", ins=["x", "ax"], computed=["ax"],
                                       inputs=[("x", F, [1, 3, 1, 8])],
                                       consts={"ax": np.array([2], np.int64)}), "10.8",
                                  "warning", "it must fold to a build-time constant",
                                  dict(op="Squeeze", ins=["x", "ax"],
                                       inputs=[("x", F, [1, 3, 1, 8])],
                                       consts={"ax": np.array([2], np.int64)})),
    "cumsum_axis_computed": Case(dict(op="CumSum", ins=["x", "ax"], computed=["ax"],
                                      consts={"ax": np.array(1, np.int64)}), "8.5", "error",
                                 "axis is computed by id_ax",
                                 dict(op="CumSum", ins=["x", "ax"],
                                      consts={"ax": np.array(1, np.int64)})),
    "maxpool_indices": Case(dict(op="MaxPool", ins=["x"], outs=["y", "idx"],
                                 attrs={"kernel_shape": [2, 2]}), "8.5", "error",
                            "the Indices output (idx) is unsupported",
                            dict(op="MaxPool", ins=["x"], attrs={"kernel_shape": [2, 2]})),
    "pool_1d": Case(dict(op="AveragePool", ins=["x"], inputs=[("x", F, [1, 1, 8])],
                         attrs={"kernel_shape": [2]}), "10.8", "error", "1D pooling",
                    dict(op="AveragePool", ins=["x"], attrs={"kernel_shape": [2, 2]})),
    "pool_dilations": Case(dict(op="MaxPool", ins=["x"],
                                attrs={"kernel_shape": [2, 2], "dilations": [2, 2]}), "10.8",
                           "error", "dilations=[2, 2]", quiet_version="8.5"),
    "einsum_ellipsis": Case(_einsum("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]), "8.5",
                            "error", "uses an ellipsis", quiet_version="10.8"),
    "einsum_diagonal": Case(_einsum("ii->i", [(3, 3)]), "8.5", "error", "takes a diagonal",
                            _einsum("ij,jk->ik", [(3, 4), (4, 5)])),
    "reduce_axes_computed": Case(dict(op="ReduceMax", ins=["x", "ax"], computed=["ax"],
                                      opset=18, consts={"ax": np.array([1], np.int64)}),
                                 "10.8", "error", "axes is computed by id_ax",
                                 dict(op="ReduceMax", ins=["x", "ax"], opset=18,
                                      consts={"ax": np.array([1], np.int64)})),
    "scatternd_reduction": Case(dict(op="ScatterND", ins=["x", "ix", "up"], opset=16,
                                     attrs={"reduction": "add"}, inputs=[("x", F, [4])],
                                     consts={"ix": np.array([[1]], np.int64),
                                             "up": np.array([1.0], np.float32)}),
                                "10.8", "error", "reduction='add'",
                                dict(op="ScatterND", ins=["x", "ix", "up"], opset=16,
                                     inputs=[("x", F, [4])],
                                     consts={"ix": np.array([[1]], np.int64),
                                             "up": np.array([1.0], np.float32)})),
    "dropout_training": Case(dict(op="Dropout", ins=["x", "ratio", "train"],
                                  consts={"ratio": np.float32(0.5), "train": np.array(True)}),
                             "10.8", "error", "training_mode is True",
                             dict(op="Dropout", ins=["x", "ratio", "train"],
                                  consts={"ratio": np.float32(0.5), "train": np.array(False)})),
    "lstm_activations": Case(_lstm(["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Tanh", "Relu"]),
                             "8.5", "error", "bidirectional with different activations",
                             _lstm(["Sigmoid", "Tanh", "Tanh"] * 2)),
    "instnorm_scale_computed": Case(dict(op="InstanceNormalization", ins=["x", "sc", "b"],
                                         computed=["sc"], consts={"sc": np.ones(3, np.float32),
                                                                  "b": np.zeros(3, np.float32)}),
                                    "8.5", "error", "scale is computed by id_sc",
                                    quiet_version="10.8"),
    "instnorm_rank": Case(dict(op="InstanceNormalization", ins=["x", "sc", "b"],
                               inputs=[("x", F, [1, 3, 2, 2, 2, 2])],
                               consts={"sc": np.ones(3, np.float32),
                                       "b": np.zeros(3, np.float32)}), "8.5", "error",
                          "has rank 6 (supported: 3..5)", quiet_version="10.8"),
    "reverse_sequence_dynamic": Case(dict(op="ReverseSequence", ins=["x", "lens"],
                                          inputs=[("x", F, ["t", 2, 3])],
                                          attrs={"batch_axis": 1, "time_axis": 0},
                                          consts={"lens": np.array([1, 2], np.int64)}),
                                     "8.5", "error", "x has dynamic dimensions",
                                     dict(op="ReverseSequence", ins=["x", "lens"],
                                          inputs=[("x", F, [4, 2, 3])],
                                          attrs={"batch_axis": 1, "time_axis": 0},
                                          consts={"lens": np.array([1, 2], np.int64)})),
    "eyelike_dynamic": Case(dict(op="EyeLike", ins=["x"], inputs=[("x", F, ["n", 4])]), "10.8",
                            "error", "x has dynamic dimensions",
                            dict(op="EyeLike", ins=["x"], inputs=[("x", F, [4, 4])])),
    "layernorm_outputs": Case(dict(op="LayerNormalization", ins=["x", "g"], outs=["y", "mean"],
                                   opset=17, consts={"g": np.ones(8, np.float32)}), "10.8",
                              "error", "the Mean output (mean) is unsupported",
                              dict(op="LayerNormalization", ins=["x", "g"], opset=17,
                                   consts={"g": np.ones(8, np.float32)})),
    "random_seed": Case(dict(op="RandomUniform", ins=[], inputs=[],
                             attrs={"shape": [2, 2], "seed": 1.0}), "8.5", "warning",
                        "seed is ignored by TensorRT",
                        dict(op="RandomUniform", ins=[], inputs=[], attrs={"shape": [2, 2]})),
    "disputed_hardswish": Case(dict(op="HardSwish", ins=["x"], opset=14), "8.5", "warning",
                               "N in the 8.5 GA doc", quiet_version="10.8"),
    "constant_string": Case(dict(op="Constant", ins=[], attrs={"value_string": "a"},
                                 outputs=[("y", TensorProto.STRING, None)]), "10.8", "error",
                            "attribute value_string is unsupported",
                            dict(op="Constant", ins=[], attrs={"value": numpy_helper.from_array(
                                np.ones(2, np.float32), "v")})),
    "gridsample_rank": Case(dict(op="GridSample", ins=["x", "grid"], opset=20,
                                 inputs=[("x", F, [1, 1, 4, 4, 4]), ("grid", F, [1, 2, 2, 2, 3])]),
                            "10.8", "error", "has rank 5 (supported: 4..4)",
                            dict(op="GridSample", ins=["x", "grid"], opset=20,
                                 inputs=[("x", F, [1, 1, 4, 4]), ("grid", F, [1, 2, 2, 2])])),
    "onehot_depth_computed": Case(dict(op="OneHot", ins=["x", "d", "v"], computed=["d"],
                                       inputs=[("x", I64, [3])],
                                       consts={"d": np.array(4, np.int64),
                                               "v": np.array([0, 1], np.float32)}), "10.8",
                                  "warning", "depth is computed by id_d",
                                  dict(op="OneHot", ins=["x", "d", "v"],
                                       inputs=[("x", I64, [3])],
                                       consts={"d": np.array(4, np.int64),
                                               "v": np.array([0, 1], np.float32)})),
    "if_note": Case(_if(), "8.5", "note", "restriction not checked automatically",
                    dict(op="Relu", ins=["x"])),
}


def case_model(tmp: Path, name: str, quiet: bool = False) -> Path:
    """The graph of case ``name`` (its quiet variant with ``quiet``)."""
    case = CASES[name]
    kwargs = (case.quiet if quiet and case.quiet is not None else case.fires)
    return op_model(tmp / f"{name}{'_quiet' if quiet else ''}.onnx", **kwargs)
