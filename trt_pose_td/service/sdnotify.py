"""systemd's ``sd_notify`` protocol over a plain AF_UNIX datagram socket (no libsystemd).

``$NOTIFY_SOCKET`` is a filesystem path or, starting with ``@``, a name in the abstract namespace.
Outside systemd (variable unset) every call is a no-op returning False; a send error is logged once
and never raised, so notification can never take the service down.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Optional

log = logging.getLogger(__name__)


def socket_address(path: str) -> Optional[str]:
    """The ``connect`` address for a ``$NOTIFY_SOCKET`` value, or None when unsupported."""
    if path.startswith("@"):
        return "\0" + path[1:]
    if path.startswith("/"):
        return path
    return None  # e.g. vsock: addresses (VMs) are not used on our targets


def notify(state: str, socket_path: Optional[str] = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1\\nSTATUS=running"``) once; True when it was sent."""
    path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")
    address = socket_address(path) if path else None
    if address is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode("utf-8"))
    return True


def stdout_is_journal(environ: Optional[dict] = None) -> bool:
    """True when fd 1 is the journal stream systemd connected (``JOURNAL_STREAM=dev:inode``), or
    when ``TRT_POSE_TD_JOURNAL=1`` says so (a container whose output the Docker unit sends to
    the journal: docker/systemd/trt-pose-td-docker.service sets it)."""
    env = os.environ if environ is None else environ
    if env.get("TRT_POSE_TD_JOURNAL") == "1":
        return True
    dev, _, ino = env.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(1)
        return (int(dev), int(ino)) == (st.st_dev, st.st_ino)
    except (ValueError, OSError):
        return False


def watchdog_interval(environ: Optional[dict] = None) -> Optional[float]:
    """Seconds between watchdog pings (half of ``$WATCHDOG_USEC``), or None when not asked for.

    ``$WATCHDOG_PID``, when set, must name this process (systemd's own check).
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2e6


class Notifier:
    """The service's link to systemd: READY, STATUS, WATCHDOG (rate-limited), STOPPING."""

    def __init__(self, socket_path: Optional[str] = None,
                 watchdog_s: Optional[float] = None) -> None:
        self.socket_path = (socket_path if socket_path is not None
                            else os.environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_s = watchdog_s if watchdog_s is not None else watchdog_interval()
        self.ready_sent = False
        self._last_ping = 0.0
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.socket_path)

    def send(self, state: str) -> bool:
        if not self.enabled:
            return False
        try:
            return notify(state, self.socket_path)
        except OSError as exc:
            if not self._warned:
                log.warning("sd_notify to %s failed: %s", self.socket_path, exc)
                self._warned = True
            return False

    def ready(self, status: str = "") -> None:
        """Declare start-up complete (once; ``ready_sent`` is set even outside systemd)."""
        if not self.ready_sent:
            self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))
            self.ready_sent = True
            self._last_ping = time.monotonic()

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        """Ping when half the watchdog period has passed since the last ping."""
        if self.watchdog_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_s:
            self.send("WATCHDOG=1")
            self._last_ping = now

    def stopping(self, status: str = "stopping") -> None:
        self.send(f"STOPPING=1\nSTATUS={status}")
