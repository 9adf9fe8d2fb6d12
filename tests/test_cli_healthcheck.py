"""`trt-pose-td healthcheck` (the images' HEALTHCHECK) and the CPU image's config: the probe
follows the service's resolved address, never a fixed port; the CPU config's defaults."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trt_pose_td.cli import build_parser
from trt_pose_td.cli.healthcheck import find_service, healthz_url, serve_args_of
from trt_pose_td.cli.serve import resolve
from trt_pose_td.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CPU_CONFIG = REPO / "docker" / "config.cpu.toml"


def cli(*args: str, env: dict = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trt_pose_td", *args], capture_output=True,
                          text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=str(REPO), **(env or {})))


def serve_config(*args: str):
    parsed: argparse.Namespace = build_parser().parse_args(["serve", *args])
    return resolve(parsed)


@pytest.mark.parametrize("argv, expected", [
    (["/opt/venv/bin/python3", "/opt/venv/bin/trt-pose-td", "serve", "--config", "c.toml",
      "clip.mp4"], ["--config", "c.toml", "clip.mp4"]),
    (["python3", "-m", "trt_pose_td", "-v", "serve", "--http", "9000"], ["--http", "9000"]),
    (["/usr/local/bin/trt-pose-td", "serve"], []),
    (["/usr/local/bin/trt-pose-td", "run", "serve"], None),  # `run` on a file named serve
    (["/bin/bash", "/usr/local/bin/trt-pose-td-entrypoint", "serve"], None),
    (["python3", "trt_pose_td", "serve"], None),  # not `-m trt_pose_td`
])
def test_serve_args_are_read_from_a_command_line(argv, expected):
    assert serve_args_of(argv) == expected


def test_find_service_reads_proc_and_takes_the_lowest_pid(tmp_path):
    """A /proc-shaped folder of real files: unreadable and foreign processes are passed over."""
    cmdlines = {
        "1": ["/sbin/tini", "--", "/usr/local/bin/trt-pose-td-entrypoint"],
        "7": ["/opt/venv/bin/python3", "/opt/venv/bin/trt-pose-td", "serve", "--http",
              "127.0.0.1:9001"],
        "9": ["/opt/venv/bin/python3", "/opt/venv/bin/trt-pose-td", "serve", "--no-http"],
        "12": None,  # a process that exited between listing and reading
    }
    for pid, argv in cmdlines.items():
        (tmp_path / pid).mkdir()
        if argv is not None:
            (tmp_path / pid / "cmdline").write_bytes(b"".join(a.encode() + b"\x00" for a in argv))
    (tmp_path / "self").mkdir()
    assert find_service(tmp_path) == (7, ["--http", "127.0.0.1:9001"])
    assert find_service(tmp_path / "1") is None


@pytest.mark.parametrize("args, url", [
    (["clip.mp4"], "http://127.0.0.1:8080/healthz"),
    (["clip.mp4", "--http", "9123"], "http://127.0.0.1:9123/healthz"),
    (["clip.mp4", "--http", "10.1.2.3:9123"], "http://10.1.2.3:9123/healthz"),
    (["clip.mp4", "--set", "http.host='::'", "--set", "http.port=81"], "http://[::1]:81/healthz"),
    (["clip.mp4", "--no-http"], None),
])
def test_the_address_is_the_services_resolved_one(args, url):
    assert healthz_url(args) == url


def test_the_address_comes_from_the_config_file(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[source]\nuri = "clip.mp4"\n[http]\nhost = "127.0.0.5"\nport = 8181\n')
    assert healthz_url(["--config", str(config)]) == "http://127.0.0.5:8181/healthz"
    config.write_text('[source]\nuri = "clip.mp4"\n[http]\nport = 0\n')
    with pytest.raises(ConfigError, match="port 0"):
        healthz_url(["--config", str(config)])


@pytest.mark.slow
def test_healthcheck_passes_on_a_non_default_port_and_fails_elsewhere(service_clip, tmp_path):
    """A real service on a free (non-8080) port: the check resolves the same arguments and gets
    200; the same arguments with another port, nobody listening, are unhealthy (exit 1)."""
    from tests.service.helpers import Serve, free_port, wait_for

    serve = Serve(tmp_path, str(service_clip), "--loop")
    try:
        wait_for(serve.serving, 60, "the service's /healthz")
        wait_for(lambda: cli("healthcheck", "--", str(service_clip), "--http",
                             f"127.0.0.1:{serve.http_port}").returncode == 0, 30, "healthy")
        ok = cli("healthcheck", "--", "--config", os.devnull, str(service_clip), "--http",
                 f"127.0.0.1:{serve.http_port}")
        assert ok.returncode == 0 and ok.stdout.startswith("healthy: http://127.0.0.1:"), ok
        other = free_port()
        bad = cli("healthcheck", "--timeout", "2", "--", str(service_clip), "--http",
                  f"127.0.0.1:{other}")
        assert bad.returncode == 1
        assert bad.stderr.startswith(f"unhealthy: http://127.0.0.1:{other}/healthz: "), bad
        assert len(bad.stderr.strip().splitlines()) == 1
    finally:
        assert serve.terminate() == 0


def test_healthcheck_without_http_or_with_unparsable_arguments():
    off = cli("healthcheck", "--", "clip.mp4", "--no-http")
    assert off.returncode == 0 and "HTTP is disabled" in off.stdout
    bad = cli("healthcheck", "--", "--http", "notaport")
    assert bad.returncode == 1 and bad.stderr.startswith("unhealthy: cannot parse"), bad


def test_cpu_image_config_reads_the_usb_camera_and_no_broker():
    cfg = serve_config("--config", str(CPU_CONFIG))
    assert cfg.source.uri == "/dev/video0"
    assert cfg.mqtt.host == ""  # no MQTT unless configured
    assert cfg.pipeline.backend == "onnxruntime"
    # the service's own default is 127.0.0.1; the image's entrypoint sets 0.0.0.0
    # (TRT_POSE_TD_HTTP_HOST in the Dockerfiles) so -p 8080:8080 reaches it
    assert (cfg.http.enabled, cfg.http.host, cfg.http.port) == (True, "127.0.0.1", 8080)
    entry = (CPU_CONFIG.parent / "entrypoint.sh").read_text()
    assert '--set "http.host=' in entry and "TRT_POSE_TD_HTTP_HOST" in entry
    for image in ("cpu", "jetson", "x86"):
        assert "TRT_POSE_TD_HTTP_HOST=0.0.0.0" in \
            (CPU_CONFIG.parent / f"Dockerfile.{image}").read_text()
    moved = serve_config("--config", str(CPU_CONFIG), "rtsp://cam/s", "--mqtt", "broker:1884")
    assert (moved.source.uri, moved.mqtt.host, moved.mqtt.port) == ("rtsp://cam/s", "broker", 1884)


def test_a_missing_camera_in_a_container_is_one_line_naming_the_fix(tmp_path):
    device = "/dev/video0"
    if os.path.exists(device):
        pytest.skip(f"{device} exists on this machine")
    proc = cli("serve", "--config", str(CPU_CONFIG), "--no-http",
               env={"TRT_POSE_TD_CONTAINER": "1"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "trt-pose-td serve: error: no camera at /dev/video0 in this container: pass it "
        "(docker run --device /dev/video0) or give another source"), proc.stderr
