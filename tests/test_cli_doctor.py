"""``trt-pose-td doctor`` run here (no GPU, no TensorRT: what it reports is this machine), on a
fake Jetson tree (``/etc/nv_tegra_release``, cpufreq / devfreq files, a real ``nvpmodel``
stand-in script on PATH) and with stand-in ``tensorrt`` modules (``tests/engines/fake_trt.py``)
for the numpy / TensorRT combinations JetPack users hit."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy
import pytest

from tests.engines.fake_trt import fake_tensorrt
from trt_pose_td.cli import doctor as cli_doctor
from trt_pose_td.cli import main
from trt_pose_td.config import PipelineConfig
from trt_pose_td.doctor import checks as doctor_checks
from trt_pose_td.doctor.probes import Facts, probe_engines
from trt_pose_td.engine_meta import EngineMetadata, write_metadata

NAMES = ["python", "numpy", "tensorrt", "cv2", "onnxruntime", "cuda-python", "nvrtc", "gpu",
         "engines", "lazy-loading", "jetson", "argus"]
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
#: cuda-python (with NVRTC) is in the dev extra, not in the Python 3.8 CPU run's venv
HAVE_CUDA = importlib.util.find_spec("cuda") is not None
#: What blocks the TensorRT backend on this machine (no GPU; cuda-python / NVRTC if absent).
BLOCKING = ["tensorrt", "gpu", "engines"] if HAVE_CUDA else \
    ["tensorrt", "cuda-python", "nvrtc", "gpu", "engines"]


@pytest.fixture
def here(monkeypatch, tmp_path):
    """No service config, an empty cache, an empty root (not a Jetson)."""
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setattr(cli_doctor, "ROOT", root)
    monkeypatch.setenv("TRT_POSE_TD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CUDA_MODULE_LOADING", raising=False)
    monkeypatch.setattr("trt_pose_td.cli.serve.DEFAULT_CONFIG", str(tmp_path / "no.toml"))
    return root


def jetson(root: Path, release: str, revision: str, pinned: bool) -> None:
    """A Jetson's files: the L4T release, 2 CPUs' cpufreq and the Orin GPU's devfreq."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/nv_tegra_release").write_text(
        f"# {release} (release), REVISION: {revision}, GCID: 1, BOARD: generic, EABI: aarch64\n")
    for cpu in ("cpu0", "cpu1"):
        d = root / "sys/devices/system/cpu" / cpu / "cpufreq"
        d.mkdir(parents=True)
        (d / "cpuinfo_max_freq").write_text("2201600\n")
        (d / "scaling_min_freq").write_text("2201600\n" if pinned else "115200\n")
    gpu = root / "sys/class/devfreq/17000000.ga10b"
    gpu.mkdir(parents=True)
    (gpu / "max_freq").write_text("1300500000\n")
    (gpu / "min_freq").write_text("1300500000\n" if pinned else "306000000\n")


