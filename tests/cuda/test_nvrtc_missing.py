"""Without the NVRTC library, every NVRTC entry point is one DependencyError naming the install step
(gpu-review item 5: ``Kernels`` called :func:`supported_archs` first, which raised a bare
``RuntimeError: Function "nvrtcGetNumSupportedArchs" not found`` and the CLI printed a traceback).

Runs without NVRTC and without a GPU: one test uses the real cuda-python with the library really
absent (a subprocess that cannot see the ``nvidia-cuda-nvrtc`` wheel); the others stand in for
cuda-python 11.8's layout (JetPack 5), whose functions raise exactly that RuntimeError.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests import gpu_standin
from tests.engines.fake_trt import fake_tensorrt
from trt_pose_td.cli import main
from trt_pose_td.config import PipelineConfig
from trt_pose_td.cuda import launchers, nvrtc
from trt_pose_td.engines import trt_api
from trt_pose_td.errors import DependencyError
from trt_pose_td.pipelines.plan import engine_path, model_specs

REPO = Path(__file__).resolve().parents[2]


def _legacy_nvrtc_without_library() -> types.ModuleType:
    """cuda-python 11.8's ``cuda.nvrtc`` when libnvrtc.so cannot be loaded: every function
    raises ``RuntimeError('Function "<its C function>" not found')``."""
    mod = types.ModuleType("cuda.nvrtc")
    c_names = {"nvrtcGetSupportedArchs": "nvrtcGetNumSupportedArchs"}  # queried first inside
    for name in ("nvrtcVersion", "nvrtcGetSupportedArchs", "nvrtcCreateProgram"):
        def missing(*args, _c=c_names.get(name, name)):
            raise RuntimeError(f'Function "{_c}" not found')
        setattr(mod, name, missing)
    return mod


@pytest.fixture
def no_nvrtc(monkeypatch):
    monkeypatch.setattr(nvrtc, "_nvrtc", _legacy_nvrtc_without_library)


def test_every_entry_point_names_the_install_step(no_nvrtc):
    hint = ("cuda-python 11.8 loads libnvrtc.so.11.2: on JetPack 5 it comes with CUDA 11.4 "
            "(apt install cuda-nvrtc-11-4; /usr/local/cuda/lib64 on the library path)")
    for call, c_name in ((nvrtc.supported_archs, "nvrtcGetNumSupportedArchs"),
                         (nvrtc.nvrtc_version, "nvrtcVersion"),
                         (lambda: nvrtc.compile_source("", "warp.cu", "sm_87"),
                          "nvrtcCreateProgram")):
        with pytest.raises(DependencyError) as info:
            call()
        assert str(info.value) == f'NVRTC not found (Function "{c_name}" not found); {hint}'


def test_gpu_pipeline_without_nvrtc_is_one_line_from_the_cli(no_nvrtc, monkeypatch, tmp_path,
                                                              capsys):
    """``trt-pose-td run --backend tensorrt`` up to ``Kernels(device)`` (TensorRT and the GPU are
    stand-ins, the engines exist): exit 2, one line, no traceback."""
    gpu_standin.install(monkeypatch)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("10.3"))
    monkeypatch.setattr(trt_api, "_LOGGER", None)
    monkeypatch.setattr(launchers, "driver_api", lambda: types.SimpleNamespace())
    cfg = PipelineConfig(backend="tensorrt", engine_dir=str(tmp_path))
    for spec in model_specs(cfg):
        engine_path(cfg, spec).write_bytes(b"plan")
    code = main(["run", "--backend", "tensorrt", "--engine-dir", str(tmp_path),
                 "-o", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith('trt-pose-td run: error: NVRTC not found (Function '
                          '"nvrtcGetNumSupportedArchs" not found); cuda-python 11.8 loads')


def _site_packages_without_nvrtc(tmp_path: Path) -> Path:
    """This environment's site-packages as symlinks, minus the ``nvidia`` wheels' folder."""
    import cuda.bindings  # noqa: F401 (skips below when cuda-python is absent)

    site = Path(sys.modules["cuda.bindings"].__file__).resolve().parents[2]
    shadow = tmp_path / "site"
    shadow.mkdir()
    for entry in site.iterdir():
        if entry.name != "nvidia":
            (shadow / entry.name).symlink_to(entry)
    return shadow


def test_real_cuda_python_without_the_library(tmp_path):
    """The real cuda-python (12.9: ``DynamicLibNotFoundError``) with libnvrtc really absent: the
    base interpreter (no venv, so no venv site-packages for NVRTC's finder to search) on a copy of
    this site-packages without the ``nvidia`` folder."""
    pytest.importorskip("cuda.bindings")
    shadow = _site_packages_without_nvrtc(tmp_path)
    env = dict(os.environ, PYTHONPATH=f"{shadow}{os.pathsep}{REPO}", PYTHONNOUSERSITE="1",
               LD_LIBRARY_PATH="", CUDA_HOME="", CUDA_PATH="")
    python = getattr(sys, "_base_executable", sys.executable)
    probe = subprocess.run([python, "-c", "from cuda.bindings import nvrtc; nvrtc.nvrtcVersion()"],
                           env=env, capture_output=True, text=True, timeout=120)
    if probe.returncode == 0:
        pytest.skip("an NVRTC library outside the wheel is found here (system CUDA toolkit)")
    if "ModuleNotFoundError" in probe.stderr:
        pytest.skip(f"the base interpreter cannot use this site-packages: {probe.stderr[-200:]}")
    proc = subprocess.run([python, "-m", "trt_pose_td", "precompile", "--arch", "sm_87",
                           "--cache-dir", str(tmp_path / "k")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("trt-pose-td precompile: error: NVRTC not found (")
    assert proc.stderr.rstrip().endswith("install it with: pip install nvidia-cuda-nvrtc-cu12 "
                                         "(or use the CUDA toolkit's)")
    archs = subprocess.run([python, "-c", "from trt_pose_td.cuda.nvrtc import supported_archs\n"
                            "supported_archs()"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert "DependencyError: NVRTC not found" in archs.stderr, archs.stderr
