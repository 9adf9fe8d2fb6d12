"""docker/entrypoint.sh in a GPU image, run for real as a shell script, on this GPU-less machine.

What stands in (tests/docker/standin_cli.py): an importable ``tensorrt`` (version only), the
TensorRT/GPU probe and TensorRT's build call (recorded, placeholder plan bytes), and ``serve``
itself (its arguments recorded). What is real: the entrypoint, ``serve --print-config`` (file +
--set + flags), ``build --from-config`` (the mapping, jobs, ``--skip-existing`` against the
sidecars, calibration tensors, the Q/DQ quantizer through onnx + ONNX Runtime, sidecars), and
``plan.resolve`` of the recorded serve arguments, which must name the engines the build wrote.

``TRT_POSE_TD_JP5_PYTHON`` (an interpreter with docker/constraints-jp5.txt installed, e.g. CPython
3.8 + numpy 1.23.5, onnx 1.17.0, onnxruntime 1.19.2) runs the INT8 test there as well.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from trt_pose_td.engine_meta import read_metadata

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
PYTHONS = [sys.executable] + [p for p in [os.environ.get("TRT_POSE_TD_JP5_PYTHON")] if p]
CONFIG = """\
[source]
uri = "{uri}"

[pipeline]
det_size = 320
"""


class Box:
    """A container's view: the entrypoint's environment, volume folders and the stand-in log."""

    def __init__(self, root: Path, python: str = sys.executable) -> None:
        self.root = root
        (root / "bin").mkdir()
        launcher = root / "bin" / "trt-pose-td"
        launcher.write_text(f'#!/bin/sh\nexec "{python}" -m tests.docker.standin_cli "$@"\n')
        launcher.chmod(0o755)
        (root / "trt" / "tensorrt").mkdir(parents=True)
        (root / "trt" / "tensorrt" / "__init__.py").write_text('__version__ = "8.5.2.2"\n')
        self.config = root / "config.toml"
        self.config.write_text(CONFIG.format(uri="/data/clip.mp4"))
        self.engines = root / "volume" / "engines"
        self.calib = root / "volume" / "calib"
        self.calib.mkdir(parents=True)
        self.log = root / "standin.jsonl"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRT_POSE_TD_")}
        self.env = dict(
            env, PATH=f"{root / 'bin'}:{env['PATH']}", PYTHON=python,
            PYTHONPATH=f"{root / 'trt'}:{REPO}", STANDIN_LOG=str(self.log),
            STANDIN_TRT="8.5.2.2,Xavier,7.2", TRT_POSE_TD_CONFIG=str(self.config),
            TRT_POSE_TD_ENGINE_DIR=str(self.engines), TRT_POSE_TD_CALIB_DIR=str(self.calib),
            TRT_POSE_TD_CACHE=str(root / "volume" / "cache"), TRT_POSE_TD_CONTAINER="1",
            TRT_POSE_TD_ARGUS_SOCKET=str(root / "argus_socket"))

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(ENTRYPOINT), *args], env=dict(self.env, **env),
                              capture_output=True, text=True, timeout=600)

    def events(self, kind: str) -> List[Dict]:
        if not self.log.is_file():
            return []
        return [e for e in map(json.loads, self.log.read_text().splitlines())
                if e["event"] == kind]

    def served(self) -> Optional[List[str]]:
        serves = self.events("serve")
        return serves[-1]["argv"] if serves else None


@pytest.fixture()
def box(tmp_path) -> Box:
    return Box(tmp_path)


def runtime_engines(serve_argv: List[str]) -> List[Path]:
    """The engines `serve` loads with these arguments (its own resolution and plan)."""
    from trt_pose_td.cli import serve
    from trt_pose_td.pipelines.plan import resolve

    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    cfg = serve.resolve(parser.parse_args(serve_argv)).pipeline
    assert cfg.backend == "tensorrt"
    plan = resolve(cfg, progress=False)
    return [plan.detector_file, plan.pose_file]


def test_engines_are_built_from_the_whole_config_and_kept_or_rebuilt_by_their_sidecars(box):
    """gpu-review 3: det_size from the config file reaches the builder; serve gets exactly the
    arguments the build was resolved from; a restart keeps both engines; a changed det_size
    rebuilds the detector only."""
    proc = box.run("--camera", "door")
    assert proc.returncode == 0, proc.stderr
    det, pose = box.events("build_plan")
    assert (det["role"], det["size"], det["precision"]) == ("detector", [320, 320], "fp16")
    # the default detector profile: 1..8 frames (several cameras in one GPU batch)
    assert det["profiles"] == [{"input": {"min": [1, 3, 320, 320], "opt": [1, 3, 320, 320],
                                          "max": [8, 3, 320, 320]}}]
    assert (pose["role"], pose["size"]) == ("pose", [192, 256])
    assert pose["profiles"][0]["image"]["max"] == [32, 3, 256, 192]
    argv = box.served()
    assert argv == ["serve", "--config", str(box.config), "--backend", "tensorrt",
                    "--engine-dir", str(box.engines), "--precision", "fp16", "--camera", "door"]
    detector, keypoints = runtime_engines(argv)
    assert read_metadata(detector).input_size == [320, 320]
    assert read_metadata(detector).options["det_size"] == [320, 320]
    assert read_metadata(keypoints).precision == "fp16"

    again = box.run("--camera", "door")
    assert again.returncode == 0, again.stderr
    assert len(box.events("build_plan")) == 2 and again.stdout.count("kept (up to date)") == 2

    bigger = box.run("--camera", "door", "--det-size", "416")
    assert bigger.returncode == 0, bigger.stderr
    assert [(e["role"], e["size"]) for e in box.events("build_plan")[2:]] == [
        ("detector", [416, 416])]
    assert "input 320x320 != 416x416" in bigger.stderr
    assert read_metadata(runtime_engines(box.served())[0]).input_size == [416, 416]


@pytest.mark.slow
@pytest.mark.parametrize("python", PYTHONS, ids=lambda p: Path(p).parent.parent.name)
def test_int8_builds_qdq_engines_from_the_calibration_folder(tmp_path, calib_subset, python):
    """gpu-review 4: TRT_POSE_TD_PRECISION=int8 with the images in the volume's calib/ folder:
    the calibration tensors are made, both models quantized to Q/DQ ONNX by onnx + ONNX Runtime
    (what the Jetson image now installs), and TensorRT is handed those Q/DQ graphs."""
    pytest.importorskip("onnxruntime")
    box = Box(tmp_path, python)
    for item in calib_subset.iterdir():
        shutil.copy(item, box.calib / item.name)
    proc = box.run(TRT_POSE_TD_PRECISION="int8")
    assert proc.returncode == 0, proc.stderr
    assert f"INT8: calibration images from {box.calib}" in proc.stderr
    det, pose = box.events("build_plan")
    for event in (det, pose):
        assert event["precision"] == "int8" and event["int8"] == "qdq" and event["qdq"]
        assert Path(event["onnx"]).name.endswith(".qdq.onnx")
    assert det["size"] == [320, 320]
    argv = box.served()
    assert argv[argv.index("--precision") + 1] == "int8"
    for engine in runtime_engines(argv):
        meta = read_metadata(engine)
        assert engine.name.endswith(".int8-qdq.engine") and meta.calibration_sha256


def test_int8_without_calibration_images_names_the_folder(box):
    proc = box.run(TRT_POSE_TD_PRECISION="int8")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("trt-pose-td build: error: calibration folder ")
    for word in (str(box.calib), "holds no images", "person_keypoints_train2017_calib_subset.json",
                 "--precision fp16"):
        assert word in last, last
    assert box.served() is None


def test_int8_images_without_person_boxes_name_the_file(box, calib_subset):
    """Frames of the user's own camera come without annotations: the keypoint model's crops
    need them, and the one line says under which name the folder must hold them."""
    for image in calib_subset.glob("*.jpg"):
        shutil.copy(image, box.calib / image.name)
    proc = box.run(TRT_POSE_TD_PRECISION="int8")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert f"needs the person boxes of {box.calib}" in last
    assert "put them there as person_keypoints_train2017_calib_subset.json" in last


def test_the_config_wins_over_the_image_precision_and_onnxruntime_skips_the_build(box):
    box.config.write_text(CONFIG.format(uri="/data/clip.mp4") + 'precision = "fp32"\n')
    proc = box.run(TRT_POSE_TD_PRECISION="int8")
    assert proc.returncode == 0, proc.stderr
    assert {e["precision"] for e in box.events("build_plan")} == {"fp32"}
    assert "--precision" not in box.served()  # the config's own value stands
    box.config.write_text(CONFIG.format(uri="/data/clip.mp4"))  # no precision: none added
    proc = box.run("--backend", "onnxruntime", TRT_POSE_TD_PRECISION="int8")
    assert proc.returncode == 0 and "backend onnxruntime asked for" in proc.stderr
    assert len(box.events("build_plan")) == 2 and box.served()[-2:] == ["--backend", "onnxruntime"]
    assert "--precision" not in box.served()


def test_a_gpu_image_without_the_nvidia_runtime_stops_naming_it(box):
    """A5: the GPU images set TRT_POSE_TD_REQUIRE_GPU=1; this machine has no CUDA device, as a
    container started without --runtime nvidia."""
    proc = box.run(TRT_POSE_TD_REQUIRE_GPU="1")
    assert proc.returncode == 2
    assert "no CUDA GPU in this container: start it with --runtime nvidia" in proc.stderr
    assert "nvidia-ctk runtime configure --runtime=docker" in proc.stderr
    box.env["PYTHONPATH"] = str(REPO)  # no tensorrt module either
    proc = box.run(TRT_POSE_TD_REQUIRE_GPU="1")
    assert proc.returncode == 2 and "TensorRT cannot be imported" in proc.stderr
    assert "--runtime nvidia" in proc.stderr and "TRT_POSE_TD_BUILD=never" in proc.stderr
    assert box.served() is None and not box.events("build_plan")


def test_a_csi_camera_needs_the_argus_socket(box):
    """A6: csi:// in a container talks to the host's nvargus-daemon through its socket."""
    box.config.write_text(CONFIG.format(uri="csi://0"))
    proc = box.run()
    assert proc.returncode == 2
    assert "-v /tmp/argus_socket:/tmp/argus_socket" in proc.stderr
    assert "nvargus-daemon" in proc.stderr and box.served() is None
    with socket.socket(socket.AF_UNIX) as sock:  # the mounted socket
        sock.bind(str(box.root / "argus_socket"))
        proc = box.run()
    assert proc.returncode == 0, proc.stderr
    assert box.served() is not None
