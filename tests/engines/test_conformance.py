"""One suite every Engine must pass, run over the tiny ONNX stand-ins.

ENGINE_FACTORIES maps a backend to ``factory(onnx_path, tmp_path) -> Engine``; backends that
cannot run on this machine are skipped by their factory.
"""

from __future__ import annotations

import numpy as np
import pytest

from trt_pose_td.engines import Engine
from trt_pose_td.errors import EngineError


def ort_factory(onnx_path, tmp_path) -> Engine:
    from trt_pose_td.engines.onnxruntime import OrtEngine

    return OrtEngine(onnx_path)


_TRT_ENGINES: dict = {}


def trt_factory(onnx_path, tmp_path) -> Engine:
    """A TensorRT engine built from the stand-in (batch profile 1..8), cached per session."""
    from tests.engines.trt_build import build_engine, require_gpu_tensorrt
    from trt_pose_td.engines.tensorrt import TrtEngine

    require_gpu_tensorrt()
    key = str(onnx_path)
    if key not in _TRT_ENGINES:
        _TRT_ENGINES[key] = build_engine(onnx_path, tmp_path / (onnx_path.stem + ".engine"))
    return TrtEngine(_TRT_ENGINES[key])


ENGINE_FACTORIES = {"onnxruntime": ort_factory, "tensorrt": trt_factory}
#: Marks per backend: TensorRT needs a GPU (``-m gpu`` selects it) and TensorRT.
ENGINE_MARKS = {"tensorrt": [pytest.mark.gpu, pytest.mark.trt]}


def _pool_reference(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    pooled = x.reshape(n, c, h // 4, 4, w // 4, 4).mean(axis=(3, 5)).mean(axis=1, keepdims=True)
    return np.repeat(pooled, 17, axis=1)


@pytest.fixture(params=[pytest.param(name, marks=ENGINE_MARKS.get(name, []))
                        for name in sorted(ENGINE_FACTORIES)])
def make_engine(request, tmp_path):
    factory = ENGINE_FACTORIES[request.param]
    engines = []

    def make(path):
        e = factory(path, tmp_path)
        engines.append(e)
        return e

    yield make
    for e in engines:
        e.close()


def test_specs_describe_the_model(make_engine, standins):
    e = make_engine(standins["heatmap"])
    assert list(e.inputs) == ["image"]
    spec = e.inputs["image"]
    assert spec.shape[1:] == (3, 256, 192) and spec.dtype == np.float32
    assert e.outputs["conv2d_441.tmp_1"].shape[1:] == (17, 64, 48)
    assert e.max_batch in (0,) or e.max_batch >= 8


@pytest.mark.parametrize("batch", [1, 5])
def test_infer_matches_reference(make_engine, standins, batch):
    e = make_engine(standins["heatmap"])
    x = np.random.default_rng(batch).standard_normal((batch, 3, 256, 192)).astype(np.float32)
    out = e.infer({"image": x})
    assert set(out) == {"conv2d_441.tmp_1"}
    np.testing.assert_allclose(out["conv2d_441.tmp_1"], _pool_reference(x), atol=1e-4)


def test_multiple_outputs(make_engine, standins):
    e = make_engine(standins["simcc"])
    x = np.zeros((2, 3, 256, 192), np.float32)
    x[1, :, 77, 33] = 50.0
    out = e.infer({"input": x})
    assert out["simcc_x"].shape == (2, 17, 384) and out["simcc_y"].shape == (2, 17, 512)
    assert out["simcc_x"][1, 0].argmax() // 2 == 33 and out["simcc_y"][1, 0].argmax() // 2 == 77


def test_bad_feeds_are_refused(make_engine, standins):
    e = make_engine(standins["heatmap"])
    good = np.zeros((1, 3, 256, 192), np.float32)
    with pytest.raises(EngineError, match="inputs"):
        e.infer({"wrong": good})
    with pytest.raises(EngineError, match="float32"):
        e.infer({"image": good.astype(np.float64)})
    with pytest.raises(EngineError, match="input image"):
        e.infer({"image": np.zeros((1, 3, 128, 96), np.float32)})


def test_close_is_idempotent_and_final(make_engine, standins):
    e = make_engine(standins["heatmap"])
    e.close()
    e.close()
    with pytest.raises(EngineError):
        e.infer({"image": np.zeros((1, 3, 256, 192), np.float32)})


def test_missing_and_corrupt_model_files(tmp_path):
    from trt_pose_td.engines import load_engine

    with pytest.raises(EngineError, match="not found"):
        load_engine(tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(EngineError, match="cannot load ONNX model"):
        load_engine(bad)


class _Doubling(Engine):
    """A backend with only ``_infer`` and ``closed``: what the base's ``infer`` adds."""

    source = "doubling"

    def __init__(self) -> None:
        from trt_pose_td.engines import TensorSpec

        self.runs = 0
        self.shut = False
        self._spec = TensorSpec("x", (-1, 3), np.dtype(np.float32))

    @property
    def inputs(self):
        return {"x": self._spec}

    @property
    def outputs(self):
        return {"y": self._spec}

    @property
    def closed(self) -> bool:
        return self.shut

    def _infer(self, feeds):
        self.runs += 1
        return {"y": feeds["x"] * 2}

    def close(self) -> None:
        self.shut = True


def test_the_base_checks_state_and_feeds_before_the_backend_runs():
    """The template method: ``Engine.infer`` refuses wrong feeds and a closed engine with the
    conformance suite's messages, and only checked feeds reach the backend's ``_infer``."""
    e = _Doubling()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(e.infer({"x": x})["y"], x * 2)
    for feeds, message in (({"z": x}, r"inputs \['x'\] expected, got \['z'\]"),
                           ({"x": x.astype(np.float64)}, "input x wants float32"),
                           ({"x": np.zeros((2, 4), np.float32)}, r"wants float32 \[-1, 3\]")):
        with pytest.raises(EngineError, match=message):
            e.infer(feeds)
    e.close()
    with pytest.raises(EngineError, match="doubling: engine is closed"):
        e.infer({"x": x})
    assert e.runs == 1


def test_an_engine_without_a_run_says_what_to_implement():
    class Nothing(_Doubling):
        _infer = Engine._infer

    with pytest.raises(NotImplementedError, match="Nothing must implement _infer"):
        Nothing().infer({"x": np.zeros((1, 3), np.float32)})
