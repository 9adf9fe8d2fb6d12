"""The parser check in `trt-pose-td build`, as a user runs it: the default pair passes, the
NMS-in-graph detector fails in one line (exit 2) naming its TopK nodes and the fix, before any
TensorRT work (the TensorRT/GPU probe is made to fail if it is reached), `--check-only` prints
the verdicts and builds nothing."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

pytest.importorskip("onnx")

from trt_pose_td.build import run as build_run
from trt_pose_td.cli import main

from .conftest import make_env


@pytest.fixture()
def no_tensorrt_work(monkeypatch):
    """The build's first TensorRT step (importing it and probing the GPU) fails the test."""
    def probe():
        raise AssertionError("the build reached TensorRT before the parser check refused")
    monkeypatch.setattr(build_run, "detect_build_env", probe)


def one_line_error(capsys, argv) -> str:
    assert main(["build", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trt-pose-td build: error: ") and "\n" not in err, err
    return err


def test_nms_in_graph_detector_fails_before_tensorrt(shared, no_tensorrt_work, capsys,
                                                     tmp_path):
    err = one_line_error(capsys, ["--detector", "rtmdet_nano_person", "--parser-check", "8.5",
                                  "--output", str(tmp_path)])
    for text in ("rtmdet_nano_person (rtmdet_nano_person_nms.onnx): TensorRT 8.5 would refuse",
                 "TopK_534 (TopK): K is computed by Reshape_533", "TopK_630 (TopK)",
                 "docs/operators.md @ 0f305925", "Use rtmdet_nano_person_raw",
                 "build on TensorRT 10", "--parser-check none"):
        assert text in err, err
    assert not list(tmp_path.iterdir())  # nothing written


def test_auto_target_is_the_oldest_without_tensorrt(shared, no_tensorrt_work, capsys,
                                                     tmp_path):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: auto checks against its version")
    err = one_line_error(capsys, ["--detector", "rtmdet_nano_person", "--output",
                                  str(tmp_path)])
    assert "TensorRT 8.5 would refuse 3 node(s)" in err


def test_jetpack6_target_uses_the_10x_table(shared, no_tensorrt_work, capsys):
    argv = ["--detector", "rtmdet_nano_person", "--parser-check", "10.3", "--check-only"]
    assert main(["build", *argv]) == 0
    out = capsys.readouterr().out
    assert "target TensorRT 10.3 (checked against the 10.8 table)" in out
    assert "K = 3549 (< 3840)" in out
    err = one_line_error(capsys, argv + ["--det-size", "640"])
    assert "TopK_534 (TopK): K is computed by Reshape_533 (Reshape); for a blank 1x3x640x640 " \
           "input K = 5000: it must be below 3840" in err


def test_check_only_prints_verdicts_and_builds_nothing(no_tensorrt_work, capsys, tmp_path):
    assert main(["build", "--check-only", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("accepts") == 4 and "refuses" not in out
    for name in ("rtmdet_nano_person_raw", "pp_tinypose_256x192", "8.5 (target)", "10.8"):
        assert name in out
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, text", [
    (["--parser-check", "none", "--check-only"], "drop --parser-check none"),
    (["--parser-check", "eight", "--check-only"], "not a TensorRT version: 'eight'"),
    (["--parser-check", "7.0"], "older than every parser table"),
])
def test_bad_parser_check_values(no_tensorrt_work, capsys, argv, text):
    assert text in one_line_error(capsys, argv)


def test_passing_models_reach_the_build(monkeypatch, capsys, tmp_path):
    """The check lets the default pair through to the builder (here: a 10.3 Orin stand-in
    whose TensorRT import fails: the error the build gives next, not the parser's)."""
    monkeypatch.setattr(build_run, "detect_build_env", lambda: make_env("10.3.0", "Orin"))
    err = one_line_error(capsys, ["--parser-check", "none", "--output", str(tmp_path)])
    assert "TensorRT is not installed" in err
    err = one_line_error(capsys, ["--output", str(tmp_path)])
    assert "TensorRT is not installed" in err


def test_as_a_process(shared, tmp_path):
    """The real command line: one line on stderr, exit 2, nothing on stdout."""
    env = dict(os.environ, TRT_POSE_TD_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "trt_pose_td", "build", "--detector",
                           "rtmdet_nano_person", "--only", "detector", "--parser-check", "8.5",
                           "--output", str(tmp_path / "engines")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1
    assert "TopK_534" in proc.stderr and "rtmdet_nano_person_raw" in proc.stderr
