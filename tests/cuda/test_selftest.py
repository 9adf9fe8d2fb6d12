"""The kernels' self-test at open (``Kernels.self_test``, ``trt_pose_td/cuda/selftest.py``) on a
CPU: the real host code and checks, with the host-memory GPU stand-in (``tests/gpu_standin``,
a TEST DOUBLE whose kernel bodies are the numpy twins) or a recording fake of the driver's
module and launch calls. What only a GPU shows (the compiled kernels passing it) is the ``gpu``
test at the end.

A wrong kernel (garbage, nothing written, a float16 rounding off, DARK refinement skipped) and
the CUDA errors of a kernel image that does not fit the GPU must all end as ONE-line
``EngineError`` s that name the GPU's SM, the compiled target and the fix, before any frame runs.
"""

from __future__ import annotations

import enum
from pathlib import Path

import numpy as np
import pytest

from tests import gpu_standin
from trt_pose_td.cuda import launchers, selftest, twins
from trt_pose_td.cuda.driver import CudaError
from trt_pose_td.errors import EngineError

FIX = "trt-pose-td precompile --force"


@pytest.fixture
def machine(monkeypatch):
    return gpu_standin.install(monkeypatch)


def _device():
    from tests.gpu_standin.driver import Device

    return Device()   # reports compute capability 8.7 -> sm_87


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text, text
    return text


def test_it_passes_on_the_standin_and_frees_what_it_used(machine):
    kernels = gpu_standin.StandinKernels(_device())
    checks = kernels.self_test()
    loaded = [name for names in launchers._FUNCTIONS.values() for name in names]
    assert sorted(c.kernel for c in checks) == sorted(loaded)  # every kernel the GPU loads
    assert all(c.ok and c.max_diff == 0.0 for c in checks), checks  # twins are exact
    assert kernels.launches == {name: 1 for name in loaded}
    assert machine.live() == ["device buffer of 24 bytes"]  # only the DARK weights it keeps
    kernels.close()
    assert machine.live() == []


def test_the_inputs_reach_the_edge_cases():
    """The one crop samples outside the frame and inside it; the DARK blob moves the keypoint
    off its cell, the border blob is left unrefined: each path a broken kernel could get wrong."""
    frame, affines, size, mean, std = selftest.warp_case()
    crop = twins.warp_batch_twin(frame, affines, size, mean, std, "rgb", 7.0)
    border = (np.float32(7.0) - np.float32(mean)) * (np.float32(1) / np.float32(std))
    outside = np.all(crop == border[::-1, None, None], axis=0)
    assert 0.1 < outside.mean() < 0.6
    heatmaps, input_size = selftest.heatmap_case()
    kpts, _ = twins.decode_heatmaps_twin(heatmaps, input_size, "dark")
    plain, _ = twins.decode_heatmaps_twin(heatmaps, input_size, "none")
    assert np.abs(kpts[0, 0] - plain[0, 0]).max() > 0.5   # refined by more than 0.5 px
    assert np.array_equal(kpts[0, 1], plain[0, 1])        # border: not refined


class _Wrong(gpu_standin.StandinKernels):
    """Stand-in kernels with one body deliberately wrong."""

    fault = ""

    def _warp(self, grid, args, dtype):
        if self.fault == "nothing":
            return                                      # output stays NaN
        super()._warp(grid, args, dtype)
        if self.fault == "garbage" or (self.fault == "f16" and dtype == np.float16):
            out, (w, h) = args[5], args[6:8]
            step = 0.01 if self.fault == "f16" else 3.0
            n = 3 * h * w * np.dtype(dtype).itemsize
            view = self._machine.view(out, n).view(dtype)
            view += dtype(step)


@pytest.mark.parametrize("fault, kernel, diff", [
    ("garbage", "warp_affine_f32", "differs from its numpy twin by 3 (tolerance 0.001)"),
    ("nothing", "warp_affine_f32", "left outputs unwritten (NaN where its numpy twin"),
    ("f16", "warp_affine_f16",
     "differs from its numpy twin by 0.01 (tolerance 0.001 + 0.001 x |twin|)"),
])
def test_a_wrong_warp_fails_in_one_line(machine, fault, kernel, diff):
    kernels = _Wrong(_device())
    kernels.fault = fault
    with pytest.raises(EngineError) as exc:
        kernels.self_test()
    text = one_line(exc)
    assert f"{kernel} {diff}" in text
    assert "sm_87" in text and "compiled for standin" in text and FIX in text
    kernels.close()
    assert machine.live() == []


