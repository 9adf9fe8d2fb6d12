"""The GPU runtime's behaviour where no GPU is present: checked calls, one-line errors, fallbacks.

On a GPU machine the "no driver" tests skip (the gpu-marked tests cover that side).
"""

from __future__ import annotations

import numpy as np
import pytest

from trt_pose_td.errors import DependencyError, TrtPoseError

try:  # cuda-python in either layout (cuda.bindings.driver, or cuda.cuda before 12.6)
    from trt_pose_td.cuda.driver import bindings, cuda_module

    bindings()
except DependencyError as exc:
    pytest.skip(f"cuda-python is not installed: {exc}", allow_module_level=True)


def _no_gpu() -> None:
    from trt_pose_td.cuda.driver import gpu_available

    if gpu_available():
        pytest.skip("a CUDA GPU is present: this checks the machine without one")


def test_check_returns_values_and_raises_named_errors():
    from trt_pose_td.cuda.driver import CudaError, check

    driver, nvrtc = bindings(), cuda_module("nvrtc", "nvrtc")

    ok = driver.CUresult.CUDA_SUCCESS
    assert check(ok) is None and check(ok, 5) == 5 and check(ok, 1, 2) == (1, 2)
    with pytest.raises(CudaError, match="CUDA_ERROR_OUT_OF_MEMORY"):
        check(driver.CUresult.CUDA_ERROR_OUT_OF_MEMORY, None)
    with pytest.raises(CudaError, match="NVRTC_ERROR_COMPILATION"):
        check(nvrtc.nvrtcResult.NVRTC_ERROR_COMPILATION)
    assert issubclass(CudaError, TrtPoseError)


def test_no_driver_is_one_clear_line():
    _no_gpu()
    from trt_pose_td.cuda.driver import CudaUnavailableError, Device, Stream

    for make in (Device, Stream):
        with pytest.raises(CudaUnavailableError) as info:
            make()
        msg = str(info.value)
        assert "\n" not in msg and "--backend onnxruntime" in msg
        assert isinstance(info.value, DependencyError)


def test_tensorrt_engine_without_tensorrt_says_where_it_comes_from(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed")
    except ImportError:
        pass
    from trt_pose_td.engines import load_engine

    with pytest.raises(DependencyError, match="JetPack"):
        load_engine(tmp_path / "x.engine", "tensorrt")


def test_auto_backend_falls_back_to_onnxruntime(standins):
    _no_gpu()
    from trt_pose_td.api import open_pipeline
    from trt_pose_td.config import PipelineConfig
    from trt_pose_td.pipelines.gpu import GpuPipeline
    from trt_pose_td.pipelines.plan import resolve_backend, tensorrt_unavailable

    cfg = PipelineConfig(detector=str(standins["detector"]), pose=str(standins["heatmap"]),
                         detector_like="rtmdet_nano_person", backend="auto")
    assert tensorrt_unavailable(cfg) and resolve_backend(cfg) == "onnxruntime"
    with open_pipeline(cfg) as pipe:
        assert not isinstance(pipe, GpuPipeline)
        from trt_pose_td.types import Frame

        assert len(pipe(Frame(np.zeros((480, 640, 3), np.uint8))).poses) == 2


def test_tensorrt_backend_here_is_a_one_line_cli_error(standins, tmp_path, capsys):
    _no_gpu()
    import cv2

    from trt_pose_td.cli import main

    cv2.imwrite(str(tmp_path / "frame.jpg"), np.zeros((48, 64, 3), np.uint8))
    rc = main(["run", str(tmp_path / "frame.jpg"), "-o", str(tmp_path / "out"), "--backend",
               "tensorrt", "--detector", str(standins["detector"]), "--detector-like",
               "rtmdet_nano_person", "--pose", str(standins["heatmap"])])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("trt-pose-td run: error:") and "\n" not in err
    assert "TensorRT" in err or "GPU" in err or "driver" in err


def test_engine_paths_follow_the_builder_names(tmp_path):
    from trt_pose_td.config import PipelineConfig
    from trt_pose_td.models import get_spec
    from trt_pose_td.pipelines.plan import engine_path

    spec = get_spec("pp_tinypose_256x192")
    cfg = PipelineConfig(engine_dir=str(tmp_path))
    assert engine_path(cfg, spec) == tmp_path / "pp_tinypose_256x192.fp16.engine"
    cfg = PipelineConfig(engine_dir=str(tmp_path), precision="int8", int8_mode="qdq")
    assert engine_path(cfg, spec).name == "pp_tinypose_256x192.int8-qdq.engine"
    # int8 without a mode means qdq, for the CLI, the TOML and the Python API alike
    assert engine_path(PipelineConfig(precision="int8"), spec).name == \
        "pp_tinypose_256x192.int8-qdq.engine"
