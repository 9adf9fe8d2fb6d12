"""The ``[jsonl]`` and ``[mqtt]`` tables: where the poses go, and what bounds the disk they use.

Defaults fit a Jetson with 16-64 GB of eMMC (see ``docs/service.md`` for the arithmetic): the
JSONL file rotates at 64 MB and keeps 16 gzipped files; the MQTT spool holds up to 512 MB (a
week at most) in the service's state folder; both stop writing with less than 256 MB free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..errors import ConfigError

SPOOL_SYNC = ("normal", "full")
MQTT_PROTOCOLS = ("3.1.1", "5")


@dataclass(frozen=True)
class JsonlSection:
    """path: "-" for stdout, a file (appended to), "" for none, or "auto": stdout unless stdout
    is the systemd journal (~11 KB a frame there would drown the log), then none.

    A file rotates (renamed to ``path.000001``, ``path.000002``, ...) once it would pass
    rotate_mb MB or is rotate_s seconds old (0: not by that measure); keep: closed files kept
    (the oldest removed; 0: all); gzip: compress closed files; min_free_mb: below this free
    space on its file system no line is written (counted; it resumes by itself)."""

    path: str = "auto"
    rotate_mb: float = 64.0
    rotate_s: float = 0.0
    keep: int = 16
    gzip: bool = True
    min_free_mb: float = 256.0

    #: the values that name no file
    NOT_FILES = ("", "-", "auto")

    def file(self) -> Optional[Path]:
        """The file the poses are appended to, or None (stdout, none, or "auto")."""
        return None if self.path in self.NOT_FILES else Path(self.path)


@dataclass(frozen=True)
class MqttSection:
    """host "" disables MQTT. topic / status_topic may use {camera}; client_id {host} and
    {camera} (default: unique per host and camera). queue_size: messages kept in memory for
    the broker. tls: ca_file (else the system CAs), cert_file / key_file for client-certificate
    auth. password_file keeps the secret out of the config.

    Store-and-forward: spool_dir holds one SQLite spool per camera for what the broker cannot
    take now (away, or the memory queue full), replayed oldest first (QoS >= 1) once it is back
    ("auto": the service's state folder, ``$STATE_DIRECTORY/spool`` under systemd, else
    ``$XDG_STATE_HOME`` or ``~/.local/state`` + ``/trt-pose-td/spool``; "": no spool, the
    memory queue drops its oldest). spool_max_mb / spool_max_age_s: the oldest dropped beyond
    these (counted), the size split evenly between cameras; spool_min_free_mb: the free-space
    floor; spool_sync: "normal" (a kill -9 loses nothing committed, a power cut the last few
    seconds) or "full" (fsync per message). protocol: "3.1.1" or "5"; message_expiry_s: MQTT 5
    expiry of each pose message at the broker (0: none)."""

    host: str = ""
    port: int = 1883
    topic: str = "trt-pose-td/{camera}/poses"
    status_topic: str = "trt-pose-td/{camera}/status"
    qos: int = 1  # at-least-once: a message on the wire at a drop is sent again
    retain: bool = False
    client_id: str = "trt-pose-td-{host}-{camera}"
    username: str = ""
    password: str = ""
    password_file: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    keepalive: int = 30
    queue_size: int = 100
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    spool_dir: str = "auto"
    spool_max_mb: float = 512.0
    spool_max_age_s: float = 604800.0
    spool_min_free_mb: float = 256.0
    spool_sync: str = "normal"
    protocol: str = "3.1.1"
    message_expiry_s: int = 0

    def spool_folder(self) -> Optional[Path]:
        """The folder of the cameras' spools, or None (no spool)."""
        if not self.spool_dir:
            return None
        if self.spool_dir != "auto":
            return Path(self.spool_dir)
        state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]  # systemd StateDirectory=
        if state:
            return Path(state) / "spool"
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                ".local", "state")
        return Path(base) / "trt-pose-td" / "spool"


def validate_jsonl(j: JsonlSection, check: Callable[[bool, str], None], where: str) -> None:
    check(min(j.rotate_mb, j.rotate_s, j.min_free_mb) >= 0 and j.keep >= 0,
          f"{where} [jsonl] rotate_mb, rotate_s, keep and min_free_mb must be >= 0 (0: off)")


def validate_mqtt(m: MqttSection, check: Callable[[bool, str], None], where: str) -> None:
    check(m.qos in (0, 1, 2), f"{where} [mqtt] qos must be 0, 1 or 2, not {m.qos}")
    check(1 <= m.port <= 65535, f"{where} [mqtt] port must be 1..65535, not {m.port}")
    check(m.queue_size >= 1 and m.keepalive >= 5,
          f"{where} [mqtt] needs queue_size >= 1 and keepalive >= 5")
    check(0 < m.reconnect_min_s <= m.reconnect_max_s,
          f"{where} [mqtt] needs 0 < reconnect_min_s <= reconnect_max_s")
    check(not (m.password and m.password_file),
          f"{where} [mqtt] give password or password_file, not both")
    check(not m.key_file or bool(m.cert_file), f"{where} [mqtt] key_file needs cert_file")
    try:
        m.client_id.format(host="h", camera="c")
    except (KeyError, IndexError, ValueError):
        raise ConfigError(f"{where} [mqtt] client_id may use {{host}} and {{camera}} only, not "
                          f"{m.client_id!r}") from None
    for topic in (m.topic, m.status_topic):
        check(topic != "" and "#" not in topic and "+" not in topic,
              f"{where} [mqtt] topics must be non-empty without wildcards, not {topic!r}")
    check(m.spool_max_mb > 0 and m.spool_max_age_s > 0 and m.spool_min_free_mb >= 0,
          f"{where} [mqtt] needs spool_max_mb > 0, spool_max_age_s > 0, spool_min_free_mb >= 0 "
          "(spool_dir = \"\" turns the spool off)")
    check(m.spool_sync in SPOOL_SYNC,
          f"{where} [mqtt] spool_sync must be \"normal\" or \"full\", not {m.spool_sync!r}")
    check(m.protocol in MQTT_PROTOCOLS,
          f"{where} [mqtt] protocol must be \"3.1.1\" or \"5\", not {m.protocol!r}")
    check(m.message_expiry_s >= 0, f"{where} [mqtt] message_expiry_s must be >= 0")
    check(not m.message_expiry_s or m.protocol == "5",
          f"{where} [mqtt] message_expiry_s needs protocol = \"5\" (an MQTT 5 property)")
