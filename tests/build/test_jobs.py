import shlex
from pathlib import Path

import pytest

from trt_pose_td.build.jobs import (
    calibration_set,
    has_qdq_nodes,
    plan_jobs,
    rebuild_command,
    stale_reasons,
    timing_cache_file,
)
from trt_pose_td.build.options import BatchRange, BuildOptions, LayerPrecision
from trt_pose_td.cli import build_parser
from trt_pose_td.cli.build import options_from_args
from trt_pose_td.engine_meta import EngineMetadata
from trt_pose_td.errors import CalibrationError

from .conftest import CALIB_ANN, make_env


def parse_command(command: str) -> BuildOptions:
    argv = shlex.split(command)
    assert argv[:2] == ["trt-pose-td", "build"]
    return options_from_args(build_parser().parse_args(argv[1:]))


@pytest.mark.parametrize("opts", [
    BuildOptions(output="/engines"),
    BuildOptions(precision="int8", output="/engines", det_size=(416, 416),
                 pose_batches=(BatchRange(1, 8, 32), BatchRange(1, 1, 4)), max_batch=32),
    BuildOptions(precision="int8", int8_mode="calibrator", calib_images="/data/calib",
                 calib_annotations="/data/calib/ann.json", calib_batch=4, output="out"),
    BuildOptions(precision="fp16", tactic_sources="-CUBLAS,-CUBLAS_LT,-CUDNN", workspace_mib=512,
                 timing_cache="none", dla_core=1, version_compatible=True,
                 layer_precisions=(LayerPrecision("type:SOFTMAX", "fp32"),
                                   LayerPrecision("*head*", "fp16"))),
    BuildOptions(output="/engines", det_batch=BatchRange(1, 2, 4)),
    BuildOptions(output="/engines", det_batch=BatchRange(1, 1, 8)),  # explicit: no follow
    BuildOptions(precision="int8", strongly_typed=True, tactic_sources="-CUDNN",
                 qdq_method="entropy", detector="models/my det.onnx",
                 detector_like="rtmdet_nano_person_raw"),
])
def test_rebuild_command_rebuilds_the_same_engine(opts):
    for role in ("detector", "pose"):
        command = rebuild_command(opts, role)
        again = parse_command(command)
        assert again.roles == (role,)
        assert again.engine_options(role) == opts.engine_options(role), command
        assert again.output == str(Path(opts.output or again.output).resolve())
        model = opts.detector if role == "detector" else opts.pose
        assert getattr(again, role).endswith(model.split("/")[-1])
        assert "--skip-existing" not in command


def test_detector_batch_profile_flag():
    """No --det-batch: the default profile (several cameras, a static batch followed); a
    given one is taken as is (and a static detector then refuses it at build time)."""
    from trt_pose_td.build.options import DEFAULT_DET_BATCH

    default = parse_command("trt-pose-td build --only detector")
    assert default.det_batch == DEFAULT_DET_BATCH and default.det_batch.follows_static
    assert (default.det_batch.min, default.det_batch.max) == (1, 8)
    given = parse_command("trt-pose-td build --only detector --det-batch 1,4,4")
    assert given.det_batch == BatchRange(1, 4, 4) and not given.det_batch.follows_static
    assert "--det-batch" not in rebuild_command(default, "detector")
    assert "--det-batch 1,4,4" in rebuild_command(given, "detector")


def test_rebuild_command_is_short_for_defaults():
    command = rebuild_command(BuildOptions(output="/engines"), "pose")
    assert command == ("trt-pose-td build --only pose --pose pp_tinypose_256x192 --precision "
                       "fp16 --output /engines")


def test_stale_reasons():
    env = make_env("10.3.0.30", "Orin", "8.7")
    opts = BuildOptions(precision="int8")
    meta = EngineMetadata("pp_tinypose_256x192", "pose", "a" * 64, "int8", "10.3.0.30", "Orin",
                          "8.7", "cmd", int8_mode="qdq", options=opts.engine_options("pose"))
    assert stale_reasons(meta, env, "a" * 64, opts.engine_options("pose")) == []
    assert stale_reasons(meta, make_env("10.3.0.26"), "a" * 64,
                         opts.engine_options("pose")) == []  # same release, other build
    assert "TensorRT 10.3.0.30 != 10.16.1" in stale_reasons(
        meta, make_env("10.16.1"), "a" * 64, opts.engine_options("pose"))[0]
    assert "GPU Orin (8.7)" in stale_reasons(meta, make_env("10.3.0.30", "Xavier", "7.2"),
                                             "a" * 64, opts.engine_options("pose"))[0]
    assert "ONNX aaaa" in stale_reasons(meta, env, "b" * 64, opts.engine_options("pose"))[0]
    other = BuildOptions(precision="int8", pose_batches=(BatchRange(1, 4, 16),))
    assert stale_reasons(meta, env, "a" * 64, other.engine_options("pose")) == [
        "options changed: batches"]


