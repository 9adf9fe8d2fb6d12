"""The ONNX parser check on the real models: every registry model found in the package or the
data mirror (skipped, saying why, when neither has it) and the Q/DQ models `trt-pose-td quantize`
writes for the default pair, calibrated on real images. What is asserted is what onnx-tensorrt's
docs say: the default pair and its Q/DQ versions parse on TensorRT 8.5 and 10.x; the
NMS-in-graph RTMDet is refused by 8.5 for its TopK (K computed from a Shape chain), accepted by
the 10.8 table at 416x416 (K = 3549) and refused at 640x640 (K = 5000 >= 3840)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from trt_pose_td.assets import fetch, model_asset  # noqa: E402
from trt_pose_td.build.parser_check import check_model  # noqa: E402
from trt_pose_td.errors import AssetError  # noqa: E402
from trt_pose_td.models import DEFAULT_DETECTOR, DEFAULT_POSE, REGISTRY  # noqa: E402

from .conftest import CALIB_ANN  # noqa: E402

#: Verdicts per registry model found locally: (8.5 passes, 10.8 passes) at the model's own size.
EXPECTED = {
    "rtmdet_nano_person_raw": (True, True), "rtmdet_nano_person": (False, True),
    "yolox_nano_416": (True, True), "picodet_s_320_pedestrian": (True, True),
    "pp_tinypose_256x192": (True, True), "pp_tinypose_128x96": (True, True),
}


def local_model(name: str) -> Path:
    """The registry file from the package, the cache or the mirror (never the network)."""
    spec = REGISTRY[name]
    try:
        return fetch(replace(model_asset(spec), urls=()), progress=False)
    except AssetError as exc:
        pytest.skip(f"{name}: neither packaged nor in the data mirror, and the network is not "
                    f"used here ({exc})")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registry_model(name):
    spec = REGISTRY[name]
    report = check_model(local_model(name), name=name, input_size=spec.preprocess.input_size)
    assert sum(report.checked.values()) > 50 and report.versions == ("8.5", "10.8")
    if name not in EXPECTED:
        pytest.fail(f"{name} was found but has no expected verdict in EXPECTED: "
                    f"{[(v, report.passes(v)) for v in report.versions]}")
    assert (report.passes("8.5"), report.passes("10.8")) == EXPECTED[name], report.findings


def test_default_pair_passes_the_oldest_tensorrt():
    for name in (DEFAULT_DETECTOR, DEFAULT_POSE):
        report = check_model(local_model(name), ["8.5"], name=name)
        assert report.passes("8.5") and not report.of("8.5", "warning"), report.findings


def test_nms_in_graph_rtmdet_is_named_for_its_topk():
    path = local_model("rtmdet_nano_person")
    report = check_model(path, name="rtmdet_nano_person", input_size=(416, 416))
    topk = [f for f in report.of("8.5") if f.op == "TopK"]
    assert [f.node for f in topk] == ["TopK_534", "TopK_630"]
    assert all("K is computed by Reshape_" in f.message and "not an initializer" in f.message
               for f in topk)
    assert report.accepted_by("TopK_534") == ["10.8"]
    notes = {f.node: f.message for f in report.of("10.8", "note")}
    assert "K = 3549 (< 3840)" in notes["TopK_534"]          # 52^2 + 26^2 + 13^2 anchors
    big = check_model(path, ["10.8"], input_size=(640, 640))
    assert [(f.node, f.level) for f in big.of("10.8")] == [("TopK_534", "error")]
    assert "for a blank 1x3x640x640 input K = 5000" in big.of("10.8")[0].message


@pytest.fixture(scope="module")
def qdq_models(calib_subset, tmp_path_factory):
    """The Q/DQ files of the default pair as `trt-pose-td quantize` writes them (each model's
    measured method and kept-float Convs, per-channel weights, Q/DQ in front of Convs), plus
    the detector with `--ops all --method minmax` (Q/DQ in front of every quantizable op)."""
    from trt_pose_td.quantize import quantize_registry_model

    out = tmp_path_factory.mktemp("qdq")
    ann = calib_subset / CALIB_ANN
    models = {name: quantize_registry_model(name, calib_subset, ann, quiet=True,
                                            out_path=out / f"{name}.int8.onnx")
              for name in (DEFAULT_DETECTOR, DEFAULT_POSE)}
    models["ops_all"] = quantize_registry_model(DEFAULT_DETECTOR, calib_subset, ann,
                                                method="minmax", op_set="all", quiet=True,
                                                out_path=out / "ops_all.int8.onnx")
    return models


@pytest.mark.slow
@pytest.mark.parametrize("which", [DEFAULT_DETECTOR, DEFAULT_POSE, "ops_all"])
def test_quantized_default_pair_passes(qdq_models, which):
    report = check_model(qdq_models[which], input_size=(416, 416))
    assert report.checked["QuantizeLinear"] > 50 and report.checked["DequantizeLinear"] > 50
    for version in report.versions:
        assert report.passes(version), report.of(version)
        assert not report.of(version, "warning"), report.of(version, "warning")


def _mutated(path: Path, out: Path, change) -> Path:
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    change(model, node, inits)
    onnx.save(model, str(out))
    return out


@pytest.mark.slow
def test_broken_qdq_files_are_refused(qdq_models, tmp_path):
    """The Q/DQ rules act on the real quantizer output: the same file with one asymmetric zero
    point, with uint8 zero points, with a per-axis scale of the wrong length."""
    from onnx import numpy_helper

    src = qdq_models[DEFAULT_DETECTOR]

    def asymmetric(model, node, inits):
        inits[node.input[2]].CopyFrom(numpy_helper.from_array(np.int8(3), node.input[2]))

    def as_uint8(model, node, inits):
        inits[node.input[2]].CopyFrom(numpy_helper.from_array(np.uint8(0), node.input[2]))
        for n in model.graph.node:  # keep the graph consistent: the pair's DQ reads uint8 too
            if n.op_type == "DequantizeLinear" and n.input[0] == node.output[0]:
                n.input[2] = node.input[2]

    def wrong_axis(model, node, inits):
        weight_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear"
                        and n.input[0] in inits and inits[n.input[1]].dims)
        scale = numpy_helper.to_array(inits[weight_q.input[1]])
        inits[weight_q.input[1]].CopyFrom(numpy_helper.from_array(
            np.concatenate([scale, scale[:1]]), weight_q.input[1]))

    for change, text in ((asymmetric, "holds non-zero values"), (as_uint8, "is UINT8"),
                         (wrong_axis, "per-axis scale has")):
        report = check_model(_mutated(src, tmp_path / f"{change.__name__}.onnx", change),
                             ["8.5"])
        assert any(text in f.message for f in report.of("8.5")), (change.__name__,
                                                                  report.findings)
