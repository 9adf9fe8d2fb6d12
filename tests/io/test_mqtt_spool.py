"""MQTT store-and-forward against a real mosquitto: an outage spooled to disk and replayed in
order to a persistent (MQTT 5 session expiry) subscriber while live messages keep flowing, a
restart with a full spool, the cap, MQTT 5 message expiry, a publisher killed mid-outage."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

from tests.io.fakes import result
from tests.service.helpers import Broker, Subscriber, free_port, wait_for

pytest.importorskip("paho.mqtt.client")

from trt_pose_td.io.mqtt import MqttSink
from trt_pose_td.io.spool import Spool

REPO = Path(__file__).resolve().parents[2]
TOPIC = "trt-pose-td/{}/poses"


def sink(port: int, camera: str, spool_path: Path, **kw) -> MqttSink:
    backoff = kw.pop("backoff", 0.2)
    return MqttSink("127.0.0.1", port, camera=camera, qos=1, reconnect_min_s=backoff,
                    reconnect_max_s=max(backoff, 0.5),
                    spool=Spool(spool_path, **kw.pop("spool", {})), **kw)


def write(s: MqttSink, first: int, last: int, persons: int = 1) -> None:
    """Messages ``first`` .. ``last - 1`` (seq = index) in bursts of 200, each burst let through
    to the spool before the next (a camera writes at most tens a second, not thousands)."""
    for start in range(first, last, 200):
        for i in range(start, min(last, start + 200)):
            s.write(result(i, persons=persons, seq=i))
        wait_for(lambda: s.stats().queued == 0 or s.stats().connected, 30, "the spill")


class Collector:
    """Every message a subscriber got, in arrival order: seq of the first delivery of each."""

    def __init__(self, sub: Subscriber) -> None:
        self.sub, self.order, self.copies = sub, [], {}  # type: ignore[var-annotated]

    def poll(self) -> int:
        for _, payload, _ in self.sub.drain():
            seq = json.loads(payload)["seq"]
            if seq not in self.copies:
                self.order.append(seq)
            self.copies[seq] = self.copies.get(seq, 0) + 1
        return len(self.copies)

    def until(self, n: int, timeout: float = 60.0) -> List[int]:
        wait_for(lambda: self.poll() >= n, timeout, f"{n} distinct messages")
        return self.order


@pytest.fixture
def persistent(tmp_path):
    """A broker that keeps sessions over a graceful restart, and a consumer with an MQTT 5
    persistent session on it (what docs/service.md recommends to consumers)."""
    broker = Broker.persistent(tmp_path).start()
    sub = Subscriber(broker.port, TOPIC.format("+"), session_expiry_s=600, client_id="consumer")
    yield broker, Collector(sub)
    sub.close()
    broker.stop()


def test_an_outage_is_spooled_then_replayed_in_order_while_live_messages_flow(persistent,
                                                                               tmp_path):
    broker, got = persistent
    # the consumer (reconnecting every <= 1 s) is back before the sink (every 3 s), so what it
    # sees is the order the sink sent (a broker may reorder what it queued for an absent one)
    s = sink(broker.port, "door", tmp_path / "door.sqlite", backoff=3.0)
    try:
        wait_for(lambda: s.stats().connected, 10, "the connection")
        write(s, 0, 50)
        got.until(50)
        broker.stop(graceful=True)
        wait_for(lambda: not s.stats().connected, 15, "the disconnect")
        write(s, 50, 3050)  # the outage: everything goes to disk
        wait_for(lambda: s.stats().spool_written == 3000, 30, "3000 messages on disk")
        broker.start()
        wait_for(lambda: s.stats().connected, 20, "the reconnection")
        for i in range(3050, 3060):  # live while the backlog replays
            s.write(result(i, persons=1, seq=i))
        order = got.until(3060)
        wait_for(lambda: s.stats().spooled == 0, 20, "the spool to empty")
        stats = s.stats()
    finally:
        s.close()
    assert sorted(order) == list(range(3060))  # none lost
    backlog = [q for q in order if 50 <= q < 3050]
    assert backlog == list(range(50, 3050))  # replayed oldest first
    assert order.index(3050) < order.index(3049)  # a live message did not wait for it all
    assert stats.replayed == stats.spool_written == 3000 and stats.dropped == 0
    assert stats.published == 3060 and stats.spool_dropped_cap == 0


def test_a_restart_during_an_outage_sends_the_spool_when_the_broker_returns(persistent,
                                                                            tmp_path):
    broker, got = persistent
    broker.stop(graceful=True)
    first = sink(broker.port, "gate", tmp_path / "gate.sqlite")
    write(first, 0, 200)
    first.close(timeout=1.0)  # broker away: what is in memory goes to disk too
    assert first.stats().spooled == 200 and first.stats().dropped == 0
    broker.start()
    second = sink(broker.port, "gate", tmp_path / "gate.sqlite")
    try:
        assert sorted(got.until(200)) == list(range(200))
    finally:
        second.close()


def test_the_cap_keeps_the_newest_and_counts_what_it_dropped(persistent, tmp_path):
    broker, got = persistent
    broker.stop(graceful=True)
    s = sink(broker.port, "yard", tmp_path / "yard.sqlite", spool={"max_mb": 0.05})
    try:
        write(s, 0, 500, persons=3)
        wait_for(lambda: s.stats().spool_written + s.stats().spool_dropped_cap >= 500, 30,
                 "the writes to reach the spool")
        kept = s.stats().spooled
        broker.start()
        order = got.until(kept)
        stats = s.stats()
    finally:
        s.close()
    assert order == list(range(500 - kept, 500)) and 10 < kept < 200
    assert stats.spool_dropped_cap == 500 - kept == stats.dropped


def test_mqtt5_message_expiry_drops_what_waited_too_long(persistent, tmp_path):
    broker, got = persistent
    broker.stop(graceful=True)
    s = sink(broker.port, "hall", tmp_path / "hall.sqlite", protocol="5", message_expiry_s=2)
    try:
        for i in range(5):
            s.write(result(i, persons=1, seq=i))
        time.sleep(2.5)  # older than their expiry by the time the broker is back
        broker.start()
        wait_for(lambda: s.stats().connected, 20, "the reconnection")
        s.write(result(5, persons=1, seq=5))
        assert got.until(1) == [5]
        wait_for(lambda: s.stats().expired == 5, 10, "5 expired messages")
        time.sleep(0.5)
        got.poll()
        assert got.order == [5] and s.stats().spooled == 0
    finally:
        s.close()


PUBLISHER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.io.fakes import result
from trt_pose_td.io.mqtt import MqttSink
from trt_pose_td.io.spool import Spool
sink = MqttSink("127.0.0.1", {port}, camera="kill", qos=1, spool=Spool(Path({path!r})))
for i in range(100000):
    sink.write(result(i, persons=2, seq=i))
    print(i, flush=True)
    time.sleep(0.05)  # a 20 fps camera
"""


