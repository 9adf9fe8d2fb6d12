import pytest

from trt_pose_td.build.options import (
    DEFAULT_DET_BATCH,
    NO_CUBLAS_CUDNN,
    BatchRange,
    BuildOptions,
    LayerPrecision,
    check_supported,
    parse_tactic_sources,
    tactic_mask,
)
from trt_pose_td.errors import ConfigError

from .conftest import make_env

# Bit positions of trt.TacticSource in TensorRT 8.5 ... 10.16 (int(trt.TacticSource.X)).
BITS = {"CUBLAS": 0, "CUBLAS_LT": 1, "CUDNN": 2, "EDGE_MASK_CONVOLUTIONS": 3,
        "JIT_CONVOLUTIONS": 4}


def test_batch_ranges():
    assert BatchRange.parse("1,8,32") == BatchRange(1, 8, 32)
    assert BatchRange.parse("4") == BatchRange(4, 4, 4)
    assert str(BatchRange(1, 8, 32)) == "1,8,32"
    for bad in ("8,1,32", "0,1,2", "1,2", "a,b,c", "1,40,32"):
        with pytest.raises(ConfigError):
            BatchRange.parse(bad)


def test_layer_precision_rules_match_names_and_types():
    rule = LayerPrecision.parse("*softmax*=FP32")
    assert rule == LayerPrecision("*softmax*", "fp32")
    assert rule.matches("head/softmax_1", "SOFTMAX") and not rule.matches("conv1", "SOFTMAX")
    by_type = LayerPrecision.parse("type:reduce=fp16")
    assert by_type.matches("anything", "REDUCE") and not by_type.matches("reduce", "CONVOLUTION")
    for bad in ("conv1", "=fp32", "conv1=int8"):
        with pytest.raises(ConfigError, match="PATTERN=fp32"):
            LayerPrecision.parse(bad)


def test_tactic_source_specs():
    default = 0b11101  # TensorRT 8.5's default: all but CUBLAS_LT
    assert tactic_mask(None, default, BITS) == default
    # the gpu-stage payload: no cuBLAS / cuBLASLt / cuDNN
    assert tactic_mask(NO_CUBLAS_CUDNN, default, BITS) == 0b11000
    assert tactic_mask("+CUBLAS_LT", default, BITS) == 0b11111
    assert tactic_mask("CUDNN,JIT_CONVOLUTIONS", default, BITS) == 0b10100
    assert tactic_mask("none", default, BITS) == 0
    assert tactic_mask("+jit_convolutions", 0, BITS) == 0b10000  # names are case-insensitive
    with pytest.raises(ConfigError, match="unknown tactic source 'CUBLAS_XT'"):
        parse_tactic_sources("-CUBLAS_XT")
    with pytest.raises(ConfigError, match="both added and removed"):
        parse_tactic_sources("+CUDNN,-CUDNN")


def test_options_validate_on_construction():
    assert BuildOptions().roles == ("detector", "pose")
    assert BuildOptions(only="pose").roles == ("pose",)
    assert BuildOptions(precision="fp16").int8 is None
    assert BuildOptions(precision="int8", int8_mode="calibrator").int8 == "calibrator"
    for kw, msg in ((dict(precision="bf16"), "precision"), (dict(int8_mode="minmax"), "INT8"),
                    (dict(only="both"), "--only"), (dict(workspace_mib=0), "--workspace"),
                    (dict(dla_core=-1), "--dla-core"), (dict(pose_batches=()), "profile"),
                    (dict(tactic_sources="+FOO"), "tactic")):
        with pytest.raises(ConfigError, match=msg):
            BuildOptions(**kw)


def test_profile_max_smaller_than_requested_batch_is_one_clear_error():
    BuildOptions(max_batch=32)  # the default profile 1,8,32 takes it
    with pytest.raises(ConfigError) as exc:
        BuildOptions(pose_batches=(BatchRange(1, 4, 16), BatchRange(1, 1, 8)), max_batch=20)
    assert "largest profile max is 16" in str(exc.value) and "--pose-batch 1,8,20" in str(exc.value)


