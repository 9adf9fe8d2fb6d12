"""The ``trt-pose-td`` command end to end, in a subprocess like a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "trt_pose_td", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_help_answers_the_basic_questions():
    out = cli("--help").stdout
    for word in ("run", "bench", "fetch", "TRT_POSE_TD_MIRROR"):
        assert word in out
    run_help = cli("run", "--help").stdout
    for word in ("--det-size", "--max-batch", "--score-threshold", "poses.jsonl", "--backend"):
        assert word in run_help


def test_run_default_sample_writes_jsonl_and_annotated_image(sample_photo, tmp_path):
    """The packaged models on the packaged photo: no mirror, no network."""
    env = {k: v for k, v in os.environ.items() if k != "TRT_POSE_TD_MIRROR"}
    proc = subprocess.run([sys.executable, "-m", "trt_pose_td", "run", "--output",
                           str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env=dict(env, PYTHONPATH=str(REPO),
                                                TRT_POSE_TD_CACHE=str(tmp_path / "cache")))
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "out" / "poses.jsonl").read_text().splitlines()
    doc = json.loads(lines[0])
    assert set(doc) == {"frame", "source", "timestamp", "persons"}
    confident = [p for p in doc["persons"] if p["score"] >= 0.3]
    assert len(confident) >= 8, len(confident)
    person = doc["persons"][0]
    assert len(person["box"]) == 4 and len(person["keypoints"]) == 17
    assert all(len(k) == 3 for k in person["keypoints"])
    drawn = cv2.imread(str(tmp_path / "out" / sample_photo.name))
    original = cv2.imread(str(sample_photo))
    assert drawn.shape == original.shape and np.abs(drawn.astype(int) - original).mean() > 1
    assert "total" in proc.stdout and "FPS" in proc.stdout  # the timing table
    assert not (tmp_path / "cache" / "models").exists()  # packaged files are used in place


def test_run_folder_with_a_broken_image_keeps_the_rest(sample_photo, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (src / name).write_bytes(sample_photo.read_bytes())
    (src / "zz_broken.jpg").write_bytes(b"not a jpeg")
    proc = cli("run", str(src), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert "zz_broken.jpg" in proc.stderr
    assert len((tmp_path / "out" / "poses.jsonl").read_text().splitlines()) == 2


def test_run_video_writes_annotated_video(sample_clip, tmp_path):
    proc = cli("run", str(sample_clip), "-o", str(tmp_path / "out"), "--max-batch", "16", "-q")
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "out" / "poses.jsonl").read_text().splitlines()
    assert len(lines) == 8 and [json.loads(x)["frame"] for x in lines] == list(range(8))
    assert all(len(json.loads(x)["persons"]) >= 8 for x in lines)
    cap = cv2.VideoCapture(str(tmp_path / "out" / "sample_clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8


@pytest.mark.parametrize("args, message", [
    (("run", "/no/such/photo.jpg"), "no such file"),
    (("run", "setup.py"), "neither an image nor a video"),
    (("run", "--pose", "posenet"), "unknown model 'posenet'"),
    (("run", "--detector", "pp_tinypose_128x96"), "is a pose model, not a detector"),
    (("run", "--max-batch", "0"), "--max-batch must be >= 1"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, message):
    proc = cli(*args, "-o", str(tmp_path), cwd=REPO)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_bench_writes_json(sample_photo, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (frames / name).write_bytes(sample_photo.read_bytes())
    proc = cli("bench", "--frames", str(frames), "--max-frames", "2", "--repeat", "1",
               "--persons", "1,3", "-q",
               "--json", str(tmp_path / "b.json"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["batched"]["fps"] > 0 and doc["per_person"]["fps"] > 0
    assert doc["per_person"]["max_batch"] == 1
    assert [r["persons"] for r in doc["sweep"]] == [1, 3]
    assert "speedup" in proc.stdout


def test_fetch_list_and_fetch_packaged():
    proc = cli("fetch", "--list")
    assert proc.returncode == 0 and "pp_tinypose_256x192" in proc.stdout
    proc = cli("fetch", "pp_tinypose_256x192", "sample")
    assert proc.returncode == 0, proc.stderr
    paths = proc.stdout.strip().splitlines()
    assert paths[0].endswith("trt_pose_td/data/models/pp_tinypose_256x192.onnx")
    assert paths[1].endswith("trt_pose_td/data/samples/000000001000.jpg")


def test_fetch_from_the_mirror(shared):
    proc = cli("fetch", "pp_tinypose_128x96")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("pp_tinypose_128x96.onnx")
