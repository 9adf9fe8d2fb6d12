"""The shipped .cu kernels executed on the CPU (bench/kernels_on_cpu.py) and controls showing the
harness fails when it should: a removed barrier, a barrier in divergent code, a perturbed twin.

Everything here runs the real kernel source compiled by g++ through bench/cpu_cuda/cuda_shim.h on
CPU threads (NOT a GPU), launched by the package's real ``Kernels`` host code. Skipped without a
C++ compiler. The half-precision conversion of the shim is checked against numpy's float16.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trt_pose_td.cuda import twins
from trt_pose_td.cuda.nvrtc import KERNEL_DIR
from trt_pose_td.decode import decode_heatmaps

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "kernels_on_cpu.py"
sys.path.insert(0, str(REPO / "bench"))

needs_cxx = pytest.mark.skipif(shutil.which("g++") is None,
                               reason="needs g++ (apt-get install g++)")
GROUPS = ("warp_affine_f32", "warp_affine_f16", "warp_frames_f32", "warp_frames_f16",
          "flip_average", "decode_heatmaps none", "decode_heatmaps quarter",
          "decode_heatmaps dark", "decode_simcc")


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=900)


def kernel_copy(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the package's kernel folder with ``old`` replaced by ``new`` in decode.cu."""
    folder = tmp_path / "kernels"
    shutil.copytree(KERNEL_DIR, folder)
    text = (folder / "decode.cu").read_text()
    assert text.count(old) == 1, f"decode.cu no longer holds {old!r}: update the control"
    (folder / "decode.cu").write_text(text.replace(old, new))
    return folder


@pytest.mark.slow
@needs_cxx
def test_kernels_on_cpu_equal_their_twins(tmp_path):
    """The CI set: every group on one line with its max difference, every case passing, every
    kernel the package loads launched."""
    from trt_pose_td.cuda.launchers import _FUNCTIONS

    out = tmp_path / "results.json"
    proc = run_script("--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for group in GROUPS:
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith(group + " ")]
        assert len(line) == 1 and re.search(r"max\|d\| \S+ +tol \S+ +ok ", line[0]), line
    data = json.loads(out.read_text())
    assert data["ok"] and all(c["ok"] for c in data["cases"])
    assert {g["group"] for g in data["groups"]} == set(GROUPS)
    assert all(g["max_diff"] <= g["tolerance"] for g in data["groups"])
    launched = {name for c in data["cases"] for name in c["kernels_launched"]}
    loaded = {name for names in _FUNCTIONS.values() for name in names}
    assert launched == loaded, (f"kernels without a case: {sorted(loaded - launched)}; add a "
                                "KernelCheck and rows in bench/cpu_cuda/cases.py")
    # the self-test every Kernels runs at open on a GPU, here on the CPU-compiled source
    assert re.search(r"^self-test at open +\d+ kernels .* ok ", proc.stdout, re.M), proc.stdout
    assert data["self_test"]["ok"]
    assert {c["kernel"] for c in data["self_test"]["checks"]} == loaded
    names = {c["case"] for c in data["cases"]}
    assert {"outside", "tiny", "huge", "64 crops 48x64", "1 crop 48x64", "1x1 maps", "2x3 maps",
            "nan", "inf", "40 persons x 17", "8x8: fewer pixels than threads"} <= names


@pytest.mark.slow
@needs_cxx
def test_control_removed_barrier_fails(tmp_path):
    """decode.cu without the barrier between the per-thread argmax and the tree reduction: the
    deterministic forward schedule reads shared memory no thread wrote yet, every time."""
    folder = kernel_copy(tmp_path, "    si[threadIdx.x] = i;\n    __syncthreads();\n",
                         "    si[threadIdx.x] = i;\n")
    out = tmp_path / "results.json"
    proc = run_script("--kernel-dir", str(folder), "--only", "decode_heatmaps none", "--json",
                      str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"^decode_heatmaps none .* (MISMATCH|POISON IN OUTPUT) ", proc.stdout, re.M)
    cases = {c["case"]: c for c in json.loads(out.read_text())["cases"]}
    assert not cases["forward schedule"]["ok"]
    assert cases["forward schedule"]["max_diff"] > 0


@pytest.mark.slow
@needs_cxx
def test_control_flip_average_without_its_gather_fails(tmp_path):
    """flip_average averaging the mirrored output unflipped: the harness's cases and the
    self-test at open both say so."""
    folder = kernel_copy(tmp_path, "b[base + gather[j]]", "b[base + j]")
    proc = run_script("--kernel-dir", str(folder), "--only", "flip_average")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"^flip_average .* MISMATCH ", proc.stdout, re.M), proc.stdout
    assert re.search(r"^self-test at open +FAIL: .*flip_average differs from its numpy twin",
                     proc.stdout, re.M), proc.stdout


@pytest.mark.slow
@needs_cxx
def test_control_divergent_barrier_is_reported(tmp_path):
    folder = kernel_copy(
        tmp_path, "if (threadIdx.x == 0) { off[0] = 0.0f; off[1] = 0.0f; }\n    __syncthreads();",
        "if (threadIdx.x == 0) { off[0] = 0.0f; off[1] = 0.0f; __syncthreads(); }")
    proc = run_script("--kernel-dir", str(folder), "--only", "decode_heatmaps quarter / gaussian")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "DIVERGENT BARRIER" in proc.stdout
    assert re.search(r"divergent __syncthreads in block \(0, 0, 0\): threads wait at lines "
                     r"\d+ and \d+", proc.stdout)