def test_a_decoder_without_its_refinement_fails(machine, monkeypatch):
    """decode_heatmaps returning the bare argmax cell: off by the DARK offset (> 0.5 px)."""

    def unrefined(self, grid, args, dtype):
        hm_ptr, h, w, _, _, _, sx, sy, cell_offset, out = args
        heatmaps = self._read(hm_ptr, np.float32, (1, grid[0], h, w))
        kpts, scores = twins.decode_heatmaps_twin(heatmaps, (int(sx * w), int(sy * h)), "none",
                                                  cell_offset)
        self._write(out, np.concatenate([kpts[0], scores[0][:, None]], 1))

    monkeypatch.setattr(gpu_standin.StandinKernels, "_decode_heatmaps", unrefined)
    with pytest.raises(EngineError, match=r"decode_heatmaps differs from its numpy twin by "
                                          r"[0-9.]+ \(tolerance 0.001\)"):
        gpu_standin.StandinKernels(_device()).self_test()


def test_a_multi_frame_warp_reading_the_wrong_frame_fails(machine, monkeypatch):
    """warp_frames taking every item from frame 0 (a wrong frame index or table stride): the
    mirrored item, read from the second frame, comes out different."""
    body = gpu_standin.StandinKernels._warp_frames

    def first_frame_only(self, grid, args, dtype):
        items_ptr = args[1]
        items = self._read(items_ptr, twins.WARP_ITEM, (grid[2],))
        items["frame"] = 0
        self._write(items_ptr, items)
        body(self, grid, args, dtype)

    monkeypatch.setattr(gpu_standin.StandinKernels, "_warp_frames", first_frame_only)
    with pytest.raises(EngineError, match=r"warp_frames_f32 differs from its numpy twin by "):
        gpu_standin.StandinKernels(_device()).self_test()


def test_a_flip_average_that_does_not_flip_fails(machine, monkeypatch):
    def unflipped(self, grid, args, dtype):
        a_ptr, b_ptr, _, item = args
        shape = (grid[1], item)
        a, b = self._read(a_ptr, np.float32, shape), self._read(b_ptr, np.float32, shape)
        self._write(a_ptr, (a + b) * np.float32(0.5))

    monkeypatch.setattr(gpu_standin.StandinKernels, "_flip_average", unflipped)
    with pytest.raises(EngineError, match=r"flip_average differs from its numpy twin by "):
        gpu_standin.StandinKernels(_device()).self_test()


@pytest.mark.parametrize("error, cause", [
    ("CUDA_ERROR_NO_BINARY_FOR_GPU: no kernel image is available for execution on the device",
     "the kernel image was compiled for another GPU"),
    ("CUDA_ERROR_INVALID_PTX: a PTX JIT compilation failed",
     "the driver cannot compile this PTX: NVRTC newer than the driver"),
    ("CUDA_ERROR_NOT_FOUND: named symbol not found",
     "the kernel image lacks a kernel (a stale cache)"),
])
def test_a_launch_error_names_the_gpu_the_target_and_the_fix(machine, monkeypatch, error, cause):
    def refuse(self, name, grid, block, stream, args):
        raise CudaError(f"CUDA call failed: {error}")

    monkeypatch.setattr(gpu_standin.StandinKernels, "_launch", refuse)
    kernels = gpu_standin.StandinKernels(_device())
    with pytest.raises(EngineError) as exc:
        kernels.self_test()
    text = one_line(exc)
    assert text.startswith("CUDA kernel check failed while launching warp_affine_f32: "
                           f"CUDA call failed: {error} ({cause}); GPU host-memory stand-in")
    assert "(sm_87, driver CUDA 12.4), kernels compiled for standin by" in text
    assert FIX in text
    kernels.close()
    assert machine.live() == []


