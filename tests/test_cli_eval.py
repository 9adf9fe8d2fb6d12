"""``trt-pose-td eval`` and ``quantize`` end to end, on a few dev-split images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("pycocotools")

REPO = Path(__file__).resolve().parents[1]
FEW = ("--max-images", "6", "--people-only", "--pose", "pp_tinypose_128x96", "-q")


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, "-m", "trt_pose_td", *args], env=full, cwd=REPO,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def baseline(shared, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "base"
    proc = cli("eval", *FEW, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def test_eval_prints_tables_and_writes_summary(baseline):
    out, stdout = baseline
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets= 20 ]" in stdout
    assert "maxDets=100" in stdout and "det_infer" in stdout    # box table and timing
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["keypoints"]) >= {"AP", "AP50", "AP75", "APm", "APl", "AR"}
    assert set(summary["bbox"]) >= {"AP", "AP50", "APs", "AR100"}
    assert summary["images"] == 6 and summary["persons"] > 6
    assert summary["config"]["pose"] == "pp_tinypose_128x96"
    assert summary["config"]["eval"]["boxes"] == "own"
    assert 0.3 < summary["keypoints"]["AP"] <= 1.0 and 0.2 < summary["bbox"]["AP"] <= 1.0
    results = json.loads((out / "keypoint_results.json").read_text())
    assert len(results) == summary["persons"] and len(results[0]["keypoints"]) == 51


def test_gate_passes_on_the_same_boxes_and_fails_on_a_worse_decoder(baseline, tmp_path):
    out, _ = baseline
    dets = str(out / "detections.json")
    gate = ("--compare", str(out / "summary.json"), "--boxes", dets)
    same = cli("eval", *FEW, *gate, "--max-drop", "0.5", "-o", str(tmp_path / "same"))
    assert same.returncode == 0, same.stdout + same.stderr
    assert "ok   keypoints.AP" in same.stdout
    worse = cli("eval", *FEW, *gate, "--max-drop", "0.5", "--refine", "none",
                "--heatmap-offset", "0.5", "-o", str(tmp_path / "worse"))
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "FAIL keypoints.AP" in worse.stdout
    worse_summary = json.loads((tmp_path / "worse" / "summary.json").read_text())
    assert worse_summary["keypoints"]["AP"] < \
        json.loads((out / "summary.json").read_text())["keypoints"]["AP"] - 0.005
    assert worse_summary["gate"]["passed"] is False and worse_summary["gate"]["max_drop"] == 0.5
    assert worse_summary["gate"]["lines"][0].startswith("FAIL keypoints.AP")


def test_keypoint_batch_1_gives_the_results_of_batch_n(baseline, tmp_path):
    """The reference must not depend on batching (what bench/gpu_check.sh's batch-1 / batch-N
    gates assume): ONNX Runtime one person per run equals chunks of 8, keypoint for keypoint,
    and the --compare gate at --max-drop 0 passes."""
    import collections

    import numpy as np

    out, _ = baseline
    proc = cli("eval", *FEW, "--keypoint-batch", "1", "--compare", str(out / "summary.json"),
               "--max-drop", "0", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "keypoint batch <= 1)" in proc.stdout and "ok   keypoints.AP" in proc.stdout
    one = json.loads((tmp_path / "summary.json").read_text())
    many = json.loads((out / "summary.json").read_text())
    assert (one["config"]["keypoint_batch"], many["config"]["keypoint_batch"]) == (1, 8)
    assert one["gate"]["passed"] is True and one["keypoints"] == many["keypoints"]
    runs = [json.loads((d / "keypoint_results.json").read_text()) for d in (tmp_path, out)]
    persons = collections.Counter(r["image_id"] for r in runs[1])
    assert max(persons.values()) > 8      # an image whose persons took two chunks of 8
    kpts = [np.array([r["keypoints"] for r in run]) for run in runs]
    assert kpts[0].shape == kpts[1].shape and np.abs(kpts[0] - kpts[1]).max() <= 1e-3


def test_a_keypoint_engine_beyond_keypoint_batch_is_refused():
    """TensorRT chunks by the engine profile's max: --keypoint-batch below it is one line
    naming the engine to build (no GPU here: the pipeline is a plain stand-in object)."""
    from types import SimpleNamespace

    from trt_pose_td.cli.eval import keypoint_batch
    from trt_pose_td.errors import ConfigError

    pose = SimpleNamespace(max_batch=32, engine=SimpleNamespace(source="e/pose.fp16.engine"))
    pipeline = SimpleNamespace(pose=pose)
    assert keypoint_batch(pipeline, None) == 32 and keypoint_batch(pipeline, 32) == 32
    with pytest.raises(ConfigError, match=r"--keypoint-batch 1: the keypoint engine "
                       r"e/pose.fp16.engine runs up to 32 persons per call .* --pose-batch "
                       r"1,1,1 --output DIR"):
        keypoint_batch(SimpleNamespace(inner=pipeline), 1)   # a tracked pipeline's inner one


def test_ground_truth_boxes_beat_own_boxes(baseline, tmp_path):
    out, _ = baseline
    proc = cli("eval", *FEW, "--boxes", "gt", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    gt = json.loads((tmp_path / "summary.json").read_text())
    own = json.loads((out / "summary.json").read_text())
    assert gt["bbox"] is None and gt["keypoints"]["AP"] > own["keypoints"]["AP"]


def test_bad_eval_input_is_one_line(tmp_path):
    proc = cli("eval", "--images", str(tmp_path), "--annotations", str(tmp_path / "none.json"),
               "-o", str(tmp_path))
    assert proc.returncode == 2 and "annotation file not found" in proc.stderr
    (tmp_path / "a.json").write_text('{"images": [], "annotations": []}')
    proc = cli("eval", "--images", str(tmp_path), "--annotations", str(tmp_path / "a.json"),
               "--boxes", "nope.json", "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "--boxes must be own, gt or a detection file" in proc.stderr


@pytest.mark.slow
def test_quantize_then_eval_int8(shared, tmp_path):
    cache = str(tmp_path / "cache")
    proc = cli("quantize", "rtmdet_nano_person", "pp_tinypose_128x96", "-q",
               TRT_POSE_TD_CACHE=cache)
    assert proc.returncode == 0, proc.stderr
    assert "quantized/pp_tinypose_128x96.int8-" in proc.stdout
    proc = cli("eval", *FEW, "--precision", "int8", "-o", str(tmp_path / "int8"),
               TRT_POSE_TD_CACHE=cache)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "int8" / "summary.json").read_text())
    assert summary["config"]["precision"] == "int8"
    assert "quantized" in summary["config"]["detector_file"]
    assert ".int8-" in summary["config"]["pose_file"]
    assert summary["keypoints"]["AP"] > 0.2