@pytest.fixture
def nvpmodel(monkeypatch, tmp_path):
    """A real ``nvpmodel`` process on PATH answering ``-q`` as JetPack's does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "nvpmodel"
    tool.write_text('#!/bin/sh\n[ "$1" = "-q" ] || exit 2\necho "NV Power Mode: 15W"\necho 2\n')
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def run_doctor(capsys, *args: str) -> tuple:
    code = main(["doctor", *args])
    out = capsys.readouterr()
    lines = out.out.rstrip("\n").splitlines()
    by_name: Dict[str, str] = {}
    for line in lines[1:-1]:
        by_name[line.split()[1]] = line
    return code, lines, by_name, out.err


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_this_machine_one_line_per_check_and_onnxruntime_can_run(here, capsys):
    code, lines, by_name, err = run_doctor(capsys)
    assert code == 0 and err == ""
    assert lines[0] == "trt-pose-td doctor 0.1.0 (config: none, defaults)"
    assert [line.split()[1] for line in lines[1:-1]] == NAMES
    assert by_name["python"].startswith(f"ok    python        {sys.version.split()[0]} ")
    assert by_name["numpy"] == f"ok    numpy         {numpy.__version__}"
    assert by_name["tensorrt"] == (
        "FAIL  tensorrt      not importable (ModuleNotFoundError: No module named 'tensorrt') "
        "-- fix: on x86: NVIDIA's TensorRT container or pip install tensorrt; a Jetson gets it "
        "with JetPack; or use --backend onnxruntime")
    if HAVE_CUDA:
        assert by_name["gpu"].startswith("FAIL  gpu           no NVIDIA driver")
    else:
        assert by_name["gpu"] == ("FAIL  gpu           needs cuda-python -- fix: pip install "
                                  "'trt-pose-td[trt]'")
    assert "missing " in by_name["engines"] and \
        by_name["engines"].endswith("-- fix: build them on this device: trt-pose-td build "
                                    "--precision fp16")
    assert by_name["jetson"] == "--    jetson        not a Jetson (no /etc/nv_tegra_release)"
    assert by_name["argus"] == "--    argus         no CSI camera configured or found"
    assert lines[-1] == "backend auto -> onnxruntime: can run here"
    from trt_pose_td.pipelines.plan import resolve_backend  # the pipeline decides auto the same way

    assert resolve_backend(PipelineConfig(backend="auto")) == "onnxruntime"


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_tensorrt_backend_cannot_run_here_exit_1_and_json(here, capsys):
    code, lines, _, _ = run_doctor(capsys, "--backend", "tensorrt")
    assert code == 1
    assert lines[-1] == f"backend tensorrt: cannot run here ({', '.join(BLOCKING)} failed)"
    assert main(["doctor", "--backend", "tensorrt", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["can_run"] is False and doc["backend"] == "tensorrt"
    assert doc["blocking"] == BLOCKING and doc["config"] is None
    assert [c["name"] for c in doc["checks"]] == NAMES
    assert {c["status"] for c in doc["checks"]} <= {"ok", "warn", "fail", "skip"}


def test_jetpack_5_with_numpy_1_24_warns_and_names_the_pin(here, nvpmodel, capsys, monkeypatch):
    """The JetPack 5 image's combination: TensorRT 8.5.2 with numpy 1.24.4 (stand-ins for both),
    a CSI camera configured, no Argus socket, clocks not pinned."""
    jetson(here, "R35", "4.1", pinned=False)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("8.5"))
    monkeypatch.setattr(numpy, "__version__", "1.24.4")
    code, lines, by_name, _ = run_doctor(capsys, "--source", "csi://0")
    assert by_name["tensorrt"] == "ok    tensorrt      8.5.2.2"
    assert by_name["numpy"] == (
        "warn  numpy         1.24.4: TensorRT 8.5.2.2 accepts numpy < 1.24 only (its numpy type "
        "helper uses np.bool, removed in 1.24; trt_pose_td avoids it, other TensorRT tools such "
        "as polygraphy crash) -- fix: pip install 'numpy<1.24' (JetPack 5 pins numpy==1.23.5)")
    if not sys.version.startswith("3.8."):
        assert by_name["python"].startswith("warn  python") and \
            "JetPack 5's TensorRT and OpenCV are built for its system Python 3.8" in \
            by_name["python"]
    assert by_name["jetson"] == (
        "warn  jetson        L4T R35.4.1 (JetPack 5), power mode 15W (2), clocks dynamic -- fix: "
        "the fastest power mode: sudo nvpmodel -m 0 (MAXN on most modules); steady clocks for "
        "benchmarks: sudo jetson_clocks")
    assert by_name["argus"].startswith(
        "FAIL  argus         /tmp/argus_socket missing: nvarguscamerasrc cannot reach "
        "nvargus-daemon")
    assert "-- fix: start the camera daemon: sudo systemctl restart nvargus-daemon" in \
        by_name["argus"]
    if "without GStreamer" in by_name["cv2"]:  # pip's OpenCV: csi:// cannot work either
        assert "this cv2 has no GStreamer (a csi:// source is configured)" in by_name["argus"]
        assert by_name["argus"].endswith("or read a USB camera as v4l2:///dev/video0")
    assert code == 1 and lines[-1].endswith("cannot run here (argus failed)")
    monkeypatch.setattr(numpy, "__version__", "1.23.5")
    (here / "tmp").mkdir()
    (here / "tmp/argus_socket").touch()
    sensor = here / "sys/class/video4linux/video0"
    sensor.mkdir(parents=True)
    (sensor / "name").write_text("vi-output, imx219 9-0010\n")
    code, lines, by_name, _ = run_doctor(capsys)
    assert by_name["numpy"] == "ok    numpy         1.23.5 (TensorRT 8.5 accepts it: < 1.24)"
    assert by_name["argus"] == ("ok    argus         /tmp/argus_socket present (a CSI sensor is "
                                "present)")
    assert code == 0 and lines[-1] == "backend auto -> onnxruntime: can run here"


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_jetpack_6_venv_without_system_site_packages(here, nvpmodel, capsys, monkeypatch):
    """A2: JetPack's TensorRT is for the system Python only; A1: numpy 2 on JetPack 6."""
    jetson(here, "R36", "4.0", pinned=True)
    monkeypatch.setattr(numpy, "__version__", "2.1.0")
    from trt_pose_td.doctor import probes

    real = probes.probe_python

    def venv_without_system_site(facts):
        real(facts)
        facts.venv, facts.venv_system_site = True, False

    monkeypatch.setattr(probes, "probe_python", venv_without_system_site)
    code, lines, by_name, _ = run_doctor(capsys, "--backend", "tensorrt")
    assert by_name["tensorrt"].startswith("FAIL  tensorrt      not importable (")
    assert by_name["tensorrt"].endswith(
        "-- fix: JetPack installs TensorRT's Python bindings for the system Python 3.10 only "
        "(this venv has no system site-packages): /usr/bin/python3.10 -m venv "
        "--system-site-packages .venv, or run with /usr/bin/python3")
    assert by_name["numpy"] == ("warn  numpy         2.1.0: JetPack 6's OpenCV and TensorRT "
                                "bindings are built against numpy 1.x -- fix: pip install "
                                "'numpy<2'")
    assert "clocks pinned (jetson_clocks)" in by_name["jetson"]
    assert code == 1


