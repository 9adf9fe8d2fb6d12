"""TrtEngine specifics beyond the conformance suite (markers gpu + trt): device-pointer runs,
profile limits, outputs sized by the data, refusing engines that do not fit."""

from __future__ import annotations

import numpy as np
import pytest

from trt_pose_td.errors import EngineError

pytestmark = [pytest.mark.gpu, pytest.mark.trt]


@pytest.fixture(scope="module")
def heatmap_engine(standins, trt, tmp_path_factory):
    from tests.engines.trt_build import build_engine

    return build_engine(standins["heatmap"], tmp_path_factory.mktemp("e") / "hm.engine")


def _nonzero_model(path):
    """x [B, 8] -> indices of x > 0: an output whose size only the data decides."""
    from onnx import TensorProto, helper

    from tests.models.fixtures import _save

    nodes = [helper.make_node("Constant", [], ["zero"], value=helper.make_tensor(
                 "z", TensorProto.FLOAT, [], [0.0])),
             helper.make_node("Greater", ["x", "zero"], ["pos"]),
             helper.make_node("NonZero", ["pos"], ["idx"])]
    graph = helper.make_graph(
        nodes, "nonzero", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 8])],
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [2, "n"])])
    return _save(graph, path)


def test_infer_device_reads_a_slice_of_a_larger_batch(heatmap_engine, cuda_device):
    """Items 5..7 of a 12-item device batch, read through an address inside it. Built to fail
    when the slice path is wrong: the engine's own input buffer holds items 0..2 first (a run
    that ignored the address would return those), the result is copied out of the pinned buffer
    before the next run overwrites it, and the reference is numpy, not the engine."""
    from tests.engines.test_conformance import _pool_reference
    from trt_pose_td.cuda.driver import DeviceBuffer, Stream
    from trt_pose_td.engines.tensorrt import TrtEngine

    name = "conv2d_441.tmp_1"
    x = np.random.default_rng(0).standard_normal((12, 3, 256, 192)).astype(np.float32)
    expected = _pool_reference(x[5:8])
    for other in (x[0:3], x[4:7], x[6:9]):  # the data tells neighbouring slices apart
        assert np.abs(expected - _pool_reference(other)).max() > 0.1
    with TrtEngine(heatmap_engine, cuda_device) as engine, Stream() as stream, \
            DeviceBuffer(x.nbytes) as big:
        assert engine.max_batch == 8 and engine.profile("image")[1][0] == 8
        first = engine.infer({"image": x[0:3]})[name]  # own input buffer: items 0..2
        np.testing.assert_allclose(first, _pool_reference(x[0:3]), atol=1e-5)
        big.upload(x, stream)
        item = x[0].nbytes
        shapes = engine.infer_device({"image": (3, 3, 256, 192)}, stream,
                                     {"image": big.ptr + 5 * item})
        assert tuple(shapes[name]) == (3, 17, 64, 48)
        view = engine.fetch_outputs(stream, shapes)[name]
        stream.synchronize()
        out = view.copy()
        engine.infer({"image": x[0:3]})  # reuses the pinned output buffer behind `view`
        np.testing.assert_allclose(out, expected, atol=1e-5)
        with pytest.raises(EngineError, match="outside the engine's profile"):
            engine.infer({"image": np.zeros((9, 3, 256, 192), np.float32)})


def test_outputs_sized_by_the_data(trt, tmp_path):
    from tests.engines.trt_build import build_engine
    from trt_pose_td.engines.tensorrt import TrtEngine

    try:
        path = build_engine(_nonzero_model(tmp_path / "nz.onnx"), tmp_path / "nz.engine",
                            batch=(1, 2, 4))
    except RuntimeError as exc:
        pytest.skip(f"this TensorRT cannot build NonZero: {exc}")
    with TrtEngine(path) as engine:
        for x in (np.array([[1, -1, 2, 0, 0, 0, 0, 3]], np.float32),
                  -np.ones((3, 8), np.float32), np.ones((4, 8), np.float32)):
            idx = engine.infer({"x": x})["idx"]
            np.testing.assert_array_equal(idx, np.stack(np.nonzero(x > 0)))


def test_wrong_contract_and_missing_sidecar(heatmap_engine, tmp_path):
    from trt_pose_td.engines.tensorrt import TrtEngine
    from trt_pose_td.models import get_spec

    with pytest.raises(EngineError, match="does not look like"):
        TrtEngine(heatmap_engine, spec=get_spec("rtmpose_s"))
    lone = tmp_path / "lone.engine"
    lone.write_bytes(heatmap_engine.read_bytes())
    with pytest.raises(EngineError, match="provenance"):
        TrtEngine(lone)
    with pytest.raises(EngineError, match="built from ONNX"):
        TrtEngine(heatmap_engine, onnx_sha256="0" * 64)