# -- the real Kernels.__init__ with a recording fake of the driver's module / launch calls ------
class Result(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_NO_BINARY_FOR_GPU = 209
    CUDA_ERROR_NOT_FOUND = 500


class FakeDriver:
    """cuModuleLoadData / cuModuleGetFunction / cuModuleUnload / cuLaunchKernel returning the
    chosen results; ``calls`` records them. A launch that "succeeds" computes nothing."""

    def __init__(self, load=Result.CUDA_SUCCESS, function=Result.CUDA_SUCCESS,
                 launch=Result.CUDA_SUCCESS):
        self.load, self.function, self.launch = load, function, launch
        self.calls = []

    def cuModuleLoadData(self, image):
        self.calls.append("load")
        return self.load, ("module", len(self.calls))

    def cuModuleGetFunction(self, module, name):
        self.calls.append(("function", name.decode()))
        return self.function, name.decode()

    def cuModuleUnload(self, module):
        self.calls.append("unload")
        return (Result.CUDA_SUCCESS,)

    def cuLaunchKernel(self, fn, *args):
        self.calls.append(("launch", fn))
        return (self.launch,)


@pytest.fixture
def fake_driver(machine, monkeypatch, tmp_path):
    """Kernels load through the fake: NVRTC knows sm_72 only, so an 8.7 device gets PTX."""
    drv = FakeDriver()
    monkeypatch.setattr(launchers, "driver_api", lambda: drv)
    monkeypatch.setattr(launchers, "supported_archs", lambda: [72])

    def load_or_compile(source, target, cache_dir=None, refresh=False):
        drv.calls.append(("image", source, target, refresh))
        return b".entry", tmp_path / f"{Path(source).stem}.{target}.0123.ptx"

    monkeypatch.setattr(launchers, "load_or_compile", load_or_compile)
    return drv


def test_open_runs_the_self_test_unless_disabled(fake_driver):
    fake_driver.launch = Result.CUDA_ERROR_NO_BINARY_FOR_GPU
    with pytest.raises(EngineError) as exc:
        launchers.Kernels(_device())
    text = one_line(exc)
    assert "while launching warp_affine_f32: CUDA call failed: CUDA_ERROR_NO_BINARY_FOR_GPU" in text
    assert "(sm_87, driver CUDA 12.4), kernels compiled for compute_72" in text
    assert f"`{FIX}` (or delete " in text and "warp.compute_72.0123.ptx" in text
    assert fake_driver.calls.count("load") == fake_driver.calls.count("unload") == 2
    fake_driver.calls.clear()
    kernels = launchers.Kernels(_device(), self_test=False)
    assert not [c for c in fake_driver.calls if c[0] == "launch"]
    kernels.close()


def test_a_launch_that_computes_nothing_fails_the_open(fake_driver, machine):
    with pytest.raises(EngineError, match=r"warp_affine_f32 left outputs unwritten \(NaN"):
        launchers.Kernels(_device())
    assert machine.live() == []   # test buffers and DARK weights released


@pytest.mark.parametrize("field, result, doing, cause", [
    ("load", Result.CUDA_ERROR_NO_BINARY_FOR_GPU, "loading the kernels",
     "the kernel image was compiled for another GPU"),
    ("function", Result.CUDA_ERROR_NOT_FOUND, "loading the kernels",
     "the kernel image lacks a kernel (a stale cache)"),
])
def test_a_module_the_gpu_refuses_is_one_line(fake_driver, field, result, doing, cause):
    setattr(fake_driver, field, result)
    with pytest.raises(EngineError) as exc:
        launchers.Kernels(_device())
    text = one_line(exc)
    assert text.startswith(f"CUDA kernel check failed while {doing}: CUDA call failed: "
                           f"{result.name} ({cause}); GPU host-memory stand-in (no GPU) (sm_87")
    assert FIX in text
    if field == "load":  # a refused image is recompiled once before giving up
        assert ("image", "warp.cu", "compute_72", True) in fake_driver.calls
    # what loaded before the failure is unloaded: nothing, or the warp module
    assert fake_driver.calls.count("unload") == (0 if field == "load" else 1)


def test_the_cli_prints_one_line_and_writes_nothing(fake_driver, monkeypatch, tmp_path, capsys,
                                                      sample_photo):
    """``trt-pose-td run --backend tensorrt`` on a GPU whose kernel image does not fit: the
    pipeline opens (TensorRT import stubbed, engine files present), the self-test refuses."""
    import sys
    import types

    from trt_pose_td.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    fake_driver.launch = Result.CUDA_ERROR_NO_BINARY_FOR_GPU
    engines = tmp_path / "engines"
    engines.mkdir()
    for name in ("rtmdet_nano_person_raw.fp16.engine", "pp_tinypose_256x192.fp16.engine"):
        (engines / name).write_bytes(b"not reached")
    out = tmp_path / "out"
    code = main(["run", str(sample_photo), "--backend", "tensorrt", "--engine-dir", str(engines),
                 "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("trt-pose-td run: error: CUDA kernel check failed while launching "
                          "warp_affine_f32") and FIX in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.gpu
def test_the_compiled_kernels_pass_on_this_gpu(cuda_device, tmp_path):
    """On a real GPU: the kernels NVRTC compiles for it pass, every difference 0."""
    kernels = launchers.Kernels(cuda_device, tmp_path, self_test=False)
    try:
        checks = kernels.self_test()
    finally:
        kernels.close()
    assert [(c.kernel, c.max_diff) for c in checks] == [
        (name, 0.0) for name in ("warp_affine_f32", "warp_affine_f16", "decode_heatmaps",
                                 "decode_simcc")]