def test_cv2_built_for_numpy_1_names_the_numpy_pin(here, capsys, monkeypatch, tmp_path):
    """JetPack 6's cv2 under numpy 2 (isaac_ros_common #138): a stand-in cv2 package that fails
    to import the way it does."""
    fake = tmp_path / "fakecv" / "cv2"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        'raise ImportError("numpy.core.multiarray failed to import")\n')
    monkeypatch.syspath_prepend(str(fake.parent))
    monkeypatch.delitem(sys.modules, "cv2", raising=False)
    _, _, by_name, _ = run_doctor(capsys)
    assert by_name["cv2"] == (
        "FAIL  cv2           not importable (ImportError: numpy.core.multiarray failed to import)"
        " -- fix: this cv2 was built against numpy 1.x (JetPack's python3-opencv): pip install "
        "'numpy<2'")


def test_nvrtc_missing_is_a_line_not_a_traceback(here, capsys, monkeypatch):
    from tests.cuda.test_nvrtc_missing import _legacy_nvrtc_without_library
    from trt_pose_td.cuda import nvrtc

    pytest.importorskip("cuda.bindings")
    monkeypatch.setattr(nvrtc, "_nvrtc", _legacy_nvrtc_without_library)
    _, _, by_name, err = run_doctor(capsys)
    assert err == "" and by_name["nvrtc"].startswith(
        'FAIL  nvrtc         NVRTC not found (Function "nvrtcVersion" not found); cuda-python '
        "11.8 loads libnvrtc.so.11.2")


def _gpu(driver: int = 12060) -> Dict:
    return {"name": "Orin", "major": 8, "minor": 7, "integrated": True, "memory": 7 << 30,
            "driver": driver}


def test_engines_that_match_this_tensorrt_and_gpu(tmp_path):
    """Real sidecars in an engine folder, judged for TensorRT 10.3 on an Orin."""
    cfg = PipelineConfig(backend="tensorrt", engine_dir=str(tmp_path))
    made: List[str] = []
    for name, version, cc in (("rtmdet_nano_person_raw.fp16.engine", "10.3.0", "8.7"),
                              ("pp_tinypose_256x192.fp16.engine", "10.3.0", "8.7"),
                              ("old.fp16.engine", "8.5.2.2", "8.7")):
        (tmp_path / name).write_bytes(b"plan")
        write_metadata(EngineMetadata("m", "pose", "0" * 64, "fp16", version, "Orin", cc,
                                      f"trt-pose-td build --only pose # {name}"), tmp_path / name)
        made.append(name)
    facts = Facts(tensorrt="10.3.0", gpu=_gpu())
    probe_engines(facts, cfg)
    check = doctor_checks.check_engines(facts)
    assert check.status == "warn" and check.detail == (
        f"{tmp_path}: 3 engine(s), 2 match TensorRT 10.3.0 + Orin (sm_87); old.fp16.engine: "
        "built with TensorRT 8.5.2.2, this is TensorRT 10.3.0")
    facts = Facts(tensorrt="10.3.0", gpu=dict(_gpu(), major=7, minor=2, name="Xavier"))
    probe_engines(facts, cfg)
    check = doctor_checks.check_engines(facts)
    assert check.status == "fail" and "the pipeline's engines do not match" in check.detail
    assert check.fix.startswith("rebuild on this device: trt-pose-td build --only pose # ")


