"""The precision flags the builder sets (runs without TensorRT: a stand-in records the flags).

An "fp32" engine must be FP32: TensorRT turns TF32 on by default, so on Ampere and newer its
float32 convolutions would round inputs to 10-bit mantissas unless the builder clears the flag.
"""

from __future__ import annotations

import sys
import types

import pytest

from trt_pose_td.build.builder import set_precision
from trt_pose_td.build.options import BuildOptions

from .conftest import make_env


class Config:
    """What set_precision touches on an ``IBuilderConfig``, starting from TensorRT's default."""

    def __init__(self):
        self.flags = {"TF32"}

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)


@pytest.fixture
def fake_trt(monkeypatch):
    trt = types.ModuleType("tensorrt")
    trt.BuilderFlag = types.SimpleNamespace(TF32="TF32", FP16="FP16", INT8="INT8")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


@pytest.mark.parametrize("precision, int8_mode, strongly_typed, version, flags", [
    ("fp32", "qdq", False, "8.5.2", set()),                     # TF32 cleared: true FP32
    ("fp32", "qdq", False, "10.3.0", set()),
    ("fp32", "qdq", True, "10.3.0", set()),                     # strongly typed FP32 ONNX too
    ("fp16", "qdq", False, "10.3.0", {"TF32", "FP16"}),
    ("int8", "calibrator", False, "8.5.2", {"TF32", "FP16", "INT8"}),
    ("int8", "qdq", True, "10.3.0", {"TF32"}),                  # types from the Q/DQ ONNX
])
def test_precision_flags(fake_trt, precision, int8_mode, strongly_typed, version, flags):
    config = Config()
    opts = BuildOptions(precision=precision, int8_mode=int8_mode, strongly_typed=strongly_typed)
    set_precision(config, opts, make_env(version))
    assert config.flags == flags