def test_engine_options_say_what_the_engine_depends_on():
    det = BuildOptions(det_size=(416, 416)).engine_options("detector")
    pose = BuildOptions(det_size=(416, 416)).engine_options("pose")
    assert det["det_size"] == [416, 416] and "det_size" not in pose
    assert det["batches"] == ["1,1,8"] and pose["batches"] == ["1,8,32"]
    cal = BuildOptions(precision="int8", int8_mode="calibrator").engine_options("pose")
    assert cal["int8_mode"] == "calibrator" and cal["calib_batch"] == 8
    assert "calib_batch" not in BuildOptions(precision="int8").engine_options("pose")


@pytest.mark.parametrize("opts, env, message", [
    (BuildOptions(precision="int8", int8_mode="calibrator"), make_env("11.0.0"),
     "--int8-mode calibrator needs TensorRT <= 10.*Use --int8-mode qdq"),
    (BuildOptions(precision="fp16"), make_env("11.0.0"), "strongly typed networks only"),
    (BuildOptions(precision="fp32", strongly_typed=True), make_env("8.5.2.2"),
     "--strongly-typed needs TensorRT >= 10"),
    (BuildOptions(precision="fp16", strongly_typed=True), make_env("10.3.0"),
     "not fp16"),
    (BuildOptions(precision="int8", int8_mode="calibrator", strongly_typed=True),
     make_env("10.3.0"), "cannot use the implicit INT8 calibrator"),
    (BuildOptions(layer_precisions=(LayerPrecision("*", "fp32"),), precision="int8",
                  strongly_typed=True), make_env("10.3.0"), "weakly typed"),
    (BuildOptions(version_compatible=True), make_env("8.5.2.2"),
     "--version-compatible needs TensorRT >= 10"),
    (BuildOptions(dla_core=0), make_env("10.3.0", "NVIDIA H100 80GB HBM3", "9.0", dla=0),
     "GPU NVIDIA H100 80GB HBM3 .* has no DLA"),
    (BuildOptions(dla_core=2), make_env("10.3.0", "Orin", "8.7", dla=2), "numbered 0..1"),
    (BuildOptions(dla_core=0, precision="fp32"), make_env("10.3.0"), "FP16 or INT8 only"),
    (BuildOptions(dla_core=0), make_env("8.5.2.2", "Orin", "8.7", dla=2),
     r"--dla-core: DLA runs static shapes only .* the pose profile 1,8,32 \(--pose-batch\) is "
     r"dynamic.*--only detector --dla-core N"),
    (BuildOptions(dla_core=0, only="detector", det_batch=BatchRange(1, 2, 4)),
     make_env("10.3.0", "Orin", "8.7", dla=2), r"the detector profile 1,2,4 \(--det-batch\)"),
])
def test_requests_this_tensorrt_or_gpu_cannot_honour(opts, env, message):
    with pytest.raises(ConfigError, match=message) as exc:
        check_supported(opts, env)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("opts, version", [
    (BuildOptions(precision="int8", int8_mode="calibrator"), "10.16.1"),
    (BuildOptions(precision="int8", int8_mode="calibrator"), "8.5.2.2"),
    (BuildOptions(precision="int8", int8_mode="qdq"), "11.0.0"),
    (BuildOptions(precision="fp32", strongly_typed=True), "10.3.0"),
    (BuildOptions(precision="fp16", dla_core=1, version_compatible=True, only="detector"),
     "10.3.0"),
    (BuildOptions(layer_precisions=(LayerPrecision("type:SOFTMAX", "fp32"),)), "8.5.2.2"),
])
def test_requests_that_are_honoured(opts, version):
    check_supported(opts, make_env(version))


def test_dla_takes_the_default_detector_profile_at_batch_1():
    """The default detector profile is dynamic (1..8 cameras); DLA runs static shapes only, so
    with --dla-core the default becomes batch 1, while an explicit --det-batch stays as given."""
    assert BuildOptions().batches("detector") == (DEFAULT_DET_BATCH,)
    assert BuildOptions(dla_core=0).batches("detector") == (BatchRange(1, 1, 1),)
    given = BatchRange(1, 2, 4)
    assert BuildOptions(dla_core=0, det_batch=given).batches("detector") == (given,)
