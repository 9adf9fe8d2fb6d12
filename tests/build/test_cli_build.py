"""``trt-pose-td build`` / ``build_engines.py`` as a user runs them: one-line errors for requests
that cannot be built, and --skip-existing, on this GPU-less machine (the TensorRT/GPU probe is
replaced by a BuildEnv; every decision after it is the real code)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trt_pose_td.assets import sha256_file
from trt_pose_td.build import run as build_run
from trt_pose_td.build.jobs import plan_jobs
from trt_pose_td.build.options import BuildOptions
from trt_pose_td.cli import main
from trt_pose_td.engine_meta import check_runnable, read_metadata, write_metadata
from trt_pose_td.errors import EngineError

from .conftest import make_env

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def machine(monkeypatch):
    """Pretend to be a build machine: set ``machine.env`` to choose TensorRT and GPU."""

    class Machine:
        env = make_env("10.3.0.30", "Orin", "8.7", dla=2)

    monkeypatch.setattr(build_run, "detect_build_env", lambda: Machine.env)
    return Machine


def one_line_error(capsys, argv) -> str:
    assert main(["build", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trt-pose-td build: error: ") and "\n" not in err, err
    return err


def test_missing_calibration_set(machine, capsys, tmp_path):
    empty = tmp_path / "calib"
    empty.mkdir()
    err = one_line_error(capsys, ["--precision", "int8", "--calib-images", str(empty),
                                  "--output", str(tmp_path / "e")])
    assert "holds no images" in err


def test_profile_max_smaller_than_requested_batch(capsys):
    err = one_line_error(capsys, ["--pose-batch", "1,8,16", "--max-batch", "32"])
    assert "largest profile max is 16" in err and "requested batch 32" in err


def test_dla_on_a_gpu_without_dla(machine, capsys, tmp_path):
    machine.env = make_env("10.3.0", "NVIDIA H100 80GB HBM3", "9.0", dla=0)
    err = one_line_error(capsys, ["--dla-core", "0", "--output", str(tmp_path)])
    assert "has no DLA" in err and "Drop --dla-core" in err


def test_calibrator_on_tensorrt_11(machine, capsys, tmp_path):
    machine.env = make_env("11.0.0", "NVIDIA H100 80GB HBM3", "9.0", dla=0)
    err = one_line_error(capsys, ["--precision", "int8", "--int8-mode", "calibrator",
                                  "--output", str(tmp_path)])
    assert "TensorRT 11.0.0 removed implicit INT8" in err and "--int8-mode qdq" in err


def test_quantized_onnx_needs_the_qdq_mode(machine, capsys, tmp_path, qdq_standin):
    err = one_line_error(capsys, ["--only", "pose", "--pose", str(qdq_standin), "--output",
                                  str(tmp_path)])
    assert "already quantized" in err and "--int8-mode qdq" in err


def test_skip_existing_keeps_matching_engines(machine, capsys, tmp_path):
    opts = BuildOptions(precision="fp16", output=str(tmp_path))
    for job in plan_jobs(opts, progress=False):  # engines as an earlier build left them
        job.engine.write_bytes(b"plan")
        write_metadata(build_run.engine_metadata(job, opts, machine.env, sha256_file(job.onnx),
                                                 build_run.Int8Inputs(job.onnx), []), job.engine)
    assert main(["build", "--output", str(tmp_path), "--skip-existing"]) == 0
    out = capsys.readouterr().out
    assert out.count("kept (up to date)") == 2
    meta = read_metadata(tmp_path / "pp_tinypose_256x192.fp16.engine")
    assert meta.build_command == (f"trt-pose-td build --only pose --pose pp_tinypose_256x192 "
                                  f"--precision fp16 --output {tmp_path.resolve()}")
    # what the runtime does with the sidecar on another JetPack: refuse, with that command
    with pytest.raises(EngineError, match="Rebuild: trt-pose-td build --only pose"):
        check_runnable(tmp_path / "pp_tinypose_256x192.fp16.engine", "10.16.1", "8.7", "Orin")

    machine.env = make_env("10.16.1", "Orin", "8.7")  # JetPack upgraded: must rebuild
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed: this would really build")
    except ImportError:
        pass
    err = one_line_error(capsys, ["--output", str(tmp_path), "--skip-existing"])
    assert "TensorRT is not installed" in err  # it went on to build


def test_build_engines_script_without_tensorrt(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "build_engines.py", "--precision", "fp16", "--output",
                           str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("build_engines.py: error: TensorRT is not "
                                                   "installed")
    assert "JetPack" in lines[0]


def test_help_answers_the_build_questions(capsys):
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    out = capsys.readouterr().out
    for word in ("--precision", "--int8-mode", "calibrator", "qdq", "--pose-batch", "1,8,32",
                 "--det-size", "--workspace", "--timing-cache", "--tactic-sources",
                 "--no-cublas-cudnn", "--layer-precision", "--dla-core", "--version-compatible",
                 "--calib-images", "--skip-existing", "--output", "TensorRT >= 11"):
        assert word in out, word
