#!/usr/bin/env python3
"""Chaos bench: two looping cameras served through broker outages, a SIGKILL and a full disk,
counted from the consumer's side. Not a timed test.

Outages: ``trt-pose-td serve cam0=VIDEO cam1=VIDEO --loop`` (default models, ONNX Runtime, MQTT
QoS 1, a rotating JSONL file) publishes to a real mosquitto (persistence on) and an MQTT 5
consumer with a persistent session. The broker is stopped for ``--outage-a`` s (2 min), started,
stopped again for ``--outage-b`` s (10 min); halfway through the second outage the service is
SIGKILLed and started again 5 s later (systemd's Restart=), the broker only at the end of the
outage. The JSONL file is the ground truth of what the service processed: per run and camera,
every ``seq`` written is looked for among the messages received.

Floor: a second service writes its JSONL and spool to a small file system (a loop-mounted ext4
image, else a tmpfs); with the broker away, a filler file takes the space down below the
free-space floor for ``--hold`` s, then is removed and the broker started: both writers must
pause (counted), inference must go on, the disk must never fill, writing must resume.

Prints tables, writes JSON and a plot (messages received per second across the outages, spool
and RSS).

    python bench/chaos.py --json docs/chaos/chaos.json --png docs/chaos/chaos.png   # ~25 min
    python bench/chaos.py --short --json /tmp/chaos.json --png /tmp/chaos.png     # ~2 min
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos_parts import Broker, Consumer, Sampler, Service, SmallFs  # noqa: E402
from chaos_report import (  # noqa: E402
    count_floor,
    count_outages,
    disk_numbers,
    plot,
    print_tables,
    read_jsonl,
)
from multicam import default_video  # noqa: E402

CAMERAS = ("cam0", "cam1")


def serve_args(video: str, broker: Broker, jsonl: Path, threads: int, *extra: str) -> List[str]:
    return [*(f"{c}={video}" for c in CAMERAS), "--loop", "--mqtt", f"127.0.0.1:{broker.port}",
            "--mqtt-qos", "1", "--jsonl", str(jsonl), "--threads", str(threads),
            "--set", "mqtt.reconnect_min_s=1", "--set", "mqtt.reconnect_max_s=5", *extra]


def tear_down(sampler: Sampler, svc: Service, consumer: Consumer, broker: Broker) -> None:
    sampler.stop.set()
    if svc.proc.poll() is None:
        svc.kill()
    consumer.close()
    broker.stop()


def wait_replayed(svc: Service, timeout: float) -> float:
    """Seconds until every camera's spool is empty and its broker connected."""
    t = time.time()
    while time.time() < t + timeout:
        try:
            cams = svc.health()["cameras"].values()
            if all(c["sinks"]["mqtt"]["spooled"] == 0 and c["sinks"]["mqtt"]["connected"]
                   for c in cams):
                return time.time() - t
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(1.0)
    return float("nan")


def outages(args: argparse.Namespace, work: Path, video: str) -> Dict[str, Any]:
    broker = Broker(work / "broker")
    broker.start()
    consumer = Consumer(broker.port)
    jsonl = work / "out" / "poses.jsonl"
    argv = serve_args(video, broker, jsonl, args.threads, "--set", "jsonl.rotate_mb=1",
                      "--set", "jsonl.keep=0")
    t0 = time.time()
    events: List[Dict[str, Any]] = []
    sampler = Sampler(t0, work / "state" / "trt-pose-td" / "spool")

    def mark(name: str, svc: Service) -> None:
        frames = svc.frames() if svc.proc.poll() is None else {}
        events.append({"t": round(time.time() - t0, 1), "event": name, "frames": frames,
                       "run_id": svc.health()["run_id"] if frames else None})
        print(f"  {events[-1]['t']:7.1f} s  {name}  {frames}", flush=True)

    svc = Service(argv, work, "serve-run1")
    sampler.service = svc
    sampler.start()
    try:
        svc.wait_frames(3)
        mark("ready", svc)
        time.sleep(args.warm)
        for name, seconds in (("A", args.outage_a), ("B", args.outage_b)):
            mark(f"broker stop {name}", svc)
            broker.stop()
            stopped = time.time()
            if name == "B":
                time.sleep(args.outage_b / 2)
                mark("SIGKILL", svc)
                svc.kill()
                time.sleep(5.0)  # systemd's RestartSec
                svc = Service(argv, work, "serve-run2")
                sampler.service = svc
                svc.wait_frames(1)
                mark("restarted", svc)
            time.sleep(max(0.0, stopped + seconds - time.time()))
            started = time.time()
            broker.start()
            mark(f"broker start {name}", svc)
            events[-1]["t"] = round(started - t0, 1)
            replay = wait_replayed(svc, args.outage_b + 60)
            events[-1]["replay_s"] = round(replay, 1)
            print(f"  spools empty {replay:.1f} s after the broker came back", flush=True)
            time.sleep(args.between)
        mark("stop", svc)
        code = svc.terminate()
        time.sleep(3.0)
    finally:
        tear_down(sampler, svc, consumer, broker)
    return {"t0": t0, "events": events, "exit_code": code, "samples": sampler.samples,
            "received": consumer.records, "jsonl": str(jsonl)}


