"""The kernels compile with NVRTC for the Jetson and datacenter targets, no GPU needed (CI)."""

from __future__ import annotations

import pytest

from trt_pose_td.cli import main
from trt_pose_td.cuda import nvrtc
from trt_pose_td.errors import ConfigError, DependencyError

ENTRIES = {"warp.cu": (b"warp_affine_f32", b"warp_affine_f16", b"warp_frames_f32",
                       b"warp_frames_f16"),
           "decode.cu": (b"decode_heatmaps", b"decode_simcc", b"flip_average")}


@pytest.fixture(scope="module", autouse=True)
def _nvrtc():
    try:  # cuda-python in either layout (cuda.bindings.nvrtc, or cuda.nvrtc before 12.6)
        nvrtc.nvrtc_version()
    except DependencyError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("target", ["sm_72", "sm_87", "sm_90", "compute_72", "compute_87"])
def test_every_kernel_compiles(target, tmp_path):
    rows = nvrtc.precompile([target], tmp_path)
    assert [r[0] for r in rows] == list(nvrtc.KERNEL_SOURCES)
    for name, tgt, path, size in rows:
        image = path.read_bytes()
        assert tgt == target and len(image) == size > 1000
        assert image.startswith(b"\x7fELF") if target.startswith("sm_") else b".entry" in image
        for entry in ENTRIES[name]:
            assert entry in image, f"{entry!r} missing from {path.name}"


def test_float_arithmetic_is_not_contracted():
    """--fmad=false: no fused multiply-add in the warp, none in float32 decode code, which is
    what lets the numpy twins reproduce the kernels exactly (double fma only inside log())."""
    warp = nvrtc.compile_source(nvrtc.kernel_source("warp.cu"), "warp.cu", "compute_87")
    decode = nvrtc.compile_source(nvrtc.kernel_source("decode.cu"), "decode.cu", "compute_87")
    for ptx in (warp, decode):
        assert b"fma.rn.f32" not in ptx and b"mad.f32" not in ptx and b"mad.rn.f32" not in ptx
    assert b"mul.rn.f32" in warp  # explicitly rounded products: ptxas may not fuse them either
    contracted = nvrtc.compile_source(nvrtc.kernel_source("warp.cu"), "warp.cu", "compute_87",
                                      options=("--fmad=true",))
    assert b"fma.rn.f32" in contracted  # the check above can fail


def test_cache_hit_miss_and_key(tmp_path, monkeypatch):
    image, path = nvrtc.load_or_compile("warp.cu", "sm_87", tmp_path)
    assert path.parent == tmp_path and path.read_bytes() == image

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled although cached")

    monkeypatch.setattr(nvrtc, "compile_source", no_compile)
    again, same = nvrtc.load_or_compile("warp.cu", "sm_87", tmp_path)
    assert same == path and again == image
    src = nvrtc.kernel_source("warp.cu")
    key = nvrtc.cache_key(src, "sm_87", (12, 6))
    assert len({key, nvrtc.cache_key(src, "sm_72", (12, 6)),
                nvrtc.cache_key(src, "sm_87", (12, 8)),
                nvrtc.cache_key(src + " ", "sm_87", (12, 6))}) == 4


def test_damaged_cache_file_is_recompiled(tmp_path):
    _, path = nvrtc.load_or_compile("decode.cu", "sm_87", tmp_path)
    path.write_bytes(b"truncated")
    image, again = nvrtc.load_or_compile("decode.cu", "sm_87", tmp_path)
    assert again == path and image.startswith(b"\x7fELF") and path.read_bytes() == image


def test_compile_error_carries_nvrtc_log():
    from trt_pose_td.cuda.driver import CudaError

    with pytest.raises(CudaError, match="(?s)could not compile bad.cu for sm_87.*error"):
        nvrtc.compile_source('extern "C" __global__ void k() { undeclared(); }', "bad.cu", "sm_87")


def test_target_choice():
    archs = nvrtc.supported_archs()
    assert {72, 87, 90} <= set(archs)
    assert nvrtc.target_for(8, 7, archs) == "sm_87"
    assert nvrtc.target_for(7, 2, archs) == "sm_72"
    newest = max(archs)
    assert nvrtc.target_for(newest // 10 + 3, 0, archs) == f"compute_{newest}"  # JIT from PTX
    with pytest.raises(ConfigError, match="NVRTC supports"):
        nvrtc.target_for(1, 0, archs)
    with pytest.raises(ConfigError, match="bad CUDA target"):
        nvrtc.parse_target("sm87")


def test_precompile_command(tmp_path, capsys):
    assert main(["precompile", "--arch", "sm_87", "--arch", "compute_87",
                 "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "NVRTC" in out and out.count("sm_87") >= 2 and out.count("compute_87") >= 2
    assert len(list(tmp_path.glob("*.cubin"))) == 2 and len(list(tmp_path.glob("*.ptx"))) == 2
    assert main(["precompile", "--arch", "sm_87x", "--cache-dir", str(tmp_path)]) == 2


#: What NVRTC 11.4 (JetPack 5's CUDA) reports from nvrtcGetSupportedArchs (cupy PR #5434).
NVRTC_11_4_ARCHS = [35, 37, 50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87]


def test_targets_an_older_nvrtc_cannot_compile_are_named_before_compiling():
    """JetPack 5's NVRTC 11.4 stops at compute 8.7: the default targets (Xavier, Orin) pass, an
    sm_90 request is one ConfigError naming what it supports."""
    nvrtc.check_targets(nvrtc.DEFAULT_TARGETS, NVRTC_11_4_ARCHS, (11, 4))
    with pytest.raises(ConfigError, match=r"^NVRTC 11\.4 cannot compile for sm_90, compute_89: "
                                          r"it supports compute 35\.\.87 \(35, 37, .*, 87\); "
                                          "drop that --arch or use a newer NVRTC$"):
        nvrtc.check_targets(["sm_87", "sm_90", "compute_89"], NVRTC_11_4_ARCHS, (11, 4))
    assert nvrtc.target_for(8, 7, NVRTC_11_4_ARCHS) == "sm_87"
    assert nvrtc.target_for(9, 0, NVRTC_11_4_ARCHS) == "compute_87"  # PTX for the driver's JIT
