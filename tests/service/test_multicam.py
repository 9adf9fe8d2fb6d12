"""Several cameras in one `serve`: config and command line, the per-tick gathering, the grouped
counters, and end to end against a real mosquitto (one keypoint batch per tick across the
cameras, per-camera topics, metrics, /healthz verdicts; a dead camera does not stall the other)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from tests.service.helpers import (
    MjpegCamera,
    Serve,
    Subscriber,
    gray_jpegs,
    http_get,
    http_json,
    wait_for,
)
from trt_pose_td.cli import serve as serve_cli
from trt_pose_td.errors import ConfigError
from trt_pose_td.io.capture import CaptureOptions, FileFeed, open_capture
from trt_pose_td.io.sources import open_source
from trt_pose_td.service.cameras import Camera, Cameras, Prefetch, camera_sources
from trt_pose_td.service.stats import ServiceStats, StatsGroup
from trt_pose_td.types import BatchInfo, Frame, FrameResult, Poses, StageTimes


def resolve(*argv: str):
    import argparse

    parser = argparse.ArgumentParser()
    serve_cli.add_parser(parser.add_subparsers())
    return serve_cli.resolve(parser.parse_args(["serve", *argv]))


# -- config -----------------------------------------------------------------------------------
def test_cameras_from_the_command_line_and_from_source_tables(tmp_path: Path):
    cfg = resolve("door=rtsp://admin:s3cret@10.0.0.5/s", "yard=/dev/video0", "--loop")
    assert [(n, s.uri, s.loop) for n, s in cfg.cameras()] == [
        ("door", "rtsp://admin:s3cret@10.0.0.5/s", True), ("yard", "/dev/video0", True)]
    assert "s3cret" not in json.dumps(cfg.as_dict())  # every camera's URI redacted
    # a bare URI is still one camera, named by [service] camera
    one = resolve("clip.mp4", "--camera", "lobby")
    assert not one.sources and one.cameras()[0][0] == "lobby"
    # [[source]] tables; [source] options given later (--set) apply to every camera
    conf = tmp_path / "c.toml"
    conf.write_text('[service]\nhealthy_when = "any"\n[[source]]\ncamera = "a"\nuri = "a.mp4"\n'
                    '[[source]]\ncamera = "b"\nuri = "b.mp4"\nloop = true\n')
    cfg = resolve("--config", str(conf), "--set", "source.timeout_s=2")
    assert [(n, s.loop, s.timeout_s) for n, s in cfg.cameras()] == [("a", False, 2.0),
                                                                   ("b", True, 2.0)]
    assert cfg.service.healthy_when == "any"
    # the command line's cameras replace the file's; a [source] table gives their defaults
    conf.write_text("[source]\ntimeout_s = 3.0\n")
    cfg = resolve("--config", str(conf), "x=1.mp4", "y=2.mp4")
    assert [(n, s.timeout_s) for n, s in cfg.cameras()] == [("x", 3.0), ("y", 3.0)]


@pytest.mark.parametrize("args, message", [
    (["a.mp4", "b.mp4"], "several sources need a camera name each"),
    (["a=1.mp4", "a=2.mp4"], "camera name 'a' given twice"),
    (["a=1.mp4", "b=2.mp4", "--set", "source.flip=9"], "[[source]] a flip must be 0..7"),
    (["a=1.mp4", "b=2.mp4", "--set", "service.healthy_when=most"], "healthy_when must be"),
])
def test_camera_mistakes_are_one_line_errors(args, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        resolve(*args)


def test_source_tables_need_distinct_names(tmp_path: Path):
    conf = tmp_path / "c.toml"
    conf.write_text('[[source]]\nuri = "a.mp4"\n[[source]]\ncamera = "b"\nuri = "b.mp4"\n')
    with pytest.raises(ConfigError, match="every camera needs a name"):
        resolve("--config", str(conf))
    conf.write_text('[[source]]\ncamera = "b"\nuri = "a.mp4"\n[[source]]\ncamera = "b"\n'
                    'uri = "b.mp4"\n')
    with pytest.raises(ConfigError, match="'b' is used twice"):
        resolve("--config", str(conf))


def test_uris_with_equals_signs_stay_bare():
    assert camera_sources(["rtsp://h/x?a=b"]) == [(None, "rtsp://h/x?a=b")]
    assert camera_sources(["door=rtsp://h/x?a=b"]) == [("door", "rtsp://h/x?a=b")]


# -- gathering --------------------------------------------------------------------------------
def test_a_camera_that_never_connects_does_not_hold_up_a_tick(sample_clip: Path):
    fast = CaptureOptions(timeout_s=1.0, reconnect_min_s=0.2, reconnect_max_s=0.4)
    dead = open_capture("rtsp://127.0.0.1:9/none", fast)  # port 9: refused at once
    clip = Prefetch(FileFeed(open_source(str(sample_clip), loop=True), fast), "clip")
    cams = Cameras([Camera("dead", dead), Camera("clip", clip)])
    stop = threading.Event()
    try:
        t0 = time.monotonic()
        ticks = [cams.gather(2.0, stop) for _ in range(5)]
        assert time.monotonic() - t0 < 5.0
        assert all([f.camera for f in t] == ["clip"] for t in ticks), ticks
        assert [t[0].index for t in ticks] == [0, 1, 2, 3, 4]  # a file skips no frame
        assert dead.stats().state in ("connecting", "lost")
    finally:
        cams.close()


def test_cameras_end_when_every_file_ended(sample_clip: Path):
    feeds = [Prefetch(FileFeed(open_source(str(sample_clip))), n) for n in ("a", "b")]
    cams = Cameras([Camera("a", feeds[0]), Camera("b", feeds[1])])
    stop = threading.Event()
    try:
        ticks = []
        while not cams.ended and len(ticks) < 20:
            ticks.append(cams.gather(2.0, stop))
        got = [f for t in ticks for f in t]
        assert cams.ended and len(got) == 16  # 8 frames each, none lost, none twice
        assert {(f.camera, f.index) for f in got} == {(c, i) for c in "ab" for i in range(8)}
    finally:
        cams.close()


# -- grouped counters -------------------------------------------------------------------------
def _group(when: str) -> StatsGroup:
    stats = {name: ServiceStats(name, {"version": "x"}, stale_after_s=30) for name in "ab"}
    group = StatsGroup(stats, when)
    group.set_phase("running")
    return group


def test_health_of_several_cameras_all_or_any():
    for when, healthy in (("all", False), ("any", True)):
        group = _group(when)
        frame = Frame(np.zeros((4, 4, 3), np.uint8), 0, 0.0, "f", "a")
        group.cameras["a"].record(FrameResult(frame, Poses.empty(), StageTimes(total=1.0)))
        ok, reason = group.health()
        assert ok is healthy and reason.startswith("1 of 2 camera(s) healthy (b: waiting")
        snap = group.snapshot()
        assert snap["healthy"] is healthy and snap["cameras"]["a"]["healthy"]
        assert not snap["cameras"]["b"]["healthy"]


def test_metrics_of_several_cameras_parse_with_one_header_per_metric():
    parser = pytest.importorskip("prometheus_client.parser")
    group = _group("all")
    group.record_batch(["a", "b"], BatchInfo([3, 5], 1, [8], 12.0))
    group.record_batch(["a"], BatchInfo([4], 1, [4], 9.0))
    text = group.prometheus()
    assert text.count("# TYPE trt_pose_td_frames_total ") == 1
    values: Dict[str, float] = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            values[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
    assert values['trt_pose_td_frames_total{"camera": "a"}'] == 0
    assert values['trt_pose_td_frames_total{"camera": "b"}'] == 0
    assert values["trt_pose_td_ticks_total{}"] == 2
    assert values["trt_pose_td_keypoint_runs_total{}"] == 2
    assert values["trt_pose_td_keypoint_batch_persons_total{}"] == 12
    assert group.snapshot()["batch"]["persons"] == {"a": 4}


# -- end to end -------------------------------------------------------------------------------
def labelled_metrics(text: str) -> Dict[str, float]:
    """{name{camera}: value} (prometheus_client's parser, which also validates the format)."""
    parser = pytest.importorskip("prometheus_client.parser")
    out = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            cam = s.labels.get("camera")
            if set(s.labels) <= {"camera"}:
                out[f"{s.name}{{{cam}}}" if cam else s.name] = s.value
    return out


@pytest.mark.slow
def test_two_cameras_one_keypoint_batch_per_tick_to_a_real_broker(sample_clip, tmp_path, broker,
                                                                   procs):
    pytest.importorskip("paho.mqtt.client")
    sub = Subscriber(broker.port, "trt-pose-td/#")
    jsonl = tmp_path / "poses.jsonl"
    serve = Serve(tmp_path, f"cam1={sample_clip}", f"cam2={sample_clip}", "--loop",
                  "--mqtt", f"127.0.0.1:{broker.port}", "--jsonl", str(jsonl),
                  "--max-batch", "64")
    procs.append(serve)
    try:
        seen: Dict[str, dict] = {}
        deadline = time.monotonic() + 120
        while not {"trt-pose-td/cam1/poses", "trt-pose-td/cam2/poses"} <= set(seen):
            topic, payload, _ = sub.get(timeout=max(1.0, deadline - time.monotonic()))
            if topic.endswith("/poses"):
                seen[topic] = json.loads(payload)
        assert seen["trt-pose-td/cam1/poses"]["camera"] == "cam1"
        assert seen["trt-pose-td/cam2/poses"]["camera"] == "cam2"
        assert seen["trt-pose-td/cam2/poses"]["persons"]
        m = wait_for(lambda: (lambda v: v if v["trt_pose_td_ticks_total"] >= 3 else None)(
            labelled_metrics(http_get(serve.url + "/metrics")[2].decode())), 90, "three ticks")
        # ONE keypoint run per tick (max_batch 64 holds both cameras' persons), one detector run
        assert m["trt_pose_td_keypoint_runs_total"] == m["trt_pose_td_ticks_total"]
        assert m["trt_pose_td_detector_runs_total"] == m["trt_pose_td_ticks_total"]
        assert m["trt_pose_td_frames_total{cam1}"] >= 2 and m["trt_pose_td_frames_total{cam2}"] >= 2
        wait_for(lambda: len(http_json(serve.url + "/stats.json")[1]["batch"]["persons"]) == 2,
                 30, "a tick with both cameras")
        batch = http_json(serve.url + "/stats.json")[1]["batch"]
        assert batch["keypoint_batches"] == [sum(batch["persons"].values())]
        assert batch["detector_calls"] == 1
        status, health = http_json(serve.url + "/healthz")
        assert status == 200 and set(health["cameras"]) == {"cam1", "cam2"}
        assert all(c["healthy"] for c in health["cameras"].values())
        wait_for(lambda: "last tick: 2 camera(s), persons cam1" in serve.log, 30,
                 "the batch composition in the status line")
        ctype = http_get(serve.url + "/stream.mjpg?camera=nope")[0]
        assert ctype == 404
    finally:
        code = serve.terminate()
    assert code == 0, serve.log[-3000:]
    assert "Traceback" not in serve.log
    cams = {json.loads(line)["camera"] for line in jsonl.read_text().splitlines()}
    assert cams == {"cam1", "cam2"}
    offline = {t for t, p, _ in sub.drain() if t.endswith("/status") and p == b"offline"}
    assert offline == {"trt-pose-td/cam1/status", "trt-pose-td/cam2/status"}
    sub.close()


@pytest.mark.slow
def test_a_dead_camera_does_not_stall_the_other(sample_clip, tmp_path, procs):
    camera = MjpegCamera(gray_jpegs(30), fps=8).start()
    serve = Serve(tmp_path, f"clip={sample_clip}", f"ip={camera.url}", "--loop", "--jsonl", "",
                  "--set", "source.reconnect_min_s=0.2", "--set", "source.reconnect_max_s=0.5",
                  "--set", "service.stale_after_s=3")
    procs.append(serve)
    try:
        wait_for(lambda: serve.serving() and http_json(serve.url + "/healthz")[0] == 200, 90,
                 "both cameras healthy")
        camera.stop()  # the IP camera dies
        wait_for(lambda: http_json(serve.url + "/healthz")[0] == 503, 30, "unhealthy (all)")
        health = http_json(serve.url + "/healthz")[1]
        assert not health["cameras"]["ip"]["healthy"] and health["cameras"]["clip"]["healthy"]
        before = labelled_metrics(http_get(serve.url + "/metrics")[2].decode())
        wait_for(lambda: labelled_metrics(http_get(serve.url + "/metrics")[2].decode())[
            "trt_pose_td_frames_total{clip}"] >= before["trt_pose_td_frames_total{clip}"] + 3,
            60, "the file camera going on while the IP camera is away")
        after = labelled_metrics(http_get(serve.url + "/metrics")[2].decode())
        assert after["trt_pose_td_source_reconnects_total{ip}"] >= 1
        assert http_json(serve.url + "/healthz")[1]["cameras"]["clip"]["healthy"]
    finally:
        code = serve.terminate()
        camera.stop()
    assert code == 0, serve.log[-3000:]
    assert "Traceback" not in serve.log
