from pathlib import Path

import pytest

from trt_pose_td.build.options import BatchRange
from trt_pose_td.build.profiles import calibration_shapes, engine_profiles, timing_cache_path
from trt_pose_td.engine_meta import EngineMetadata
from trt_pose_td.errors import ConfigError

onnx = pytest.importorskip("onnx")


def onnx_inputs(path: Path) -> dict:
    """Input dims of an ONNX file as TensorRT's network reports them (-1 = dynamic)."""
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return {i.name: [d.dim_value if d.HasField("dim_value") else -1
                     for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input if i.name not in inits}


def packaged(name: str) -> Path:
    from trt_pose_td.assets import model_path
    from trt_pose_td.models import get_spec

    return model_path(get_spec(name), progress=False)


def test_keypoint_profiles_on_the_batch_axis():
    inputs = onnx_inputs(packaged("pp_tinypose_256x192"))
    assert inputs == {"image": [-1, 3, 256, 192]}
    profiles = engine_profiles(inputs, [BatchRange(1, 8, 32), BatchRange(1, 1, 4)], (192, 256))
    assert profiles[0] == {"image": {"min": [1, 3, 256, 192], "opt": [8, 3, 256, 192],
                                     "max": [32, 3, 256, 192]}}
    assert profiles[1]["image"]["max"] == [4, 3, 256, 192]
    meta = EngineMetadata("m", "pose", "0" * 64, "fp16", "10.3.0", "Orin", "8.7", "cmd",
                          profiles=profiles)
    assert meta.max_batch == 32  # what the runtime reads back from the sidecar


def test_detector_at_its_chosen_size():
    inputs = onnx_inputs(packaged("rtmdet_nano_person_raw"))
    assert inputs == {"input": [-1, 3, -1, -1]}
    for size in ((320, 320), (416, 416), (640, 640)):
        (profile,) = engine_profiles(inputs, [BatchRange(1, 1, 1)], size)
        assert profile["input"]["opt"] == [1, 3, size[1], size[0]]
    with pytest.raises(ConfigError, match="dynamic H axis.*--det-size"):
        engine_profiles(inputs, [BatchRange(1, 1, 1)], None)


def test_default_detector_profile_takes_several_cameras_and_follows_a_static_batch():
    """The default detector profile (1..8 frames, opt 1) on the dynamic-batch RTMDet; a static
    detector (YOLOX / PicoDet declare batch 1) keeps its batch instead of being refused."""
    from trt_pose_td.build.options import DEFAULT_DET_BATCH

    (profile,) = engine_profiles(onnx_inputs(packaged("rtmdet_nano_person_raw")),
                                 [DEFAULT_DET_BATCH], (416, 416))
    assert profile["input"] == {"min": [1, 3, 416, 416], "opt": [1, 3, 416, 416],
                                "max": [8, 3, 416, 416]}
    (static,) = engine_profiles({"images": [1, 3, 416, 416]}, [DEFAULT_DET_BATCH], (416, 416))
    assert static["images"]["max"] == [1, 3, 416, 416]
    meta = EngineMetadata("m", "detector", "0" * 64, "fp16", "10.3.0", "Orin", "8.7", "cmd",
                          profiles=[profile])
    assert meta.max_batch == 8  # what the runtime reads back: cameras per detector run


def test_static_models_refuse_other_shapes():
    inputs = {"images": [1, 3, 416, 416]}  # what yolox_nano_416.onnx declares: a static graph
    assert engine_profiles(inputs, [BatchRange(1, 1, 1)], (416, 416))[0]["images"]["max"] == [
        1, 3, 416, 416]
    with pytest.raises(ConfigError, match="fixed batch of 1"):
        engine_profiles(inputs, [BatchRange(1, 8, 32)], (416, 416))
    with pytest.raises(ConfigError, match="fixed at 416x416.*320x320"):
        engine_profiles(inputs, [BatchRange(1, 1, 1)], (320, 320))


def test_unsupported_inputs():
    with pytest.raises(ConfigError, match="NCHW"):
        engine_profiles({"x": [-1, 17]}, [BatchRange(1, 1, 1)])
    with pytest.raises(ConfigError, match="channel"):
        engine_profiles({"x": [-1, -1, 8, 8]}, [BatchRange(1, 1, 1)])
    with pytest.raises(ConfigError, match="no inputs"):
        engine_profiles({}, [BatchRange(1, 1, 1)])


def test_calibration_profile_is_one_shape():
    assert calibration_shapes({"image": [-1, 3, 256, 192]}, 8, (192, 256)) == {
        "image": [8, 3, 256, 192]}
    assert calibration_shapes({"images": [1, 3, 416, 416]}, 8, (416, 416)) == {
        "images": [1, 3, 416, 416]}  # a static batch calibrates one image at a time


def test_timing_cache_is_per_tensorrt_and_gpu(tmp_path):
    assert timing_cache_path(tmp_path, "10.3.0.30", "8.7").name == "timing-trt10.3.0.30-sm87.cache"
    assert timing_cache_path(tmp_path, "8.5.2.2", "7.2") != timing_cache_path(tmp_path, "8.5.2.2",
                                                                              "8.7")
