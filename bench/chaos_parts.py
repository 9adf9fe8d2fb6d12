"""The real components ``bench/chaos.py`` drives: a mosquitto broker that keeps sessions over a
graceful restart, an MQTT 5 consumer with a persistent session recording every message, a
``trt-pose-td serve`` process, a sampler of its memory / spool / counters, a small file system
(a loop-mounted ext4 image, else a tmpfs)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from multicam_serve import memory_kib

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """mosquitto with ``persistence true`` (sessions and their queued messages survive a
    graceful stop) and no limit on what it queues for an absent persistent client."""

    def __init__(self, folder: Path) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise SystemExit("mosquitto is not installed (apt-get install -y mosquitto)")
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             f"persistence true\npersistence_location {folder}/\n"
                             "max_queued_messages 0\nuser root\n")
        self.log = open(folder / "mosquitto.log", "a")
        self.exe = exe
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("mosquitto did not start")

    def stop(self) -> None:
        """Graceful (SIGTERM): it saves its sessions, as a broker restart does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None


class Consumer:
    """An MQTT 5 client with a persistent session (clean_start false, session expiry 1 h):
    the broker queues its QoS 1 messages while it is away. ``records``: (arrival time,
    run_id, camera, seq, payload bytes) of every message, duplicates included."""

    def __init__(self, port: int, topic: str = "trt-pose-td/+/poses") -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.records: List[Tuple[float, str, str, int, int]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="chaos-consumer",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        doc = json.loads(msg.payload)
        self.records.append((time.time(), doc["run_id"], doc["camera"], doc["seq"],
                             len(msg.payload)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Service:
    """One ``trt-pose-td serve`` process (its log in ``folder``); ``health()`` is /healthz."""

    def __init__(self, args: List[str], folder: Path, name: str) -> None:
        self.http = free_port()
        self.log_path = folder / f"{name}.log"
        cmd = [sys.executable, "-m", "trt_pose_td", "serve", *args,
               "--http", f"127.0.0.1:{self.http}", "--set", "service.status_interval_s=5"]
        env = dict(os.environ, PYTHONPATH=str(REPO), XDG_STATE_HOME=str(folder / "state"))
        env.pop("STATE_DIRECTORY", None)
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log_path, "w"))

    def health(self) -> Dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=5) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as exc:  # 503 has the same body
            return dict(json.loads(exc.read()))

    def frames(self) -> Dict[str, int]:
        """Frames processed per camera = the next seq of each."""
        return {c: v["frames"] for c, v in self.health()["cameras"].items()}

    def wait_frames(self, n: int, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve exited with {self.proc.returncode}: {self.log_path}")
            try:
                if min(self.frames().values()) >= n:
                    return
            except (OSError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        raise SystemExit(f"serve processed no {n} frames in {timeout} s: {self.log_path}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def terminate(self) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=60)


class Sampler(threading.Thread):
    """Every ``interval`` s: the service's RSS, per camera frames / spooled messages / spool
    disk bytes / MQTT state from /healthz, the spool folder's size on disk, and ``probe``'s
    free space (MB) of a folder when given."""

    def __init__(self, t0: float, spool_dir: Path, interval: float = 2.0,
                 free_of: Optional[Path] = None) -> None:
        super().__init__(daemon=True)
        self.t0, self.spool_dir, self.interval, self.free_of = t0, spool_dir, interval, free_of
        self.service: Optional[Service] = None
        self.samples: List[Dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.samples.append(self.sample())

    def sample(self) -> Dict[str, Any]:
        s: Dict[str, Any] = {"t": round(time.time() - self.t0, 2), "spool_dir_bytes": sum(
            f.stat().st_size for f in self.spool_dir.glob("*") if f.is_file())
            if self.spool_dir.is_dir() else 0}
        if self.free_of is not None:
            st = os.statvfs(self.free_of)
            s["free_mb"] = round(st.f_bavail * st.f_frsize / 2 ** 20, 2)
        svc = self.service
        if svc is not None and svc.proc.poll() is None:
            s["rss_mib"] = round(memory_kib(svc.proc.pid)["rss"] / 1024, 1)
            try:
                h = svc.health()
                s["cameras"] = {c: {"frames": v["frames"], "mqtt": v["sinks"]["mqtt"]["state"],
                                    "spooled": v["sinks"]["mqtt"]["spooled"],
                                    "spool_bytes": v["sinks"]["mqtt"]["spool_bytes"],
                                    "spool_disk_bytes": v["sinks"]["mqtt"]["spool_disk_bytes"]}
                                for c, v in h["cameras"].items()}
                s["jsonl"] = h["sinks"].get("jsonl")
            except (OSError, KeyError, ValueError):
                pass
        return s


class SmallFs:
    """A size-limited file system at ``folder``: a loop-mounted ext4 image (what an eMMC
    partition is), else a tmpfs; ``kind`` says which. Needs root."""

    def __init__(self, folder: Path, size_mb: int) -> None:
        self.folder, self.kind = folder, ""
        folder.mkdir(parents=True, exist_ok=True)
        image = folder.parent / f"{folder.name}.img"
        steps = [["truncate", "-s", f"{size_mb}M", str(image)],
                 ["mkfs.ext4", "-q", "-F", "-m", "0", str(image)],
                 ["mount", "-o", "loop", str(image), str(folder)]]
        if all(subprocess.run(s, capture_output=True).returncode == 0 for s in steps):
            self.kind = f"ext4 image of {size_mb} MB, loop-mounted"
        elif subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                             str(folder)], capture_output=True).returncode == 0:
            self.kind = f"tmpfs of {size_mb} MB"
        else:
            raise SystemExit("cannot mount a small file system (needs root): run without "
                             "--floor, or as root")

    def free_mb(self) -> float:
        st = os.statvfs(self.folder)
        return st.f_bavail * st.f_frsize / 2 ** 20

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.folder)], capture_output=True)
