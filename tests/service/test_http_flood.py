"""~1000 half-open connections to `serve`'s HTTP port (loopback, bounded in count and time):
inference keeps its rate, the process keeps a bounded number of file descriptors, the log a
bounded number of lines, and the endpoints answer again once the flood is over."""

from __future__ import annotations

import os
import resource
import socket
import time

import pytest

from tests.service.helpers import Serve, http_get, wait_for

pytest.importorskip("onnxruntime")

CONNECTIONS = 1000
FLOOD_S = 8.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(serve: Serve, seconds: float) -> tuple:
    """(frames per second, CPU seconds per frame) of ``serve`` over ``seconds``: the rate
    suffers from whatever else runs on the machine, the CPU per frame hardly does."""
    n0, c0, t0 = len(serve.lines), cpu_seconds(serve.proc.pid), time.monotonic()
    time.sleep(seconds)
    frames = max(1, len(serve.lines) - n0)
    return frames / (time.monotonic() - t0), (cpu_seconds(serve.proc.pid) - c0) / frames


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def half_open(port: int, n: int) -> list:
    """``n`` connections that send an unfinished request and then nothing."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(1.0)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        except OSError:  # the accept queue is full: that attempt is simply lost
            s.close()
            continue
        socks.append(s)
    return socks


@pytest.mark.slow
def test_a_connection_flood_leaves_inference_at_full_rate(service_clip, tmp_path, procs):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < CONNECTIONS + 200:
        pytest.skip(f"needs {CONNECTIONS + 200} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, CONNECTIONS + 200), hard))
    serve = Serve(tmp_path, str(service_clip), "--loop", "--set", "http.max_connections=16",
                  "--set", "http.timeout_s=4")
    procs.append(serve)
    # systemd's default soft limit, which 1019 connections exhausted before the cap existed
    resource.prlimit(serve.proc.pid, resource.RLIMIT_NOFILE, (1024, hard))
    socks: list = []
    try:
        wait_for(lambda: serve.alive() and len(serve.lines) >= 10, 90, "ten processed frames")
        base, cpu_base = measure(serve, 6.0)
        fds_before, log_before = open_fds(serve.proc.pid), len(serve.log.splitlines())
        t0 = time.monotonic()
        socks = half_open(serve.http_port, CONNECTIONS)
        opened = len(socks)
        fds_during = open_fds(serve.proc.pid)
        flooded, cpu_flood = measure(serve, max(FLOOD_S - (time.monotonic() - t0), 3.0))
        serve.alive()
    finally:
        for s in socks:
            s.close()
    after, _ = measure(serve, 6.0)
    wait_for(lambda: http_get(serve.url + "/healthz", timeout=2)[0] == 200, 30,
             "/healthz after the flood")
    log_lines = len(serve.log.splitlines()) - log_before
    assert serve.terminate() == 0
    numbers = (f"{base:.2f} / {flooded:.2f} / {after:.2f} fps and {cpu_base:.3f} / "
               f"{cpu_flood:.3f} CPU s per frame before / during / after the flood")
    assert opened >= CONNECTIONS // 2, f"only {opened} connections got through to the server"
    # the machine is shared: the rate gets a wide margin, the CPU per frame a narrow one
    assert flooded >= 0.6 * (base + after) / 2, numbers
    assert cpu_flood <= 1.35 * cpu_base, numbers
    assert fds_during <= fds_before + 16 + 10, (fds_before, fds_during)  # the cap, not the flood
    # bounded log: the status line every second plus one line about the refused connections
    assert log_lines <= FLOOD_S + 30, serve.log[-3000:]
    assert "connection(s) closed unserved" in serve.log
    print(numbers)