@pytest.mark.parametrize("driver, value, status, words", [
    (11040, None, "ok", "CUDA 11.4 has no lazy loading"),
    (11080, None, "warn", "export CUDA_MODULE_LOADING=LAZY"),
    (12000, "EAGER", "warn", "every CUDA kernel is loaded at start"),
    (12020, None, "ok", "LAZY by default from CUDA 12.2"),
    (11080, "LAZY", "ok", "CUDA_MODULE_LOADING=LAZY"),
])
def test_lazy_loading_by_cuda_version(driver, value, status, words):
    check = doctor_checks.check_lazy_loading(Facts(gpu=_gpu(driver), cuda_module_loading=value))
    assert check.status == status and words in check.detail + check.fix


def test_bad_arguments_exit_2_on_one_line(here, capsys, tmp_path):
    assert main(["doctor", "--config", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config file not found" in err
    with pytest.raises(SystemExit) as done:
        main(["doctor", "--backend", "cuda"])
    assert done.value.code == 2
    assert "invalid choice: 'cuda'" in capsys.readouterr().err


def test_service_config_gives_the_pipeline_and_the_cameras(here, capsys, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[pipeline]\nbackend = "onnxruntime"\n\n[source]\nuri = "csi://1"\n')
    code, lines, by_name, _ = run_doctor(capsys, "--config", str(config))
    assert lines[0].endswith(f"(config: {config})")
    assert by_name["argus"].startswith("FAIL  argus         /tmp/argus_socket missing:")
    assert code == 1 and lines[-1] == "backend onnxruntime: cannot run here (argus failed)"


def test_real_cuda_python_without_nvrtc_in_a_process(tmp_path):
    """The real cuda-python 12.9 with libnvrtc really absent (as in tests/cuda), through
    ``python -m trt_pose_td doctor --json``: the NVRTC line fails with the install step."""
    from tests.cuda.test_nvrtc_missing import REPO, _site_packages_without_nvrtc

    pytest.importorskip("cuda.bindings")
    shadow = _site_packages_without_nvrtc(tmp_path)
    env = dict(os.environ, PYTHONPATH=f"{shadow}{os.pathsep}{REPO}", PYTHONNOUSERSITE="1",
               LD_LIBRARY_PATH="", CUDA_HOME="", CUDA_PATH="",
               TRT_POSE_TD_CACHE=str(tmp_path / "cache"))
    python = getattr(sys, "_base_executable", sys.executable)
    proc = subprocess.run([python, "-m", "trt_pose_td", "doctor", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    if "ModuleNotFoundError: No module named 'trt_pose_td'" in proc.stderr:
        pytest.skip("the base interpreter cannot use this site-packages")
    doc = json.loads(proc.stdout)
    nvrtc = next(c for c in doc["checks"] if c["name"] == "nvrtc")
    if nvrtc["status"] == "ok":
        pytest.skip("an NVRTC library outside the wheel is found here (system CUDA toolkit)")
    assert "Traceback" not in proc.stderr
    assert nvrtc["status"] == "fail" and nvrtc["detail"].startswith("NVRTC not found (") and \
        nvrtc["detail"].endswith("install it with: pip install nvidia-cuda-nvrtc-cu12 (or use "
                                 "the CUDA toolkit's)")


def test_without_cuda_python_every_gpu_line_names_the_extra(here, capsys, monkeypatch):
    for name in ("cuda.bindings.driver", "cuda.cuda", "cuda.bindings", "cuda"):
        monkeypatch.setitem(sys.modules, name, None)
    _, _, by_name, _ = run_doctor(capsys)
    assert by_name["cuda-python"].startswith("FAIL  cuda-python   not importable (cuda-python is "
                                             "not installed")
    for name in ("cuda-python", "nvrtc", "gpu"):
        assert by_name[name].endswith("-- fix: pip install 'trt-pose-td[trt]'"), by_name[name]


@pytest.mark.parametrize("nvrtc, archs, gpu, status, words", [
    ((11, 4), [35, 72, 75, 80, 86, 87], (8, 7, 11040), "ok", "this GPU: sm_87 (cubin)"),
    ((11, 4), [35, 72, 75, 80, 86, 87], (9, 0, 12020), "ok", "compute_87 (PTX, JIT-compiled"),
    ((12, 6), [50, 87, 89, 90], (10, 0, 12020), "fail", "a CUDA 12.2 driver cannot JIT-compile "
                                                        "PTX from NVRTC 12.6"),
    ((11, 4), [35, 87], (1, 0, 11040), "fail", "NVRTC supports 35..87, not compute 1.0"),
])
def test_nvrtc_against_this_gpu(nvrtc, archs, gpu, status, words):
    facts = Facts(cuda_python="11.8.2 (cuda.cuda)", nvrtc=nvrtc, nvrtc_archs=archs,
                  gpu=dict(_gpu(gpu[2]), major=gpu[0], minor=gpu[1]))
    check = doctor_checks.check_nvrtc(facts)
    assert check.status == status and words in check.detail, check