@pytest.fixture(scope="module")
def kit():
    """(kernels, driver) of the shipped .cu files on the shim, in this process."""
    if shutil.which("g++") is None:
        pytest.skip("needs g++ (apt-get install g++)")
    from cpu_cuda.host_driver import host_kernels, libraries

    with host_kernels(libraries(KERNEL_DIR)) as (kernels, drv):
        yield kernels, drv


def test_control_perturbed_twin_is_caught(kit, monkeypatch):
    """A twin one float32 ulp off is a mismatch at tolerance 0 (and the real twin is not)."""
    from cpu_cuda import cases, harness

    from trt_pose_td.cuda.driver import Stream

    kernels, drv = kit
    case = next(c for c in cases.cases() if c.group == "warp_affine_f32" and c.name == "partly")
    rng = np.random.default_rng(0)
    good = harness.run_case(case, kernels, Stream(), drv, rng)
    assert good.ok and good.max_diff == 0 and good.launches == 1
    check = cases.CHECKS["warp"]
    bad_twin = lambda x: np.nextafter(check.twin(x), np.float32(np.inf))  # noqa: E731
    monkeypatch.setitem(cases.CHECKS, "warp", cases.KernelCheck(
        check.kernel, check.make, check.run, bad_twin))
    bad = harness.run_case(case, kernels, Stream(), drv, np.random.default_rng(0))
    assert not bad.ok and bad.over > 0 and 0 < bad.max_diff < 1e-4
    assert harness.status([bad]) == "MISMATCH"


@pytest.mark.parametrize("hw", [(1, 1), (1, 9), (9, 1), (1, 2), (2, 3)])
def test_quarter_refinement_on_maps_one_cell_wide(hw):
    """No neighbour on both sides, no refinement: the CPU decoder and the twin return the cell
    centre (they raised IndexError on 1-wide maps) as decode.cu does."""
    maps = np.random.default_rng(1).random((3, 17, *hw)).astype(np.float32)
    cpu_k, cpu_s = decode_heatmaps(maps, (192, 256), "quarter")
    twin_k, twin_s = twins.decode_heatmaps_twin(maps, (192, 256), "quarter")
    np.testing.assert_array_equal(cpu_k, twin_k)
    np.testing.assert_array_equal(cpu_s, twin_s)
    if min(hw) == 1:  # no refinement at all: argmax cell centres
        none_k, _ = decode_heatmaps(maps, (192, 256), "none")
        np.testing.assert_array_equal(cpu_k, none_k)


@pytest.mark.parametrize("hw", [(1, 1), (1, 9), (9, 1)])
def test_quarter_kernel_on_maps_one_cell_wide(kit, hw):
    kernels, drv = kit
    from trt_pose_td.cuda.driver import Stream

    maps = drv.memory.array((2, 17, *hw), np.float32)
    maps[...] = np.random.default_rng(2).random(maps.shape)
    out = drv.memory.array((34, 3), np.float32)
    kernels.decode_heatmaps(Stream(), maps.ctypes.data, 34, hw, (192, 256), "quarter",
                            out.ctypes.data, 0.5, out.nbytes)
    kpts, scores = decode_heatmaps(np.array(maps), (192, 256), "quarter")
    np.testing.assert_array_equal(out[:, :2], kpts.reshape(-1, 2))
    np.testing.assert_array_equal(out[:, 2], scores.reshape(-1))
    drv.memory.free_arrays()


@needs_cxx
def test_half_conversions_match_numpy():
    """__half2float on all 65536 halves; float -> half (cvt.rn.f16.f32, round to nearest even) on
    every float whose low 13 bits are one of the rounding cases (every exponent and upper
    mantissa) plus 2M random floats. NaN: numpy keeps the payload, the GPU gives 0x7fff."""
    from cpu_cuda.build import ShimLibrary, build

    lib = ShimLibrary(build(KERNEL_DIR / "warp.cu"))
    halves = np.arange(1 << 16, dtype=np.uint16)
    got = lib.f16_to_f32(halves)
    ref = halves.view(np.float16).astype(np.float32)
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), ref[~nan].view(np.uint32))

    high = np.arange(1 << 19, dtype=np.uint32) << np.uint32(13)
    low = np.array([0, 1, 0xFFF, 0x1000, 0x1001, 0x1FFF], np.uint32)
    rand = np.random.default_rng(3).integers(0, 1 << 32, 1 << 21, dtype=np.uint32)
    floats = np.concatenate([(high[:, None] | low[None, :]).ravel(), rand]).view(np.float32)
    got16 = lib.f32_to_f16(floats)
    nan = np.isnan(floats)
    with np.errstate(over="ignore"):
        ref16 = floats.astype(np.float16).view(np.uint16)
    assert np.array_equal(got16[~nan], ref16[~nan])
    assert np.all(got16[nan] == 0x7FFF)


def test_inline_ptx_translation():
    """The asm statement becomes the shim call on the same line; unknown PTX stops the build."""
    from cpu_cuda.build import BuildError, translate

    text = (KERNEL_DIR / "warp.cu").read_text()
    out, kernels = translate(text, "warp.cu")
    assert kernels == ["warp_affine_f32", "warp_affine_f16", "warp_frames_f32", "warp_frames_f16"]
    assert out.count("\n") == text.count("\n") and "asm(" not in out
    assert "::shim::ptx_cvt_rn_f16_f32(h, v);" in out
    with pytest.raises(BuildError, match=r"x\.cu:2: inline PTX 'cvt\.rz\.f16\.f32' is not"):
        translate('// asm("ignored")\nasm("cvt.rz.f16.f32 %0, %1;" : "=h"(h) : "f"(v));', "x.cu")
