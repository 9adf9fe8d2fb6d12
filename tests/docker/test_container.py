"""The CPU image (docker/Dockerfile.cpu) built with podman and run for real.

The image is built by scripts/container/build-cpu.sh (layers cached in podman's storage), on
the registry-less base of scripts/container/make-base.sh. Checks: user, state folder and
HEALTHCHECK of the image; a missing camera is one line; `trt-pose-td run` with no network and
no mirror finds the people; `serve` on a looping file publishes to a real mosquitto on the host,
answers /healthz on a non-default port, passes the image's own HEALTHCHECK and exits 0 on
SIGTERM with its JSONL complete; all as an arbitrary uid with a read-only root filesystem.
Skipped where podman is missing or cannot be set up (not root).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest

from tests.service.helpers import Broker, Subscriber, free_port, http_get, wait_for

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("TRT_POSE_TD_IMAGE", "trt-pose-td:ci")
ARBITRARY_UID = "12345"
SAMPLE = REPO / "trt_pose_td" / "data" / "samples" / "000000001000.jpg"
#: People of the packaged sample photo with a box score >= 0.5 (9 with the default models).
SAMPLE_MIN_PERSONS = 8


def _why_not() -> Optional[str]:
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/test.sh apt-installs it)"
    if os.geteuid() != 0:
        return "needs root to set podman up (sudo scripts/container/make-base.sh)"
    return None


pytestmark = [pytest.mark.container, pytest.mark.slow,
              pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))]


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"podman {' '.join(args[:3])} ... exited {proc.returncode}:\n"
                    f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def stderr_lines(proc: subprocess.CompletedProcess) -> List[str]:
    """stderr without podman's own complaints (no systemd to time healthchecks here)."""
    return [line for line in proc.stderr.splitlines()
            if line.strip() and "level=" not in line]


