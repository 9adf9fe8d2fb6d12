"""`serve` through a broker outage, a SIGKILL mid-outage and a restart, against a real mosquitto
and a consumer with an MQTT 5 persistent session; the JSONL file (rotating) is the ground truth
of what the service processed. And the free-space floor on a real small file system (tmpfs):
JSONL and spool stop writing, inference goes on, writing resumes."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import zlib
from collections import defaultdict
from typing import Dict, Set, Tuple

import pytest

from tests.io.fakes import all_lines, mounted_tmpfs
from tests.service.helpers import Broker, Serve, Subscriber, free_port, http_json, wait_for
from trt_pose_td.io.rotate import rotated_files

pytest.importorskip("onnxruntime")
pytest.importorskip("paho.mqtt.client")

CAMERAS = ("door", "yard")
Key = Tuple[str, str]  # (run_id, camera)


def health(serve: Serve) -> dict:
    serve.alive()
    return http_json(serve.url + "/healthz")[1]


def mqtt_of(serve: Serve, camera: str) -> dict:
    return health(serve)["cameras"][camera]["sinks"]["mqtt"]


def by_run(docs) -> Dict[Key, Set[int]]:
    out: Dict[Key, Set[int]] = defaultdict(set)
    for d in docs:
        out[(d["run_id"], d["camera"])].add(d["seq"])
    return out


@pytest.mark.slow
def test_outage_sigkill_restart_lose_only_what_was_in_flight(service_clip, tmp_path, procs):
    broker = Broker.persistent(tmp_path).start()
    consumer = Subscriber(broker.port, "trt-pose-td/+/poses", session_expiry_s=600,
                          client_id="consumer")
    jsonl = tmp_path / "out" / "poses.jsonl"
    args = [f"{c}={service_clip}" for c in CAMERAS] + [
        "--loop", "--mqtt", f"127.0.0.1:{broker.port}", "--mqtt-qos", "1",
        "--jsonl", str(jsonl), "--set", "jsonl.rotate_mb=0.1", "--set", "jsonl.keep=0",
        "--set", "mqtt.reconnect_min_s=0.5", "--set", "mqtt.reconnect_max_s=1"]
    first = Serve(tmp_path, *args)
    procs.append(first)
    try:
        wait_for(lambda: first.serving() and health(first)["frames"] >= 20, 90, "frames")
        broker.stop(graceful=True)  # the outage
        wait_for(lambda: all(mqtt_of(first, c)["spooled"] >= 20 for c in CAMERAS), 90,
                 "messages spooled for both cameras")
        doc = health(first)
        assert any("mqtt spool:" in w for w in doc["warnings"]), doc["warnings"]
        assert doc["cameras"]["door"]["sinks"]["mqtt"]["state"] in ("unreachable",
                                                                     "connecting")
        metrics = first.metrics()
        assert metrics["trt_pose_td_mqtt_spool_messages"] >= 10
        assert metrics["trt_pose_td_mqtt_spool_disk_bytes"] > 0
        first.proc.kill()  # SIGKILL mid-outage
        first.proc.wait()
        second = Serve(tmp_path, *args)  # systemd restarts it; the broker is still away
        procs.append(second)
        wait_for(lambda: second.serving() and health(second)["frames"] >= 20, 90,
                 "frames after the restart")
        broker.start()
        wait_for(lambda: all(mqtt_of(second, c)["spooled"] == 0 and
                             mqtt_of(second, c)["connected"] for c in CAMERAS), 60,
                 "both spools replayed")
        assert second.terminate() == 0, second.log[-3000:]
        time.sleep(2.0)  # the last acknowledged messages reach the consumer
        messages = [json.loads(p) for _, p, _ in consumer.drain()]
    finally:
        consumer.close()
        broker.stop()
    written = by_run(all_lines(jsonl))
    received = by_run(messages)
    runs = sorted({run for run, _ in written})
    assert len(runs) == 2 and len(rotated_files(jsonl)) >= 2  # rotated while it ran
    for key, seqs in written.items():
        assert seqs == set(range(len(seqs))), f"{key}: the JSONL lost or repeated a line"
        got = received.get(key, set())
        assert got <= seqs, f"{key}: received something never written"
        lost = sorted(seqs - got)
        if key[0] == runs[1]:
            assert not lost, f"{key}: lost {lost} in a run that stopped cleanly"
        else:  # the SIGKILLed run: at most what was in memory at the kill, at its very end
            assert len(lost) <= 3 and all(q > max(got) - 3 for q in lost), (key, lost)
    assert "from earlier runs" in second.log  # the spool of the killed run was picked up


@pytest.mark.slow
def test_the_floor_stops_the_disk_writers_never_inference(service_clip, tmp_path, procs):
    with mounted_tmpfs(tmp_path / "fs", 4096) as fs:
        filler = fs / "someone-else.bin"
        serve = Serve(tmp_path, str(service_clip), "--loop", "--jsonl", str(fs / "poses.jsonl"),
                      "--mqtt", f"127.0.0.1:{free_port()}",  # no broker: everything spools
                      "--set", "jsonl.min_free_mb=2", "--set", "mqtt.spool_min_free_mb=2",
                      "--set", f"mqtt.spool_dir=\"{fs / 'spool'}\"")
        procs.append(serve)
        lowest = [float("inf")]

        def free_mb() -> float:
            st = os.statvfs(fs)
            lowest[0] = min(lowest[0], st.f_bavail * st.f_frsize / 2 ** 20)
            return lowest[0]

        try:
            wait_for(lambda: serve.serving() and health(serve)["frames"] >= 5, 90, "frames")
            free_mb()
            filler.write_bytes(b"\0" * int((free_mb() - 1.8) * 2 ** 20))  # 1.8 MB left
            wait_for(lambda: free_mb() >= 0 and health(serve)["sinks"]["jsonl"]["paused"]
                     and health(serve)["sinks"]["mqtt"]["spool_paused"], 30, "both paused")
            paused_at = health(serve)["frames"]
            wait_for(lambda: free_mb() >= 0 and health(serve)["frames"] >= paused_at + 10, 60,
                     "frames while the disk writers are paused")
            doc = health(serve)
            assert doc["healthy"] and any("jsonl paused" in w for w in doc["warnings"])
            m = serve.metrics()
            assert m["trt_pose_td_jsonl_paused"] == 1 and m["trt_pose_td_jsonl_skipped_total"] > 0
            assert m["trt_pose_td_mqtt_spool_dropped_total{reason=floor}"] > 0
            lines_paused = m["trt_pose_td_jsonl_lines_total"]
            filler.unlink()  # space returns
            wait_for(lambda: not health(serve)["sinks"]["jsonl"]["paused"], 30, "resumed")
            wait_for(lambda: serve.metrics()["trt_pose_td_jsonl_lines_total"] > lines_paused + 3,
                     30, "lines written again")
            assert serve.terminate() == 0
        finally:
            free_mb()
        assert lowest[0] > 0.8, f"the file system ran down to {lowest[0]:.2f} MB free"
        assert serve.log.count("not writing until space returns") == 2  # once per writer
        with sqlite3.connect(fs / "spool" / "camera0.sqlite") as db:  # consistent, readable
            rows = db.execute("SELECT payload FROM spool").fetchall()
        assert rows and json.loads(zlib.decompress(rows[0][0]))["camera"] == "camera0"
        lines = all_lines(fs / "poses.jsonl")
        assert [d["seq"] for d in lines] == sorted(d["seq"] for d in lines)
