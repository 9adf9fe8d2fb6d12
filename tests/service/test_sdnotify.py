"""sd_notify over a real AF_UNIX datagram socket: a filesystem path and the abstract namespace."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tests.service.helpers import REPO, NotifySocket
from trt_pose_td.service.sdnotify import Notifier, notify, socket_address, watchdog_interval


@pytest.fixture
def fs_socket(tmp_path):
    s = NotifySocket(str(tmp_path / "notify.sock"))
    yield s
    s.close()


@pytest.fixture
def abstract_socket():
    s = NotifySocket(f"@trt-pose-td-test-{uuid.uuid4().hex}")
    yield s
    s.close()


def test_notify_reaches_a_filesystem_socket(fs_socket):
    assert notify("READY=1\nSTATUS=warming up", fs_socket.path)
    assert fs_socket.collect() == ["READY=1\nSTATUS=warming up"]


def test_notify_reaches_an_abstract_socket(abstract_socket):
    assert notify("WATCHDOG=1", abstract_socket.path)
    assert abstract_socket.collect() == ["WATCHDOG=1"]


def test_notify_uses_the_environment(fs_socket, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", fs_socket.path)
    assert notify("STATUS=from env")
    assert fs_socket.collect() == ["STATUS=from env"]


def test_outside_systemd_everything_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    n = Notifier()
    assert not n.enabled
    n.ready()
    n.watchdog()
    n.stopping()
    assert n.ready_sent  # start-up is declared even when nobody listens


def test_unsupported_and_dead_sockets_never_raise(tmp_path):
    assert socket_address("vsock:2:1234") is None
    assert notify("READY=1", "vsock:2:1234") is False
    n = Notifier(str(tmp_path / "nobody-listens.sock"))
    assert n.send("READY=1") is False  # logged once, not raised


def test_notifier_sequence_ready_once_watchdog_status_stopping(fs_socket):
    n = Notifier(fs_socket.path, watchdog_s=0.0)
    n.ready("first frame")
    n.ready("again")  # ignored: READY is sent once
    n.watchdog()
    n.status("12.0 fps")
    n.stopping()
    assert fs_socket.collect() == ["READY=1\nSTATUS=first frame", "WATCHDOG=1",
                                   "STATUS=12.0 fps", "STOPPING=1\nSTATUS=stopping"]


def test_watchdog_pings_are_rate_limited(fs_socket):
    n = Notifier(fs_socket.path, watchdog_s=3600.0)
    n.ready()
    for _ in range(5):
        n.watchdog()
    assert fs_socket.collect() == ["READY=1"]
    quiet = Notifier(fs_socket.path, watchdog_s=None)
    quiet.watchdog()
    assert fs_socket.collect() == ["READY=1"]


def test_watchdog_interval_is_half_the_period_and_checks_the_pid():
    pid = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": pid}) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "nonsense"}) is None
    assert watchdog_interval({}) is None


def test_stdout_is_journal_compares_the_stream_systemd_named(tmp_path):
    code = ("import os, sys; from trt_pose_td.service.sdnotify import stdout_is_journal; "
            "st = os.fstat(1); env = {'JOURNAL_STREAM': f'{st.st_dev}:{st.st_ino}'}; "
            "other = {'JOURNAL_STREAM': f'{st.st_dev}:{st.st_ino + 1}'}; "
            "sys.stderr.write(f'{stdout_is_journal(env)} {stdout_is_journal(other)} "
            "{stdout_is_journal({})}')")
    out = tmp_path / "stdout"
    with open(out, "w") as f:
        proc = subprocess.run([sys.executable, "-c", code], stdout=f, stderr=subprocess.PIPE,
                              text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.stderr == "True False False"
    from trt_pose_td.service.sdnotify import stdout_is_journal

    assert stdout_is_journal({"TRT_POSE_TD_JOURNAL": "1"})
