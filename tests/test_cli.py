"""The ``trt-pose-td`` command end to end, in a subprocess like a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_run_default_sample_writes_jsonl_and_annotated_image(shared, tmp_path):
    proc = cli("run", "--output", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "out" / "poses.jsonl").read_text().splitlines()
    doc = json.loads(lines[0])
    assert set(doc) == {"frame", "source", "timestamp", "persons"}
    assert len(doc["persons"]) >= 20
    person = doc["persons"][0]
    assert len(person["box"]) == 4 and len(person["keypoints"]) == 17
    assert all(len(k) == 3 for k in person["keypoints"])
    drawn = cv2.imread(str(tmp_path / "out" / "000000002299.jpg"))
    original = cv2.imread(str(shared / "coco/val2017/000000002299.jpg"))
    assert drawn.shape == original.shape
    assert "total" in proc.stdout and "FPS" in proc.stdout  # the timing table


def test_run_folder_with_a_broken_image_keeps_the_rest(shared, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("000000002299.jpg", "000000000785.jpg"):
        (src / name).write_bytes((shared / "coco/val2017" / name).read_bytes())
    (src / "zz_broken.jpg").write_bytes(b"not a jpeg")
    proc = cli("run", str(src), "-o", str(tmp_path / "out"), "--pose", "pp_tinypose_128x96")
    assert proc.returncode == 1
    assert "zz_broken.jpg" in proc.stderr
    assert len((tmp_path / "out" / "poses.jsonl").read_text().splitlines()) == 2


def test_run_video_writes_annotated_video(shared, tmp_path):
    video = shared / "crowd/mmpose_testdata/demo__resources__demo.mp4"
    proc = cli("run", str(video), "-o", str(tmp_path), "--pose", "pp_tinypose_128x96", "-q")
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "poses.jsonl").read_text().splitlines()
    assert len(lines) == 5 and [json.loads(x)["frame"] for x in lines] == list(range(5))
    cap = cv2.VideoCapture(str(tmp_path / "demo__resources__demo.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5


@pytest.mark.parametrize("args, message", [
    (("run", "/no/such/photo.jpg"), "no such file"),
    (("run", "setup.py"), "neither an image nor a video"),
    (("run", "--pose", "posenet"), "unknown model 'posenet'"),
    (("run", "--detector", "pp_tinypose_128x96"), "is a pose model, not a detector"),
    (("run", "--max-batch", "0"), "--max-batch must be >= 1"),
])
def test_bad_input_is_one_line_and_nonzero(shared, tmp_path, args, message):
    proc = cli(*args, "-o", str(tmp_path), cwd=REPO)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_bench_writes_json(shared, tmp_path):
    frames = shared / "crowd/MOT17/MOT17-05-FRCNN/img1"
    proc = cli("bench", "--frames", str(frames), "--max-frames", "2", "--repeat", "1",
               "--persons", "1,3", "--pose", "pp_tinypose_128x96", "-q",
               "--json", str(tmp_path / "b.json"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["batched"]["fps"] > 0 and doc["per_person"]["fps"] > 0
    assert doc["per_person"]["max_batch"] == 1
    assert [r["persons"] for r in doc["sweep"]] == [1, 3]
    assert "speedup" in proc.stdout


def test_fetch_list_and_fetch(shared):
    proc = cli("fetch", "--list")
    assert proc.returncode == 0 and "pp_tinypose_256x192" in proc.stdout
    proc = cli("fetch", "pp_tinypose_128x96")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("pp_tinypose_128x96.onnx")
