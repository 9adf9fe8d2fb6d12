"""The MQTT sink against a real mosquitto broker (Debian's package), killed and restarted.
Store-and-forward (the spool) is in test_mqtt_spool.py."""

from __future__ import annotations

import json

import pytest

from tests.io.fakes import result
from tests.service.helpers import Broker, Subscriber, free_port, wait_for

pytest.importorskip("paho.mqtt.client")

from trt_pose_td.io.mqtt import MqttSink


@pytest.fixture
def broker():
    b = Broker().start()
    yield b
    b.stop()


def test_messages_reach_a_subscriber_with_the_jsonl_schema(broker):
    sub = Subscriber(broker.port, "trt-pose-td/#")
    sink = MqttSink("127.0.0.1", broker.port, camera="door", qos=1)
    try:
        wait_for(lambda: sink.stats().connected, 10, "the connection")
        assert sub.get(topic="trt-pose-td/door/status")[1] == b"online"
        for i in range(3):
            sink.write(result(i))
        docs: dict = {}  # by frame: QoS 1 is at-least-once, a loaded broker may redeliver
        while len(docs) < 3:
            doc = json.loads(sub.get(topic="trt-pose-td/door/poses")[1])
            assert doc == docs.get(doc["frame"], doc)  # a redelivery is the same message
            docs[doc["frame"]] = doc
    finally:
        sink.close()
        sub.close()
    expected = result(1).to_dict()
    assert docs[1] == dict(expected, camera="door")
    assert list(docs) == [0, 1, 2]  # first deliveries in publish order
    assert len(docs[0]["persons"][0]["keypoints"]) == 17
    assert sink.stats().published == 3 and sink.stats().dropped == 0


def test_retain_and_offline_status_reach_late_subscribers(broker):
    sink = MqttSink("127.0.0.1", broker.port, camera="gate", qos=1, retain=True)
    wait_for(lambda: sink.stats().connected, 10, "the connection")
    sink.write(result(7))
    sink.close()
    late = Subscriber(broker.port, "trt-pose-td/gate/#")
    try:
        got = [late.get(), late.get()]  # the two retained messages, in any order
    finally:
        late.close()
    by_topic = {t: (p, r) for t, p, r in got}
    assert by_topic["trt-pose-td/gate/poses"][1] is True
    assert json.loads(by_topic["trt-pose-td/gate/poses"][0])["frame"] == 7
    assert by_topic["trt-pose-td/gate/status"] == (b"offline", True)


def test_broker_away_at_start_queue_is_bounded_then_newest_are_delivered():
    port = free_port()
    sink = MqttSink("127.0.0.1", port, camera="c", qos=1, queue_size=10,
                    reconnect_min_s=1, reconnect_max_s=1)
    try:
        for i in range(200):  # returns at once: no broker, nothing blocks
            sink.write(result(i, persons=1))
        s = sink.stats()
        assert not s.connected and s.queued <= 10 and s.dropped >= 189
        broker = Broker(port).start()
        try:
            sub = Subscriber(port, "trt-pose-td/c/poses")
            wait_for(lambda: sink.stats().connected, 15, "the connection after the broker came")
            sink.write(result(500, persons=1))
            frames = []
            wait_for(lambda: frames.append(json.loads(sub.get()[1])["frame"]) or
                     500 in frames, 15, "the newest message")
            sub.close()
        finally:
            sink.close()
            broker.stop()
    finally:
        sink.close()
    assert frames[-1] == 500 and all(f >= 189 for f in frames)  # only the newest survived


def test_broker_killed_mid_run_write_never_blocks_and_reconnects(broker):
    sink = MqttSink("127.0.0.1", broker.port, camera="k", qos=0, queue_size=50,
                    reconnect_min_s=1, reconnect_max_s=2)
    try:
        wait_for(lambda: sink.stats().connected, 10, "the connection")
        broker.stop()
        wait_for(lambda: not sink.stats().connected, 15, "the disconnect to be noticed")
        for i in range(300):
            sink.write(result(i, persons=1))
        assert sink.stats().queued <= 50
        broker.start()
        wait_for(lambda: sink.stats().connected, 20, "the reconnection")
        sub = Subscriber(broker.port, "trt-pose-td/k/poses")
        sink.write(result(1000, persons=1))
        wait_for(lambda: json.loads(sub.get()[1])["frame"] == 1000, 15, "a message after it")
        sub.close()
        assert sink.stats().reconnects >= 1
    finally:
        sink.close()


def test_close_without_a_spool_waits_for_the_broker_to_send_what_was_written():
    """Written before the first connection, closed at once: without a spool the message waits
    in memory for a connection up to close's timeout (the broker comes up 1 s later), and is
    published, not dropped (it was, when close gave up while the first connect was pending)."""
    import threading

    broker = Broker()
    sink = MqttSink("127.0.0.1", broker.port, camera="late", qos=1, reconnect_min_s=0.2,
                    reconnect_max_s=0.5)
    starter = threading.Timer(1.0, broker.start)
    try:
        sink.write(result(3))
        starter.start()
        sink.close(timeout=8.0)
        assert sink.stats().published == 1 and sink.stats().dropped == 0, sink.stats()
    finally:
        starter.join()
        broker.stop()
