"""The MQTT store-and-forward spool: messages waiting for the broker, on disk, in order.

One SQLite database per camera (the standard library's ``sqlite3``; WAL journal): a row per
message (``id`` ascending = the order written, enqueue time, topic, zlib-compressed payload).
Every :meth:`Spool.put` is its own transaction, so a process killed with SIGKILL loses at most the
message it was writing, and SQLite's journal keeps the file consistent (the next open rolls the
WAL forward). ``sync``: ``"normal"`` (``synchronous=NORMAL``: a commit reaches the OS, the WAL is
fsynced when :meth:`checkpoint` runs — the forwarder calls it every few seconds — so a power cut
can lose the last seconds of spooled messages, never the file); ``"full"``: every commit is
fsynced (a power cut loses nothing committed; costs an fsync per message, measured in
``docs/service.md``).

Bounded: ``max_mb`` of compressed payload (the oldest messages are dropped to make room, and
counted), ``max_age_s`` (older messages are dropped, counted) and a :class:`.diskspace.
FreeSpaceFloor` (below it a new message is not written, counted). Freed pages go back to the
file system once the spool is empty (``VACUUM`` of an empty database). A second process opening the
same spool is refused (an advisory lock); a file that is not a database is moved aside and a new
one started (logged).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, List, Optional, Sequence, Tuple

from ..errors import ConfigError
from .diskspace import MB, FreeSpaceFloor
from .paths import os_reason

log = logging.getLogger(__name__)

SCHEMA = ("CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, "
          "t REAL NOT NULL, topic TEXT NOT NULL, size INTEGER NOT NULL, payload BLOB NOT NULL)")
SYNC_MODES = ("normal", "full")


@dataclass(frozen=True)
class Spooled:
    """One message read back: ``id`` (its place in the order), ``t`` (enqueue time, s since the
    epoch), ``topic``, ``payload`` (the bytes given to :meth:`Spool.put`)."""

    id: int
    t: float
    topic: str
    payload: bytes


@dataclass(frozen=True)
class SpoolStats:
    """messages / bytes: waiting now (bytes: compressed payloads); disk_bytes: the database,
    WAL and shared-memory files; spooled: messages written since the start; sent: removed after
    the broker acknowledged them; dropped_cap / dropped_age / dropped_floor: lost to
    ``max_mb``, ``max_age_s`` and the free-space floor; paused: below the floor now."""

    path: str
    messages: int
    bytes: int
    disk_bytes: int
    spooled: int
    sent: int
    dropped_cap: int
    dropped_age: int
    dropped_floor: int
    paused: bool

    @property
    def dropped(self) -> int:
        return self.dropped_cap + self.dropped_age + self.dropped_floor


class Spool:
    """An ordered on-disk queue of MQTT messages at ``path`` (created with its folder).

    Thread-safe (one connection behind a lock). :class:`ConfigError` when the folder cannot be
    written or another process holds the spool.
    """

    def __init__(self, path: Path, max_mb: float = 512.0, max_age_s: float = 86400.0,
                 sync: str = "normal", min_free_mb: float = 0.0,
                 probe: Optional[Callable[[Path], int]] = None) -> None:
        if sync not in SYNC_MODES:
            raise ConfigError(f"spool sync must be one of {', '.join(SYNC_MODES)}, not {sync!r}")
        self.path = Path(path)
        self.max_bytes, self.max_age_s = int(max_mb * MB), max_age_s
        self._lock = threading.Lock()
        self._lockfile = self._take_lock()
        self.floor = FreeSpaceFloor(self.path.parent, min_free_mb, "mqtt spool", probe)
        self._db = self._open(sync)
        self._closed = False
        self._spooled = self._sent = self._cap = self._age = self._floor_drops = 0
        self._dirty = False
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM spool").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])
        if self._count:
            log.info("mqtt spool: %d message(s) (%.1f MB) from earlier runs in %s: they are "
                     "sent once the broker is reachable", self._count, self._bytes / MB, self.path)
        self.expire()

    # -- opening ----------------------------------------------------------------------------------
    def _take_lock(self) -> IO[bytes]:
        where = f"mqtt spool {self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = open(f"{self.path}.lock", "a+b")
        except OSError as exc:
            raise ConfigError(f"{where}: cannot write there: {os_reason(exc)} (set [mqtt] "
                              "spool_dir to a writable folder, or \"\" for no spool)") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise ConfigError(f"{where} is in use by another process (two services with the "
                              "same camera name and spool_dir?): give each its own "
                              "[mqtt] spool_dir") from None
        return f

    def _open(self, sync: str) -> sqlite3.Connection:
        try:
            return self._connect(sync)
        except sqlite3.DatabaseError as exc:  # not a database / malformed: keep it, start anew
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    src.rename(f"{aside}{suffix}")
            log.warning("mqtt spool %s is unreadable (%s): moved aside to %s, starting an "
                        "empty spool", self.path, exc, aside)
            return self._connect(sync)
        except sqlite3.Error as exc:
            raise ConfigError(f"mqtt spool {self.path}: cannot open: {exc}") from None

    def _connect(self, sync: str) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None,
                             check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {sync.upper()}")
            db.execute("PRAGMA secure_delete = FAST")  # Debian builds zero every freed page
            db.execute("PRAGMA wal_autocheckpoint = 256")  # ~1 MB of WAL, then into the file
            db.execute("PRAGMA journal_size_limit = 4194304")  # and the WAL shrinks to 4 MB
            db.execute(SCHEMA)
            db.execute("SELECT COUNT(*) FROM spool").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    # -- writing ----------------------------------------------------------------------------------
    def put(self, topic: str, payload: bytes, t: Optional[float] = None) -> bool:
        """Append one message (committed before returning). False when it was not written: below
        the free-space floor, or larger than the whole cap (both counted)."""
        blob = zlib.compress(payload, 1)
        size = len(blob) + len(topic)
        # a message is on disk twice until the WAL is checkpointed into the database
        if size > self.max_bytes or not self.floor.allow(2 * size + 512):
            with self._lock:
                if size > self.max_bytes:
                    self._cap += 1
                else:
                    self._floor_drops += 1
            return False
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if self._bytes + size > self.max_bytes:
                    self._evict_locked(self._bytes + size - self.max_bytes)
                db.execute("INSERT INTO spool (t, topic, size, payload) VALUES (?, ?, ?, ?)",
                           (time.time() if t is None else t, topic, size, blob))
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
            self._count, self._bytes = self._count + 1, self._bytes + size
            self._spooled += 1
            self._dirty = True
        return True

    def _evict_locked(self, need: int) -> None:
        """Delete the oldest rows freeing at least ``need`` bytes (inside a transaction)."""
        freed = n = last = 0
        while freed < need:
            rows = self._db.execute("SELECT id, size FROM spool WHERE id > ? ORDER BY id "
                                    "LIMIT 256", (last,)).fetchall()
            if not rows:
                break
            for rid, size in rows:
                freed, n, last = freed + size, n + 1, rid
                if freed >= need:
                    break
        self._db.execute("DELETE FROM spool WHERE id <= ?", (last,))
        self._count, self._bytes = self._count - n, self._bytes - freed
        self._cap += n

    # -- reading and removing ---------------------------------------------------------------------
    def peek(self, after_id: int = 0, limit: int = 64) -> List[Spooled]:
        """Up to ``limit`` messages after ``after_id``, oldest first (they stay until removed)."""
        with self._lock:
            rows = self._db.execute("SELECT id, t, topic, payload FROM spool WHERE id > ? "
                                    "ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
        return [Spooled(int(i), float(t), str(topic), zlib.decompress(blob))
                for i, t, topic, blob in rows]

    def remove(self, ids: Sequence[int]) -> None:
        """Remove sent messages (ids already gone, e.g. dropped by the cap, are ignored)."""
        if not ids:
            return
        with self._lock:
            self._delete_locked(list(ids), sent=True)

    def _delete_locked(self, ids: List[int], sent: bool) -> Tuple[int, int]:
        db, marks = self._db, ",".join("?" * len(ids))
        db.execute("BEGIN IMMEDIATE")
        try:
            n, size = db.execute(f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM spool "
                                 f"WHERE id IN ({marks})", ids).fetchone()
            db.execute(f"DELETE FROM spool WHERE id IN ({marks})", ids)
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        self._count, self._bytes = self._count - n, self._bytes - size
        if sent:
            self._sent += n
        self._dirty = True
        return int(n), int(size)

    def expire(self, now: Optional[float] = None) -> int:
        """Drop the messages older than ``max_age_s`` (counted); returns how many."""
        cutoff = (time.time() if now is None else now) - self.max_age_s
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT id FROM spool WHERE t < ? "
                                                  "ORDER BY id LIMIT 10000", (cutoff,))]
            if not ids:
                return 0
            n, _ = self._delete_locked(ids, sent=False)
            self._age += n
        log.warning("mqtt spool: dropped %d message(s) older than %.0f s (max_age_s)", n,
                    self.max_age_s)
        return n

    def checkpoint(self) -> None:
        """Flush the WAL into the database (fsynced: bounds what a power cut can lose); when the
        spool is empty, give its free pages back to the file system."""
        with self._lock:
            if not self._dirty:
                return
            self._dirty = False
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            if self._count == 0:
                self._db.execute("VACUUM")  # nothing to copy: cheap
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- state ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            return self._count

    def disk_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.stat(f"{self.path}{suffix}").st_size
            except OSError:
                pass
        return total

    def stats(self) -> SpoolStats:
        disk = self.disk_bytes()
        with self._lock:
            return SpoolStats(str(self.path), self._count, self._bytes, disk, self._spooled,
                              self._sent, self._cap, self._age, self._floor_drops,
                              self.floor.paused)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()
        self._lockfile.close()


def _rollback(db: sqlite3.Connection) -> None:
    """Undo the open transaction, if any (a failed COMMIT, e.g. disk full, already did)."""
    if db.in_transaction:
        db.execute("ROLLBACK")
