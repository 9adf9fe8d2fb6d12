"""examples/ run as a user runs them (a subprocess on this checkout) and say the right thing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest

from tests.service.helpers import Broker

REPO = Path(__file__).resolve().parents[1]


def example(name: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(REPO / "examples" / name), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


def true_counts(source: object, min_score: float) -> List[int]:
    import trt_pose_td as tpt

    with tpt.open_pipeline() as pipeline:
        return [int((r.poses.box_scores >= min_score).sum()) for r in pipeline.stream(source)]


@pytest.mark.slow
def test_count_people_prints_the_count_whenever_it_changes(sample_clip):
    proc = example("count_people.py", str(sample_clip), "--min-score", "0.4")
    assert proc.returncode == 0, proc.stderr
    printed = [tuple(map(int, re.fullmatch(r"frame (\d+): (\d+) people", line).groups()))
               for line in proc.stdout.splitlines()]  # type: ignore[union-attr]
    counts = true_counts(str(sample_clip), 0.4)
    assert len(counts) == 8 and counts[0] >= 5
    expected = [(i, n) for i, n in enumerate(counts) if i == 0 or n != counts[i - 1]]
    assert printed == expected


def test_count_people_bad_source_is_one_line_and_exit_2(tmp_path):
    proc = example("count_people.py", str(tmp_path / "missing.mp4"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "missing.mp4" in proc.stderr


def test_coco_results_evaluate_with_pycocotools(sample_photo, shared, tmp_path):
    out = tmp_path / "results.json"
    proc = example("coco_results.py", str(sample_photo), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert len(results) >= 5 and {r["image_id"] for r in results} == {1000}
    assert all(r["category_id"] == 1 and len(r["keypoints"]) == 51 for r in results)
    pytest.importorskip("pycocotools")
    from trt_pose_td.benchmarks.evaluate import coco_metrics, load_coco

    coco = load_coco(shared / "coco/annotations/person_keypoints_val2017_dev.json")
    metrics, _ = coco_metrics(coco, results, "keypoints", [1000])
    assert metrics["AP"] > 0.3, metrics  # real poses against COCO's own annotations


def test_mqtt_consumer_draws_the_skeletons_of_a_real_sink_message(sample_photo, tmp_path):
    pytest.importorskip("paho.mqtt")
    cv2 = pytest.importorskip("cv2")
    import trt_pose_td as tpt
    from trt_pose_td.io.mqtt import MqttSink

    with tpt.open_pipeline() as pipeline:
        result = pipeline(sample_photo)
    broker = Broker().start()
    try:  # retained, so the consumer started afterwards still gets it
        sink = MqttSink("127.0.0.1", broker.port, camera="door", qos=1, retain=True)
        sink.write(result)
        sink.close()
        assert sink.stats().published == 1
        proc = example("mqtt_skeletons.py", "--port", str(broker.port), "--topic",
                       "trt-pose-td/+/poses", "--background", str(sample_photo), "--timeout",
                       "20", "-o", str(tmp_path), timeout=60)
    finally:
        broker.stop()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"door_{result.frame.index:06d}.jpg: {len(result.poses)} people\n"
    drawn = cv2.imread(str(tmp_path / f"door_{result.frame.index:06d}.jpg"))
    photo = cv2.imread(str(sample_photo))
    assert drawn.shape == photo.shape
    changed = np.abs(drawn.astype(int) - photo.astype(int)).sum(axis=2) > 60
    xy = result.poses.keypoints[result.poses.keypoint_scores >= 0.3].round().astype(int)
    xy = xy[(xy[:, 0] < photo.shape[1]) & (xy[:, 1] < photo.shape[0]) & (xy >= 0).all(1)]
    assert len(xy) > 20 and changed[xy[:, 1], xy[:, 0]].mean() > 0.8  # red dots on keypoints