@pytest.fixture(scope="module")
def image() -> str:
    proc = subprocess.run([str(REPO / "scripts" / "container" / "build-cpu.sh")],
                          env=dict(os.environ, IMAGE=IMAGE), capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"build-cpu.sh exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return IMAGE


def writable_dir(path: Path) -> Path:
    """A host folder any container uid may write (bind-mounted as an output)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def test_image_user_state_folder_and_healthcheck(image):
    meta = json.loads(podman("image", "inspect", image).stdout)[0]
    assert meta["Config"]["User"] == "10001"
    assert meta["Healthcheck"]["Test"] == ["CMD", "trt-pose-td", "healthcheck"]  # docker format
    proc = podman("run", "--rm", "--network=none", image, "sh", "-c",
                  "id -u; id -g; stat -c '%u:%g %A' /var/lib/trt-pose-td "
                  "/var/lib/trt-pose-td/cache; command -v gcc cc || echo no-compiler")
    uid, gid, state, cache, compiler = proc.stdout.split("\n")[:5]
    assert (uid, gid) == ("10001", "10001")
    assert state == cache == "10001:0 drwxrwxr-x"  # group 0 has the owner's rights
    assert compiler == "no-compiler"


def test_arbitrary_uid_writes_the_state_folder_on_a_read_only_root(image):
    proc = podman("run", "--rm", "--network=none", "--read-only", "--user", ARBITRARY_UID, image,
                  "sh", "-c", 'id -u; mkdir -p "$TRT_POSE_TD_CACHE/kernels" '
                              '&& touch "$TRT_POSE_TD_CACHE/kernels/probe" && echo written; '
                              'touch /opt/probe 2>/dev/null || echo root-read-only')
    assert proc.stdout.split() == [ARBITRARY_UID, "written", "root-read-only"]


def test_a_missing_camera_is_one_line_naming_the_fix(image):
    proc = podman("run", "--rm", "--network=none", image, check=False)
    assert proc.returncode == 2
    lines = stderr_lines(proc)
    assert lines[-1].startswith("trt-pose-td serve: error: no camera at /dev/video0 in this "
                                "container: pass it (docker run --device /dev/video0)"), lines
    assert not any("Traceback" in line for line in lines)


def confident_persons(jsonl: Path) -> List[dict]:
    frames = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(frames) == 1
    return [p for p in frames[0]["persons"] if p["score"] >= 0.5]


def test_run_offline_finds_the_people_of_the_packaged_sample(image, tmp_path):
    """No network, no mirror, an arbitrary uid, a read-only root: the same people as the
    `trt-pose-td run` of this checkout outside the container."""
    out = writable_dir(tmp_path / "out")
    podman("run", "--rm", "--network=none", "--read-only", "--user", ARBITRARY_UID,
           "-v", f"{out}:/out", image, "trt-pose-td", "run", "-o", "/out", timeout=300)
    subprocess.run([sys.executable, "-m", "trt_pose_td", "run", "--no-draw", "-o",
                    str(tmp_path / "native")], check=True, capture_output=True, timeout=300,
                   env=dict(os.environ, PYTHONPATH=str(REPO)))
    inside = confident_persons(out / "poses.jsonl")
    native = confident_persons(tmp_path / "native" / "poses.jsonl")
    assert len(inside) == len(native) >= SAMPLE_MIN_PERSONS
    boxes = np.array([p["box"] for p in inside]), np.array([p["box"] for p in native])
    assert np.abs(boxes[0] - boxes[1]).max() < 2.0  # pixels
    assert all(len(p["keypoints"]) == 17 for p in inside)
    assert (out / "poses.jsonl").stat().st_uid == int(ARBITRARY_UID)
    assert (out / "000000001000.jpg").is_file()  # the annotated photo


def looping_clip(path: Path, frames: int = 12) -> Path:
    """An MP4 of the packaged sample photo, panned a little frame to frame."""
    cv2 = pytest.importorskip("cv2")
    photo = cv2.imread(str(SAMPLE))
    h, w = photo.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w - 32, h))
    for i in range(frames):
        writer.write(photo[:, 2 * i:2 * i + w - 32])
    writer.release()
    return path


def camera_args(cameras: Dict[str, str]) -> List[str]:
    """`serve` arguments for the cameras (name -> path in the container): NAME=URI each."""
    return [f"{name}={uri}" for name, uri in cameras.items()] + ["--loop"]


def test_serve_publishes_answers_health_and_stops_cleanly(image, tmp_path):
    media = writable_dir(tmp_path / "media")
    out = writable_dir(tmp_path / "out")
    looping_clip(media / "cam0.mp4")
    cameras = {"cam0": "/media/cam0.mp4", "cam1": "/media/cam0.mp4"}  # two cameras, one batch
    broker = Broker().start()
    sub = Subscriber(broker.port, "trt-pose-td/#")
    http_port = free_port()  # not 8080: the HEALTHCHECK must follow the config
    name = f"trt-pose-td-ci-{os.getpid()}"
    podman("run", "-d", "--name", name, "--network=host", "--read-only",
           "--user", ARBITRARY_UID, "-v", f"{media}:/media:ro", "-v", f"{out}:/out", image,
           *camera_args(cameras), "--mqtt", f"127.0.0.1:{broker.port}",
           "--http", f"127.0.0.1:{http_port}", "--jsonl", "/out/poses.jsonl", "--threads", "1",
           "--track")  # track IDs: the image carries the tracker (lap)
    try:
        url = f"http://127.0.0.1:{http_port}/healthz"

        def healthy() -> bool:
            state = podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            if state != "true":
                pytest.fail(f"container stopped:\n{podman('logs', name).stderr[-3000:]}")
            try:
                return http_get(url, timeout=2)[0] == 200
            except OSError:
                return False

        wait_for(healthy, 120, "/healthz 200 from the container", interval=1.0)
        for camera in cameras:
            _, payload, _ = sub.get(topic=f"trt-pose-td/{camera}/poses", timeout=60)
            persons = json.loads(payload)["persons"]
            assert len(persons) >= SAMPLE_MIN_PERSONS and all("track_id" in p for p in persons)
        check = podman("healthcheck", "run", name, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        elsewhere = podman("exec", name, "trt-pose-td", "healthcheck", "--timeout", "2", "--",
                           "/media/cam0.mp4", "--http", f"127.0.0.1:{free_port()}", check=False)
        assert elsewhere.returncode == 1, elsewhere.stdout  # the probe does not pass blindly
        started = time.monotonic()
        podman("stop", "--time", "30", name)
        stop_s = time.monotonic() - started
        exit_code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        logs = podman("logs", name).stderr
    finally:
        podman("rm", "--force", name, check=False)
        sub.close()
        broker.stop()
    assert exit_code == "0", logs[-3000:]
    assert stop_s < 15 and "received SIGTERM: stopping" in logs and "Traceback" not in logs
    text = (out / "poses.jsonl").read_text()
    assert text.endswith("\n")
    frames = [json.loads(line) for line in text.splitlines()]  # every line whole
    assert len(frames) >= 2 and all(f["persons"] for f in frames)
    assert {f["camera"] for f in frames} == set(cameras)  # both cameras, one process