def test_a_publisher_killed_mid_outage_loses_at_most_the_messages_in_flight(tmp_path):
    port = free_port()  # no broker yet: the outage
    path = tmp_path / "kill.sqlite"
    child = subprocess.Popen([sys.executable, "-c", PUBLISHER.format(
        repo=str(REPO), port=port, path=str(path))], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    target = 60 + random.Random(7).randrange(40)
    reported = -1
    for line in child.stdout:
        reported = int(line)
        if reported >= target:
            break
    child.kill()  # SIGKILL mid-outage
    child.wait()
    reported = max([reported] + [int(x) for x in child.stdout.read().split()])
    broker = Broker(port).start()
    sub = Subscriber(port, TOPIC.format("kill"))
    got = Collector(sub)
    s = sink(port, "kill", path)
    try:
        wait_for(lambda: s.stats().spooled == 0 and s.stats().connected, 30, "the replay")
        time.sleep(0.5)
        got.poll()
    finally:
        s.close()
        sub.close()
        broker.stop()
    received = sorted(got.copies)
    assert received == list(range(len(received)))  # no hole: the spool is a prefix
    lost: Dict[str, int] = {"written": reported + 1, "received": len(received)}
    assert 0 <= lost["written"] - lost["received"] <= 2, lost  # only what was in memory
