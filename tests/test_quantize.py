"""Q/DQ quantization of a small real CNN: where the Q/DQ nodes go, TensorRT's constraints, and
that the quantized model still computes what the float one does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from tests.models import fixtures  # noqa: E402
from trt_pose_td import quantize  # noqa: E402
from trt_pose_td.engines.onnxruntime import OrtEngine  # noqa: E402
from trt_pose_td.errors import ConfigError  # noqa: E402
from trt_pose_td.models import Preprocess, get_spec  # noqa: E402
from trt_pose_td.quantize import graph, simulate  # noqa: E402

SPEC = replace(get_spec("pp_tinypose_256x192"), name="small_cnn",
               preprocess=Preprocess((24, 32), "crop"), outputs={"heatmaps": "heatmaps"})


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return fixtures.small_conv_model(tmp_path_factory.mktemp("m") / "small.onnx")


@pytest.fixture(scope="module")
def calib():
    return np.random.default_rng(1).normal(0, 1, (24, 3, 32, 24)).astype(np.float32)


@pytest.fixture(scope="module", params=quantize.METHODS)
def quantized(request, model, calib, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / f"small.int8-{request.param}.onnx"
    return quantize.quantize_model(SPEC, model, calib, out, request.param,
                                   calibration_key="test-key")


def test_every_conv_gets_per_channel_symmetric_qdq(quantized):
    info = quantize.qdq_summary(quantized)
    assert info["convs"] == 3 and info["quantized_convs"] == 3
    assert info["per_channel_convs"] == 3
    assert info["nonzero_zero_points"] == 0 and info["int8_zero_points"]
    assert info["opset"] >= 13
    meta = info["metadata"]
    assert meta["trt_pose_td.quantize.calibration"] == "test-key"
    assert meta["trt_pose_td.quantize.calibration_samples"] == "24"
    assert len(meta["trt_pose_td.source_sha256"]) == 64


def test_qdq_only_in_front_of_convs_weights_and_biases_float(quantized):
    m = onnx.load(str(quantized))
    producers = {o: n for n in m.graph.node for o in n.output}
    consumers = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear":
            assert {c.op_type for c in consumers[n.output[0]]} == {"Conv"}
    add = next(n for n in m.graph.node if n.op_type == "Add")
    assert all(producers[i].op_type != "DequantizeLinear" for i in add.input)  # residual float
    inits = {i.name: i for i in m.graph.initializer}
    for conv in (n for n in m.graph.node if n.op_type == "Conv"):
        w_dq = producers[conv.input[1]]
        w_q = producers[w_dq.input[0]]
        assert w_q.op_type == "QuantizeLinear" and inits[w_q.input[0]].data_type == 1  # float
        if len(conv.input) > 2:
            assert conv.input[2] in inits and inits[conv.input[2]].data_type == 1


def test_quantized_model_runs_and_stays_close(quantized, model, calib):
    x = np.random.default_rng(2).normal(0, 1, (4, 3, 32, 24)).astype(np.float32)
    with OrtEngine(model) as ref, OrtEngine(quantized) as q:
        want = ref.infer({"image": x})["heatmaps"]
        got = q.infer({"image": x})["heatmaps"]
    nmse = ((got - want) ** 2).sum() / ((want - want.mean()) ** 2).sum()
    assert 0 < nmse < 0.02


def test_kept_float_nodes_have_no_qdq(model, calib, tmp_path):
    out = quantize.quantize_model(SPEC, model, calib, tmp_path / "x.onnx", "minmax",
                                  exclude_nodes=(quantize.FIRST_CONV, "head"))
    info = quantize.qdq_summary(out)
    assert info["quantized_convs"] == 1
    m = onnx.load(str(out))
    producers = {o: n for n in m.graph.node for o in n.output}
    for conv in (n for n in m.graph.node if n.name in ("conv1", "head")):
        assert all(getattr(producers.get(i), "op_type", "") != "DequantizeLinear"
                   for i in conv.input)                      # activation and weight float
    assert info["metadata"]["trt_pose_td.excluded"] == "conv1,head"
    with pytest.raises(ConfigError, match="no node named"):
        quantize.quantize_model(SPEC, model, calib, tmp_path / "y.onnx", "minmax",
                                exclude_nodes=("nope",))
    with pytest.raises(ConfigError, match="calibration method"):
        quantize.quantize_model(SPEC, model, calib, tmp_path / "y.onnx", "kl")


def test_sensitivity_ranks_convs_and_bypass_restores_float(quantized, model, calib):
    q = onnx.load(str(quantized))
    convs = graph.quantized_convs(q)
    ref = simulate.run_model(onnx.load(str(model)), "image", calib[:8])
    restored = simulate.run_model(graph.bypass_convs(q, convs), "image", calib[:8])
    assert simulate.output_error(restored, ref) < 1e-10
    ranking = quantize.conv_sensitivity(quantized, model, "image", calib[:8])
    assert sorted(c for c, _ in ranking) == sorted(convs)
    assert all(e > 0 for _, e in ranking)
    chosen, curve = quantize.pick_float_convs(quantized, model, "image", calib[:8], ranking, 0.0)
    assert curve[-1] == (3, pytest.approx(0.0, abs=1e-10)) and len(chosen) == 3


def test_quantized_path_naming_and_int8_config(tmp_path, monkeypatch):
    from trt_pose_td.config import PipelineConfig

    monkeypatch.setenv("TRT_POSE_TD_CACHE", str(tmp_path))
    p = quantize.quantized_path("pp_tinypose_256x192", "minmax")
    assert p == tmp_path / "quantized" / "pp_tinypose_256x192.int8-minmax.onnx"
    with pytest.raises(ConfigError, match="trt-pose-td quantize rtmdet_nano_person"):
        quantize.int8_config(PipelineConfig(precision="int8"))
    for name in ("rtmdet_nano_person", "pp_tinypose_256x192"):
        path = quantize.quantized_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    cfg = quantize.int8_config(PipelineConfig(precision="int8"))
    assert cfg.detector == str(quantize.quantized_path("rtmdet_nano_person"))
    assert cfg.detector_like == "rtmdet_nano_person_raw" and cfg.precision == "int8"
    assert "rtmdet_nano_person_raw.int8-" in cfg.detector  # NMS-in-graph -> raw-head twin
    assert quantize.int8_config(cfg) == cfg  # paths are kept: resolving twice is harmless
    own = quantize.int8_config(PipelineConfig(pose="/x/mine.onnx", precision="int8"))
    assert own.pose == "/x/mine.onnx"


@pytest.mark.parametrize("name", sorted(quantize.DEFAULT_EXCLUDES))
def test_shipped_keep_float_lists_name_convs_of_the_prepared_graph(name, tmp_path):
    from trt_pose_td.assets import model_path

    spec = get_spec(name)
    prepared = quantize.prepared_float_model(model_path(spec, False), tmp_path)
    names = quantize.resolve_excludes(onnx.load(str(prepared)), quantize.DEFAULT_EXCLUDES[name])
    assert len(names) == len(set(names)) == len(quantize.DEFAULT_EXCLUDES[name]) > 0
    assert quantize.default_method(name) in quantize.METHODS
    assert quantize.int8_source("rtmdet_nano_person") == "rtmdet_nano_person_raw"
