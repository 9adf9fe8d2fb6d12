"""The newest-frame hand-off shared by live captures and the service's file prefetch."""

from __future__ import annotations

import threading
import time

import numpy as np

from trt_pose_td.io.newest import NewestFrame
from trt_pose_td.types import Frame


def _frame(i: int) -> Frame:
    return Frame(np.full((2, 2, 3), i, np.uint8), i, 0.0, "test")


def test_the_newest_frame_wins_and_replaced_ones_are_counted():
    slot = NewestFrame()
    for i in range(3):
        slot.put(_frame(i))
    got = slot.take(timeout=0)
    assert got is not None and got.index == 2 and slot.drops == 2
    assert slot.take(timeout=0.05) is None and not slot.ended  # a timeout, not the end


def test_end_of_stream_after_the_last_frame_is_taken():
    slot = NewestFrame()
    slot.put(_frame(7))
    slot.finish()
    assert not slot.ended  # one frame still to read
    got = slot.take()
    assert got is not None and got.index == 7
    assert slot.ended and slot.take() is None  # take() no longer waits


def test_a_waiting_consumer_gets_the_frame_put_from_another_thread():
    slot = NewestFrame()
    out = []
    consumer = threading.Thread(target=lambda: out.append(slot.take(timeout=5)))
    consumer.start()
    time.sleep(0.05)
    slot.put(_frame(1))
    consumer.join(5)
    assert [f.index for f in out] == [1]


def test_a_reader_that_must_not_run_ahead_waits_until_taken_or_stopped():
    slot, stop = NewestFrame(), threading.Event()
    slot.put(_frame(1))
    done = threading.Event()
    reader = threading.Thread(target=lambda: (slot.wait_taken(stop.is_set), done.set()))
    reader.start()
    assert not done.wait(0.1)  # still unread: the reader waits
    slot.take()
    assert done.wait(5)
    slot.put(_frame(2))
    done.clear()
    reader = threading.Thread(target=lambda: (slot.wait_taken(stop.is_set), done.set()))
    reader.start()
    assert not done.wait(0.1)
    stop.set()
    slot.wake()  # close(): the reader re-checks stop and leaves
    assert done.wait(5)
    assert slot.drops == 0
