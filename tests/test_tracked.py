"""Tracking wired into the product: open_pipeline(track/det_every/smooth), the CLI flags, the
JSONL fields, on the packaged models and a real (generated) video."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trt_pose_td.api import open_pipeline
from trt_pose_td.config import PipelineConfig
from trt_pose_td.errors import ConfigError
from trt_pose_td.pipelines.tracked import TrackedPipeline

pytest.importorskip("onnxruntime")
pytest.importorskip("lap")
cv2 = pytest.importorskip("cv2")
REPO = Path(__file__).resolve().parents[1]


def test_tracking_options_are_validated_and_turn_tracking_on():
    with pytest.raises(ConfigError, match="--det-every must be"):
        PipelineConfig(det_every=0)
    with pytest.raises(ConfigError, match="--track must be true or false"):
        PipelineConfig(track="yes")  # type: ignore[arg-type]
    with open_pipeline() as plain:
        assert not isinstance(plain, TrackedPipeline)
    for options in ({"track": True}, {"det_every": 3}, {"smooth": True}):
        with open_pipeline(**options) as p:
            assert isinstance(p, TrackedPipeline) and p.backend == "onnxruntime"


def test_skip_frame_stream_keeps_ids_and_skips_the_detector(sample_clip):
    """The clip pans the same group 6 px a frame: every confident person keeps one ID; with
    --det-every 4 the detector runs on frames 0 and 4 only."""
    with open_pipeline(det_every=4, smooth=True) as p:
        results = list(p.stream(sample_clip))
    assert [r.frame.index for r in results] == list(range(8))
    detected = ["det_infer" in r.times for r in results]
    assert detected == [True, False, False, False, True, False, False, False]
    first = results[0].poses
    confident = set(first.track_ids[(first.box_scores >= 0.5) & (first.track_ids >= 0)])
    assert len(confident) >= 6
    for r in results[1:]:
        assert r.poses.track_ids is not None and r.poses.keypoints_raw is not None
        # every confident person of frame 0 is still there under the same ID
        assert confident <= set(r.poses.track_ids.tolist()), r.frame.index
    # in-between frames followed the people: keypoints move with the 6 px pan
    a, b = results[1].poses, results[2].poses
    common = sorted(set(a.track_ids) & set(b.track_ids) & confident)
    shift = [np.median(b.keypoints_raw[b.track_ids == t][0, :, 0] -
                       a.keypoints_raw[a.track_ids == t][0, :, 0]) for t in common]
    assert 3 < float(np.median(shift)) < 9, shift


def test_det_every_longer_than_the_video_detects_once(sample_clip):
    with open_pipeline(det_every=100) as p:
        results = list(p.stream(sample_clip))
    assert sum("det_infer" in r.times for r in results) == 1
    assert all(len(r.poses) >= 6 for r in results)


def test_cli_run_writes_track_ids_and_an_annotated_video(sample_clip, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "trt_pose_td", "run", str(sample_clip), "-o",
                           str(tmp_path / "out"), "--track", "--det-every", "3", "-q"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(x) for x in (tmp_path / "out" / "poses.jsonl").read_text().splitlines()]
    assert len(docs) == 8
    persons = [p for d in docs for p in d["persons"]]
    assert persons and all("track_id" in p for p in persons)
    assert "keypoints_raw" not in persons[0]  # only with --smooth
    ids = {p["track_id"] for p in persons if p["track_id"] >= 0}
    assert len(ids) <= 20  # about 14 people panned 8 frames: no ID churn
    cap = cv2.VideoCapture(str(tmp_path / "out" / "sample_clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8


def test_bench_several_k_needs_a_video():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "trt_pose_td", "bench", "--det-every", "1,5"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--video" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_bench_video_writes_table_json_and_plot(sample_clip, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = tmp_path / "track.json"
    proc = subprocess.run([sys.executable, "-m", "trt_pose_td", "bench", "--video",
                           str(sample_clip), "--det-every", "1,4", "--json", str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert [r["det_every"] for r in doc["skip_frame"]] == [1, 4]
    k4 = doc["skip_frame"][1]
    assert k4["detector_frames"] == 2 and k4["oks_median"] > 0.8
    assert "oks_med" in proc.stdout and out.with_suffix(".png").stat().st_size > 10_000