def test_qdq_models_are_recognised(standins, qdq_standin):
    assert has_qdq_nodes(qdq_standin)
    assert not has_qdq_nodes(standins["heatmap"])


def test_calibration_set_defaults_to_the_mirror(calib_subset, tmp_path, monkeypatch):
    """A mirror laid out like ../shared (here a folder made for the test, holding the small
    calibration set) provides coco/calib_train2017 when --calib-images is not given."""
    mirror = tmp_path / "mirror"
    (mirror / "coco").mkdir(parents=True)
    (mirror / "coco" / "calib_train2017").symlink_to(calib_subset, target_is_directory=True)
    monkeypatch.setenv("TRT_POSE_TD_MIRROR", str(mirror))
    calib = calibration_set(BuildOptions(precision="int8"), need_annotations=True)
    assert calib.images == (mirror / "coco" / "calib_train2017").resolve()
    assert calib.annotations.name == "person_keypoints_train2017_calib_subset.json"


def test_missing_calibration_sets_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("TRT_POSE_TD_MIRROR", raising=False)
    with pytest.raises(CalibrationError, match="--calib-images DIR .* TRT_POSE_TD_MIRROR"):
        calibration_set(BuildOptions(precision="int8"), need_annotations=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="holds no images"):
        calibration_set(BuildOptions(calib_images=str(empty)), need_annotations=False)
    with pytest.raises(CalibrationError, match="not found"):
        calibration_set(BuildOptions(calib_images=str(tmp_path / "nope")), False)
    (empty / "a.jpg").write_bytes(b"jpeg")
    assert calibration_set(BuildOptions(calib_images=str(empty)), False).annotations is None
    with pytest.raises(CalibrationError, match="--calib-annotations FILE"):
        calibration_set(BuildOptions(calib_images=str(empty)), need_annotations=True)
    with pytest.raises(CalibrationError, match="annotations not found"):
        calibration_set(BuildOptions(calib_images=str(empty),
                                     calib_annotations=str(empty / "x.json")), True)


def test_jobs_name_engines_by_model_precision_and_mode(calib_subset, tmp_path):
    opts = BuildOptions(precision="int8", output=str(tmp_path), det_size=(416, 416),
                        calib_images=str(calib_subset),
                        calib_annotations=str(calib_subset / CALIB_ANN))
    jobs = plan_jobs(opts, progress=False)
    # explicit INT8 builds the detector's raw-head twin (NMS stays out of the int8 graph) ...
    assert [(j.role, j.engine.name) for j in jobs] == [
        ("detector", "rtmdet_nano_person_raw.int8-qdq.engine"),
        ("pose", "pp_tinypose_256x192.int8-qdq.engine")]
    assert jobs[0].size == (416, 416) and jobs[1].size == (192, 256)
    # ... and the runtime looks for exactly these files
    from trt_pose_td.config import PipelineConfig
    from trt_pose_td.pipelines.plan import engine_path, model_specs

    cfg = PipelineConfig(precision="int8", int8_mode="qdq", engine_dir=str(tmp_path))
    assert [engine_path(cfg, s).name for s in model_specs(cfg, int8_qdq=True)] == \
        [j.engine.name for j in jobs]
    assert jobs[0].engine.parent == tmp_path.resolve() and jobs[0].onnx.is_file()
    (only,) = plan_jobs(BuildOptions(only="pose", output=str(tmp_path)), progress=False)
    assert only.engine.name == "pp_tinypose_256x192.fp16.engine" and only.role == "pose"


def test_timing_cache_location(tmp_path):
    env = make_env("8.5.2.2", "Orin", "8.7")
    assert timing_cache_file(BuildOptions(output=str(tmp_path)), env) == (
        tmp_path.resolve() / "timing-trt8.5.2.2-sm87.cache")
    assert timing_cache_file(BuildOptions(timing_cache="none"), env) is None
    assert timing_cache_file(BuildOptions(timing_cache=str(tmp_path / "t.cache")), env) == (
        tmp_path / "t.cache").resolve()
