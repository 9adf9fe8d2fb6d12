"""The on-disk MQTT spool (SQLite): order, cap and age eviction counted, a writer killed with
SIGKILL mid-write, a corrupt file, a second process, the free-space floor on a real tmpfs."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.io.fakes import mounted_tmpfs
from trt_pose_td.errors import ConfigError
from trt_pose_td.io.spool import Spool

REPO = Path(__file__).resolve().parents[2]


def payload(i: int, size: int = 2000) -> bytes:
    """Message ``i``: its number, then incompressible bytes (so sizes are real)."""
    rng = random.Random(i)
    return b"%08d|" % i + bytes(rng.getrandbits(8) for _ in range(size))


def numbers(spool: Spool) -> list:
    return [int(m.payload[:8]) for m in spool.peek(0, 1 << 20)]


def test_messages_come_back_in_order_and_leave_only_when_removed(tmp_path):
    spool = Spool(tmp_path / "c.sqlite", max_mb=10)
    for i in range(100):
        assert spool.put("t/c/poses", payload(i))
    first = spool.peek(0, 10)
    assert [int(m.payload[:8]) for m in first] == list(range(10))
    assert spool.peek(first[-1].id, 5)[0].payload == payload(10)  # after a cursor
    spool.remove([m.id for m in first])
    assert numbers(spool) == list(range(10, 100)) and len(spool) == 90
    s = spool.stats()
    assert (s.spooled, s.sent, s.dropped, s.messages) == (100, 10, 0, 90)
    spool.close()
    again = Spool(tmp_path / "c.sqlite", max_mb=10)  # survives a restart
    assert numbers(again) == list(range(10, 100)) and again.peek(0, 1)[0].topic == "t/c/poses"
    again.close()


def test_cap_drops_the_oldest_and_counts_them(tmp_path):
    spool = Spool(tmp_path / "c.sqlite", max_mb=0.1)  # ~50 messages of ~2 kB
    for i in range(400):
        spool.put("t", payload(i))
    s = spool.stats()
    kept = numbers(spool)
    assert kept == list(range(400 - len(kept), 400))  # the newest, contiguous
    assert s.dropped_cap == 400 - len(kept) > 300 and s.bytes <= 0.1 * 2 ** 20
    assert s.messages == len(kept)
    assert not spool.put("t", payload(0, size=200_000))  # larger than the whole cap
    assert spool.stats().dropped_cap == s.dropped_cap + 1
    spool.close()


def test_old_messages_expire_and_are_counted(tmp_path):
    spool = Spool(tmp_path / "c.sqlite", max_age_s=60)
    now = time.time()
    for i in range(10):
        spool.put("t", payload(i), t=now - 120 + i)  # 120..111 s old
    for i in range(10, 15):
        spool.put("t", payload(i))
    assert spool.expire() == 10
    assert numbers(spool) == list(range(10, 15)) and spool.stats().dropped_age == 10
    spool.close()


def test_an_empty_spool_gives_its_space_back(tmp_path):
    spool = Spool(tmp_path / "c.sqlite", max_mb=50)
    for i in range(2000):
        spool.put("t", payload(i))
    spool.checkpoint()
    full = spool.disk_bytes()
    spool.remove([m.id for m in spool.peek(0, 5000)])
    spool.checkpoint()
    assert full > 4_000_000 and spool.disk_bytes() < full / 10
    spool.close()


WRITER = """
import sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.io.test_spool import payload
from trt_pose_td.io.spool import Spool
spool = Spool(Path({path!r}), max_mb=500)
start = len(spool)
for i in range(start, start + 100000):
    spool.put("t/c/poses", payload(i, 60000))
    print(i, flush=True)
"""


def test_a_writer_killed_mid_write_loses_at_most_that_message(tmp_path):
    path = tmp_path / "c.sqlite"
    rng = random.Random(20)
    reported = -1
    for round_ in range(5):
        child = subprocess.Popen([sys.executable, "-c", WRITER.format(repo=str(REPO),
                                                                     path=str(path))],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        target = reported + 20 + rng.randrange(30)
        for line in child.stdout:  # each line: a put() that returned (committed)
            reported = int(line)
            if reported >= target:
                break
        time.sleep(rng.uniform(0, 0.01))  # somewhere inside a later put()
        child.kill()  # SIGKILL: no cleanup of any kind
        child.wait()
        rest = child.stdout.read().split()
        reported = int(rest[-1]) if rest else reported
        with sqlite3.connect(path) as db:  # the file is consistent (WAL rolled forward)
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        spool = Spool(path, max_mb=500)
        got = numbers(spool)
        spool.close()
        assert got == list(range(len(got))), f"round {round_}: a hole or a duplicate"
        # everything reported committed is there; at most the one being written beyond it
        assert reported + 1 <= len(got) <= reported + 2, (round_, reported, len(got))
        reported = len(got) - 1


def test_an_unreadable_file_is_moved_aside(tmp_path, caplog):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    spool = Spool(path)
    assert len(spool) == 0 and spool.put("t", b"x")
    spool.close()
    aside = list(tmp_path.glob("c.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    assert "moved aside" in caplog.text


def test_a_second_process_is_refused_and_an_unwritable_folder_is_one_line(tmp_path):
    spool = Spool(tmp_path / "c.sqlite")
    with pytest.raises(ConfigError, match="in use by another process"):
        Spool(tmp_path / "c.sqlite")
    spool.close()
    Spool(tmp_path / "c.sqlite").close()  # free again once closed
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"cannot write there.*spool_dir"):
        Spool(tmp_path / "file" / "c.sqlite")


def test_the_floor_keeps_the_spool_from_filling_a_small_file_system(tmp_path):
    with mounted_tmpfs(tmp_path / "fs", 6144) as fs:
        spool = Spool(fs / "c.sqlite", max_mb=100, min_free_mb=2)
        spool.floor._interval = 0.0  # probe on every message
        written = sum(spool.put("t", payload(i, 20000)) for i in range(300))
        s = spool.stats()
        assert s.paused and s.dropped_floor == 300 - written and written > 20
        assert s.messages == written
        spool.checkpoint()
        free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize / 2 ** 20
        # never ran dry: 2 MB floor, less at most the WAL not yet folded into the file (~1 MB)
        assert free >= 0.75, free
        spool.remove([m.id for m in spool.peek(0, 1000)])
        spool.checkpoint()  # space back: writing resumes by itself
        assert spool.put("t", payload(999, 20000)) and not spool.stats().paused
        spool.close()
