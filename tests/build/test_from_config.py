"""``trt-pose-td build --from-config``: ONE mapping from a pipeline config to the engines the
builder makes (gpu-review item 3), checked against what the runtime's plan loads.

On this GPU-less machine the TensorRT/GPU probe is answered with a BuildEnv and TensorRT's own
build call records the request it would get; everything before it is the real code: the config
read as ``serve`` resolves it, the mapping, the jobs, the calibration tensors from the real
preprocessing, ``--skip-existing`` against the sidecars.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List

import pytest

from trt_pose_td.build import builder, inspect, run
from trt_pose_td.build.jobs import pipeline_build_options, plan_jobs, stale_reasons
from trt_pose_td.cli import main
from trt_pose_td.cli.build import read_pipeline_config
from trt_pose_td.config import PipelineConfig
from trt_pose_td.engine_meta import EngineMetadata, read_metadata
from trt_pose_td.errors import ConfigError
from trt_pose_td.pipelines.plan import resolve

from .conftest import make_env

TOML = """\
[source]
uri = "/data/clip.mp4"

[pipeline]
det_size = 320
precision = "int8"
int8_mode = "calibrator"
max_batch = 48
"""


def runtime_files(cfg: PipelineConfig) -> List[Path]:
    """The engine files ``serve`` loads for ``cfg`` on TensorRT."""
    plan = resolve(replace(cfg, backend="tensorrt"), progress=False)
    return [plan.detector_file.resolve(), plan.pose_file.resolve()]


@pytest.mark.parametrize("cfg", [
    PipelineConfig(det_size=(320, 320)),
    PipelineConfig(det_size=(320, 320), precision="int8", int8_mode="calibrator"),
    PipelineConfig(precision="int8"),  # qdq by default
    PipelineConfig(detector="rtmdet_nano_person", precision="int8"),  # NMS-in-graph -> raw twin
    PipelineConfig(precision="fp32", max_batch=48, det_size=(640, 480)),
], ids=["det320", "calibrator", "qdq", "nms-twin", "fp32-batch48"])
def test_the_builder_makes_the_files_the_runtime_loads(cfg, tmp_path):
    cfg = replace(cfg, engine_dir=str(tmp_path / "engines"))
    opts = pipeline_build_options(cfg)
    jobs = plan_jobs(opts, progress=False)
    assert [job.engine for job in jobs] == runtime_files(cfg)
    plan = resolve(replace(cfg, backend="tensorrt"), progress=False)
    assert jobs[0].size == tuple(plan.detector.preprocess.input_size)
    assert jobs[1].size == tuple(plan.pose.preprocess.input_size)
    assert opts.precision == plan.precision and opts.int8 == plan.int8_mode
    assert max(r.max for r in opts.pose_batches) >= cfg.max_batch


def test_max_batch_only_raises_the_default_profile():
    assert str(pipeline_build_options(PipelineConfig(max_batch=4)).pose_batches[0]) == "1,8,32"
    assert str(pipeline_build_options(PipelineConfig(max_batch=64)).pose_batches[0]) == "1,8,64"


def test_the_config_decides_its_fields():
    with pytest.raises(ConfigError, match="det_size: the pipeline config decides this"):
        pipeline_build_options(PipelineConfig(), det_size=(416, 416))
    # --flip and --recrop run on the GPU too (more runs of the same engines): same engines
    assert pipeline_build_options(PipelineConfig(flip=True, recrop=True)) == \
        pipeline_build_options(PipelineConfig())


@pytest.fixture()
def builds(monkeypatch) -> List[Dict[str, Any]]:
    """A TensorRT 8.5 Xavier as the build machine; TensorRT's build call records its request."""
    requests: List[Dict[str, Any]] = []

    def build_plan(request, opts, env):
        requests.append({"role": request.role, "size": request.size, "onnx": request.onnx,
                         "calib": None if request.calib_data is None else request.calib_data.shape,
                         "cache": request.calib_cache, "int8": opts.int8,
                         "batches": [str(b) for b in opts.batches(request.role)]})
        return builder.BuiltPlan(b"plan", {}, [])

    monkeypatch.setattr(run, "detect_build_env", lambda: make_env("8.5.2.2", "Xavier", "7.2"))
    monkeypatch.setattr(builder, "build_plan", build_plan)
    monkeypatch.setattr("trt_pose_td.engines.trt_api.import_tensorrt", lambda: None)
    monkeypatch.setattr(inspect, "inspect_plan", lambda *a: json.dumps({"Layers": []}))
    return requests