def floor(args: argparse.Namespace, work: Path, video: str) -> Dict[str, Any]:
    fs = SmallFs(work / "smallfs", args.fs_mb)
    broker = Broker(work / "broker-floor")
    broker.start()
    consumer = Consumer(broker.port)
    argv = serve_args(video, broker, fs.folder / "poses.jsonl", args.threads,
                      "--set", "jsonl.rotate_mb=2", "--set", "jsonl.keep=4",
                      "--set", f"jsonl.min_free_mb={args.floor_mb}",
                      "--set", f"mqtt.spool_dir=\"{fs.folder / 'spool'}\"",
                      "--set", f"mqtt.spool_min_free_mb={args.floor_mb}")
    t0 = time.time()
    sampler = Sampler(t0, fs.folder / "spool", interval=0.5, free_of=fs.folder)
    svc = Service(argv, work, "serve-floor")
    sampler.service = svc
    sampler.start()
    filler = fs.folder / "filler.bin"
    events: Dict[str, Any] = {"fs": fs.kind, "floor_mb": args.floor_mb, "fs_mb": args.fs_mb}
    try:
        svc.wait_frames(3)
        time.sleep(args.warm / 2)
        broker.stop()  # the spool grows too
        time.sleep(2.0)
        keep_mb = args.floor_mb - 2
        with open(filler, "wb") as f:  # another program fills the disk
            f.write(b"\0" * int(max(0.0, fs.free_mb() - keep_mb) * 2 ** 20))
        events["filled_at_s"] = round(time.time() - t0, 1)
        time.sleep(args.hold)
        events["health_while_full"] = svc.health()
        filler.unlink()
        broker.start()
        events["freed_at_s"] = round(time.time() - t0, 1)
        events["replay_s"] = round(wait_replayed(svc, 120), 1)
        time.sleep(5.0)
        events["health_end"] = svc.health()
        events["exit_code"] = svc.terminate()
        time.sleep(3.0)
    finally:
        tear_down(sampler, svc, consumer, broker)
    lines = read_jsonl(fs.folder / "poses.jsonl")
    fs.close()
    return {**events, "samples": sampler.samples, "received": consumer.records,
            "jsonl_lines": [(d["run_id"], d["camera"], d["seq"]) for d in lines]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", action="store_true",
                   help="15 s / 30 s outages, a 6 s full disk: a smoke run of about 2 minutes")
    p.add_argument("--video", default=None, help="default: the mirror's vtest.avi, else a clip "
                                                 "of the packaged photo")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per service")
    p.add_argument("--no-floor", action="store_true", help="skip the full-disk phase")
    p.add_argument("--json", default="chaos.json")
    p.add_argument("--png", default="chaos.png")
    p.add_argument("--workdir", default=None, help="default: a new temporary folder")
    args = p.parse_args()
    full = {"warm": 60.0, "outage_a": 120.0, "between": 60.0, "outage_b": 600.0, "hold": 60.0,
            "fs_mb": 64, "floor_mb": 16}
    short = {"warm": 6.0, "outage_a": 15.0, "between": 4.0, "outage_b": 30.0, "hold": 6.0,
             "fs_mb": 32, "floor_mb": 8}
    vars(args).update(short if args.short else full)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="trt-pose-td-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    video = args.video or default_video(work)
    print(f"chaos bench ({'short' if args.short else 'full'}) in {work} on {video}", flush=True)
    load_before = os.getloadavg()
    run = outages(args, work, video)
    flo = None if args.no_floor else floor(args, work, video)
    doc: Dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]), "args": vars(args),
        "video": video, "workdir": str(work), "load_average": [load_before, os.getloadavg()],
        "outages": count_outages(run), "disk": disk_numbers(Path(run["jsonl"]), run["samples"]),
        "floor": None if flo is None else count_floor(flo)}
    print_tables(doc)
    plot(run, doc, args.png)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1, default=float))
    print(f"wrote {args.json} and {args.png}; logs in {work}")
    return 0 if doc["outages"]["goal_met"] and (flo is None or doc["floor"]["held"]) else 1


if __name__ == "__main__":
    sys.exit(main())
