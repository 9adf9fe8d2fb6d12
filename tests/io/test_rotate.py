"""The rotating JSONL file on real files: rotation under a fast writer, gzip, retention, the
follower, the free-space floor on a real size-limited file system (tmpfs)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

import pytest

from tests.io.fakes import all_lines, mounted_tmpfs, result
from trt_pose_td.io.follow import follow
from trt_pose_td.io.rotate import RotatingJsonlSink, rotated_files


def wait_gzipped(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while any(f.suffix != ".gz" for _, f in rotated_files(path)):
        assert time.monotonic() < deadline, "closed files not gzipped in time"
        time.sleep(0.05)


def test_fast_writer_rotates_without_losing_or_duplicating_a_line(tmp_path):
    path = tmp_path / "poses.jsonl"
    sink = RotatingJsonlSink(str(path), rotate_mb=0.02, keep=0, gzip=True, min_free_mb=0)
    got: List[str] = []
    done = threading.Event()
    reader = threading.Thread(target=lambda: got.extend(
        follow(str(path), from_start=True, poll_s=0.01, stop=done.is_set)))
    reader.start()
    n = 3000
    for i in range(n):  # as fast as the loop goes: ~470 B lines, a rotation every ~43
        sink.write(result(i, persons=1, seq=i, run_id="r1"))
    sink.close()
    time.sleep(0.5)  # the follower polls every 10 ms
    done.set()
    reader.join(10)
    wait_gzipped(path)
    docs = all_lines(path)
    assert [d["seq"] for d in docs] == list(range(n))  # continuous across every file
    assert [json.loads(line)["seq"] for line in got] == list(range(n))  # the follower too
    files = rotated_files(path)
    stats = sink.stats()
    assert stats.rotations == len(files) > 60 and stats.lines == n
    assert all(f.name.endswith(".gz") for _, f in files)
    assert [c for c, _ in files] == list(range(1, len(files) + 1))
    assert not list(tmp_path.glob("*.part"))
    assert all(f.stat().st_size < 20 * 1024 for _, f in files)  # gz of <= 20 kB


def test_keep_prunes_the_oldest_and_a_restart_continues_the_counter(tmp_path):
    path = tmp_path / "poses.jsonl"
    sink = RotatingJsonlSink(str(path), rotate_mb=0.01, keep=3, gzip=False, min_free_mb=0)
    for i in range(200):
        sink.write(result(i, persons=1, seq=i))
    sink.close()
    files = rotated_files(path)
    assert len(files) == 3 and sink.stats().rotations >= 8
    last = files[-1][0]
    seqs = [d["seq"] for d in all_lines(path)]
    assert seqs == list(range(seqs[0], 200))  # the newest lines, none missing
    # a restart: appends to the open file, continues the counter, gzips the plain files
    (tmp_path / f"poses.jsonl.{last:06d}.gz.part").write_bytes(b"half")
    again = RotatingJsonlSink(str(path), rotate_mb=0.01, keep=3, gzip=True, min_free_mb=0)
    for i in range(200, 230):
        again.write(result(i, persons=1, seq=i))
    again.close()
    wait_gzipped(path)
    files = rotated_files(path)
    assert files[-1][0] > last and all(f.suffix == ".gz" for _, f in files)
    assert not list(tmp_path.glob("*.part"))
    seqs = [d["seq"] for d in all_lines(path)]
    assert seqs == list(range(seqs[0], 230))


def test_time_based_rotation(tmp_path):
    now = [1000.0]
    path = tmp_path / "poses.jsonl"
    sink = RotatingJsonlSink(str(path), rotate_mb=0, rotate_s=60, keep=0, gzip=False,
                             min_free_mb=0, clock=lambda: now[0])
    for i in range(10):
        sink.write(result(i, persons=0, seq=i))
        now[0] += 15  # a line every 15 s: a new file every 4 lines (60 s)
    sink.close()
    sizes = [len(f.read_text().splitlines()) for _, f in rotated_files(path)]
    assert sizes == [4, 4] and len(path.read_text().splitlines()) == 2


def test_follow_from_the_end_sees_only_new_lines_across_rotations(tmp_path):
    path = tmp_path / "poses.jsonl"
    sink = RotatingJsonlSink(str(path), rotate_mb=0.005, keep=0, gzip=True, min_free_mb=0)
    for i in range(50):
        sink.write(result(i, persons=1, seq=i))
    got: List[str] = []
    done = threading.Event()
    reader = threading.Thread(target=lambda: got.extend(
        follow(str(path), poll_s=0.01, stop=done.is_set)))
    reader.start()
    time.sleep(0.3)
    for i in range(50, 400):
        sink.write(result(i, persons=1, seq=i))
        if i % 40 == 0:
            time.sleep(0.05)  # let gzip race the follower on some files
    sink.close()
    time.sleep(0.5)
    done.set()
    reader.join(10)
    assert [json.loads(line)["seq"] for line in got] == list(range(50, 400))


def test_a_failed_write_leaves_no_broken_line(tmp_path):
    with mounted_tmpfs(tmp_path / "fs", 256) as fs:
        sink = RotatingJsonlSink(str(fs / "poses.jsonl"), rotate_mb=0, keep=0, gzip=False,
                                 min_free_mb=0)
        written = 0
        with pytest.raises(OSError):
            for i in range(10000):  # no floor: the disk fills up
                sink.write(result(i, persons=3, seq=i))
                written += 1
        sink.close()
        lines = (fs / "poses.jsonl").read_text().splitlines()
        assert len(lines) == written and json.loads(lines[-1])["seq"] == written - 1


def test_the_floor_stops_writing_and_resumes_on_a_small_file_system(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with mounted_tmpfs(tmp_path / "fs", 2048) as fs:
        sink = RotatingJsonlSink(str(fs / "poses.jsonl"), rotate_mb=0.1, keep=2, gzip=True,
                                 min_free_mb=1)
        sink.floor._interval = 0.0  # probe every line (the default is once a second)
        filler = fs / "other-program.bin"
        filler.write_bytes(b"\0" * (900 * 1024))  # another program takes space: 1.1 MB left
        seq = 0
        for _ in range(300):
            sink.write(result(seq, persons=3, seq=seq))
            seq += 1
        s = sink.stats()
        assert s.paused and s.skipped > 0 and s.free_mb >= 0.9  # the floor held
        assert sum("below the 1 MB floor" in r.getMessage() for r in caplog.records) == 1
        filler.unlink()  # space returns
        for _ in range(20):
            sink.write(result(seq, persons=3, seq=seq))
            seq += 1
        s = sink.stats()
        assert not s.paused and s.lines + s.skipped == seq
        assert any("writing resumed" in r.getMessage() for r in caplog.records)
        sink.close()
        seqs = [d["seq"] for d in all_lines(fs / "poses.jsonl")]
        assert seqs[-20:] == list(range(seq - 20, seq))  # the lines after it, all there
        assert os.statvfs(fs).f_bavail > 0


def test_the_follow_command_prints_every_line_across_rotations(tmp_path):
    path = tmp_path / "poses.jsonl"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    out = open(tmp_path / "followed.txt", "w")  # a file: a pipe nobody reads fills up
    live = subprocess.Popen([sys.executable, "-m", "trt_pose_td", "follow", str(path)],
                            stdout=out, env=env)
    try:
        time.sleep(1.5)  # the command waits for the file (as tail -F does)
        sink = RotatingJsonlSink(str(path), rotate_mb=0.01, keep=0, gzip=True, min_free_mb=0)
        for i in range(300):
            sink.write(result(i, persons=1, seq=i))
        sink.close()
        wait_gzipped(path)
        time.sleep(1.0)
    finally:
        live.terminate()
        live.wait(10)
        out.close()
    seen = [json.loads(line)["seq"] for line in (tmp_path / "followed.txt").open()]
    assert seen == list(range(300))
    once = subprocess.run([sys.executable, "-m", "trt_pose_td", "follow", str(path),
                           "--from-start", "--once"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert once.returncode == 0, once.stderr
    assert [json.loads(line)["seq"] for line in once.stdout.splitlines()] == list(range(300))
    assert len(rotated_files(path)) > 10