def test_det_size_320_calibrator_config_is_the_build_the_builder_runs(builds, tmp_path, capsys,
                                                                      calib_subset):
    """The service config -> `serve --print-config` -> `build --from-config`: the detector is
    built at 320x320 and both engines calibrated by the implicit calibrator on the calibration
    tensors; the pose profile reaches max_batch 48; a second run keeps both engines."""
    toml = tmp_path / "config.toml"
    toml.write_text(TOML + f'engine_dir = "{tmp_path / "engines"}"\n')
    assert main(["serve", "--config", str(toml), "--print-config"]) == 0
    printed = tmp_path / "resolved.json"
    printed.write_text(capsys.readouterr().out)
    assert read_pipeline_config(str(printed)) == read_pipeline_config(str(toml))

    argv = ["build", "--from-config", str(printed), "--calib-images", str(calib_subset),
            "--skip-existing"]
    assert main(argv) == 0
    det, pose = builds
    assert (det["role"], det["size"], det["int8"]) == ("detector", (320, 320), "calibrator")
    assert det["calib"][1:] == (3, 320, 320) and det["cache"] is not None
    assert (pose["role"], pose["size"], pose["batches"]) == ("pose", (192, 256), ["1,8,48"])
    assert pose["calib"][1:] == (3, 256, 192)
    cfg = read_pipeline_config(str(printed))
    for path in runtime_files(cfg):
        meta = read_metadata(path)
        assert (meta.precision, meta.int8_mode) == ("int8", "calibrator")
        assert meta.tensorrt_version == "8.5.2.2" and meta.calibration_sha256
    assert read_metadata(runtime_files(cfg)[0]).input_size == [320, 320]

    assert main(argv) == 0  # same config: both kept
    assert len(builds) == 2 and capsys.readouterr().out.count("kept (up to date)") == 2


def test_skip_existing_rebuilds_what_the_config_changed(builds, tmp_path, capsys, caplog):
    engines = tmp_path / "engines"
    first = tmp_path / "a.json"
    first.write_text(json.dumps({"pipeline": {"det_size": [320, 320],
                                              "engine_dir": str(engines)}}))
    assert main(["build", "--from-config", str(first), "--skip-existing"]) == 0
    second = tmp_path / "b.json"
    second.write_text(json.dumps({"pipeline": {"det_size": [416, 416],
                                               "engine_dir": str(engines)}}))
    assert main(["build", "--from-config", str(second), "--skip-existing"]) == 0
    assert [(b["role"], b["size"]) for b in builds] == [
        ("detector", (320, 320)), ("pose", (192, 256)), ("detector", (416, 416))]
    assert "input 320x320 != 416x416" in caplog.text and "det_size" in caplog.text


def test_stale_when_the_sidecar_input_size_differs_even_with_equal_options():
    """det_size unset both times, but the model's own size changed (another registry default):
    the runtime would refuse the old engine, so --skip-existing must not keep it."""
    env = make_env("10.3.0", "Orin", "8.7")
    meta = EngineMetadata(model="m", role="detector", onnx_sha256="s", precision="fp16",
                          tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7",
                          build_command="", input_size=[416, 416], options={"x": 1})
    assert stale_reasons(meta, env, "s", {"x": 1}, (416, 416)) == []
    assert stale_reasons(meta, env, "s", {"x": 1}, (320, 320)) == ["input 416x416 != 320x320"]


@pytest.mark.parametrize("argv, words", [
    (["--precision", "int8"], ["--precision", "--from-config", "change the config"]),
    (["--det-size", "320", "--output", "/x"], ["--det-size, --output"]),
])
def test_flags_the_config_decides_are_one_line_errors(tmp_path, capsys, argv, words):
    cfg = tmp_path / "c.json"
    cfg.write_text("{}")
    assert main(["build", "--from-config", str(cfg), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and all(w in err for w in words), err


@pytest.mark.parametrize("text, words", [
    ("not json", ["not a readable JSON pipeline config", ".toml"]),
    ('{"pipeline": {"detektor": "x"}}', ["unknown key 'detektor' (did you mean 'detector'?)"]),
    ('{"pipeline": {"det_size": 333}}', ["--det-size must be multiples of 32"]),
    ('{"pipeline": {"precision": "fp8"}}', ["--precision must be one of fp32, fp16, int8"]),
])
def test_bad_configs_are_one_line_errors(tmp_path, capsys, text, words):
    cfg = tmp_path / "c.json"
    cfg.write_text(text)
    assert main(["build", "--from-config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trt-pose-td build: error: ") and "\n" not in err, err
    assert all(w in err for w in words), err
