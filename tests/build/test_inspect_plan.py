"""``inspect_plan`` (the engine inspector after every INT8 or verbose build) on stand-ins of the
TensorRT module (:mod:`tests.engines.fake_trt`, TEST DOUBLES: no TensorRT, no GPU here).

What a stand-in can show: the runtime ``inspect_plan`` deserializes with is set up from the
sidecar (a version-compatible plan loads only with host code allowed, as in TensorRT >= 10), and
an inspector TensorRT does not provide, that raises or returns nothing costs a warning, not the
build whose engine is already written. What it cannot: the JSON a real TensorRT writes for a
version-compatible engine (tests/build/test_inspect.py parses recorded 8.x/10.x/11.x layouts).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace

import pytest

from tests.engines.fake_trt import VC_PLAN, Engine, fake_tensorrt, runtime_class
from trt_pose_td.build.inspect import inspect_plan, int8_collapse, layer_precisions
from trt_pose_td.engine_meta import EngineMetadata
from trt_pose_td.engines import trt_api
from trt_pose_td.engines.trt_api import TrtFeatures
from trt_pose_td.errors import EngineError

INT8_LAYERS = json.dumps({"Layers": [
    {"Name": "conv1", "LayerType": "CaskConvolution",
     "Inputs": [{"Name": "x", "Format/Datatype": "Thirty-two wide channel vectorized Int8"}]},
    {"Name": "head", "LayerType": "CaskConvolution",
     "Inputs": [{"Name": "y", "Format/Datatype": "Half"}]}]})


def _setup(monkeypatch, release):
    trt = fake_tensorrt(release)
    engine = Engine(trt, (1, 3, 64, 32), [{"input": ((1, 3, 64, 32), (1, 3, 64, 32))}],
                    ("input", "output"))
    engine.inspector_output = INT8_LAYERS
    trt.Runtime = runtime_class(trt, engine)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_api, "_LOGGER", None)
    monkeypatch.setattr(trt_api, "_PLUGINS", False)
    meta = EngineMetadata("m", "pose", "0" * 64, "int8", trt.__version__, "Orin", "8.7",
                          "trt-pose-td build --only pose")
    return engine, meta, TrtFeatures.parse(trt.__version__)


@pytest.mark.parametrize("release", ["10.3", "10.16"])
def test_version_compatible_plan_is_inspected_with_host_code_allowed(monkeypatch, release):
    _, meta, features = _setup(monkeypatch, release)
    vc = replace(meta, version_compatible=True)
    layers = layer_precisions(inspect_plan(VC_PLAN + b"...", vc, features))
    assert [(x.name, x.precision) for x in layers] == [("conv1", "int8"), ("head", "fp16")]
    with pytest.raises(EngineError, match="could not deserialize the engine it just built"):
        inspect_plan(VC_PLAN + b"...", meta, features)  # the control: a sidecar without the flag


def test_plain_plan_on_tensorrt_8_5(monkeypatch):
    _, meta, features = _setup(monkeypatch, "8.5")
    assert [x.precision for x in layer_precisions(inspect_plan(b"plan", meta, features))] == [
        "int8", "fp16"]


@pytest.mark.parametrize("output", [None, RuntimeError("inspector unavailable"), "", "  "])
def test_missing_inspector_output_is_a_warning_not_a_failed_build(monkeypatch, caplog, output):
    engine, meta, features = _setup(monkeypatch, "10.3")
    engine.inspector_output = output
    with caplog.at_level(logging.WARNING, logger="trt_pose_td.build.inspect"):
        text = inspect_plan(b"plan", meta, features)
    layers = layer_precisions(text)
    assert layers == [] and int8_collapse(layers, "int8") is None
    assert "layer precisions unknown" in caplog.text
