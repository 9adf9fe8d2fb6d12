"""Store-and-forward for the MQTT sink: what its publisher thread does with every message.

Live first: a new message waits in memory (``inbox``) and is published as soon as the broker is
connected; while the broker is away, and whenever more than ``queue_size`` messages wait, they
go to the on-disk :class:`~.spool.Spool` instead. Whenever no live message waits, the spool is
replayed oldest first (QoS >= 1, never retained) and each spooled message is removed only once
the broker acknowledged it. So after an outage the newest poses flow at once and the backlog
fills in behind them; every message carries its camera's ``seq``, so a consumer reorders or
counts gaps. At most ``window`` messages are unacknowledged at a time.

A message in flight when the connection drops (handed to the client, no PUBACK yet) is sent
again: a live one is put back at the head of the memory queue (and spooled if the broker stays
away), a spooled one is read again from the spool. QoS 1 is at-least-once: a consumer may see a
message twice when an acknowledgement was lost, never zero times while it is within the spool's
bounds. Without a spool the memory queue drops its oldest message when full (counted), as the
sink always did.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from .spool import Spool

log = logging.getLogger(__name__)

#: (paho client, connection number) while connected, else None.
Link = Optional[Tuple[Any, int]]
#: Memory queue bound with a spool, in multiples of ``queue_size``, should the publisher
#: thread ever fall behind spilling to disk (oldest dropped, counted).
HARD_LIMIT = 20
HOUSEKEEPING_S = 5.0


@dataclass
class _Message:
    """row: the spool id (0: a live message, only in memory); t: when it was written."""

    row: int
    t: float
    payload: bytes


class Forwarder:
    """Owns the memory queue, the in-flight window and the spool cursor of one MQTT sink.

    ``put`` (inference thread) and ``acked`` (the client's network thread) only append; every
    decision is made in :meth:`run` (the publisher thread). ``properties(age_s)``: the MQTT 5
    PUBLISH properties of a message written ``age_s`` ago (None: none), or ``False``: it
    expired (not sent, counted).
    """

    def __init__(self, topic: str, qos: int, retain: bool, queue_size: int,
                 spool: Optional[Spool], ok_rc: int, no_conn_rc: int, window: int = 32,
                 properties: Callable[[float], Any] = lambda age: None) -> None:
        self.topic, self.qos, self.retain = topic, qos, retain
        self.queue_size, self.spool, self.window = queue_size, spool, window
        self._ok, self._no_conn, self._properties = ok_rc, no_conn_rc, properties
        self._inbox: Deque[_Message] = deque()
        self._acks: Deque[Tuple[int, int, bool]] = deque()
        self._wake = threading.Event()
        self._outstanding: Dict[int, _Message] = {}
        self._batch: List[_Message] = []  # spooled messages read ahead, not yet sent
        self._cursor = 0  # the last spool id handed to the client on this connection
        self._gen: Optional[int] = None
        self._lock = threading.Lock()
        self.published = self.replayed = self.dropped = self.expired = self.errors = 0
        self.resent = 0
        self._stopping = False
        self._deadline = float("inf")
        self._housekeeping_at = 0.0

    # -- other threads ----------------------------------------------------------------------------
    def put(self, payload: bytes) -> None:
        """O(1), never blocks: the inference thread's half."""
        inbox = self._inbox
        inbox.append(_Message(0, time.time(), payload))
        limit = self.queue_size if self.spool is None else self.queue_size * HARD_LIMIT
        while len(inbox) > limit:
            try:
                inbox.popleft()
            except IndexError:  # the publisher took it meanwhile
                break
            with self._lock:
                self.dropped += 1
        self._wake.set()

    def acked(self, gen: int, mid: int, ok: bool = True) -> None:
        """A PUBACK (or a QoS 0 send) on connection ``gen``: the network thread's half (it holds
        the client's locks here, so this only appends)."""
        self._acks.append((gen, mid, ok))
        self._wake.set()

    def wake(self) -> None:
        """Something changed (a connection came up): look again now."""
        self._wake.set()

    def stop(self, timeout: float) -> None:
        """Ask :meth:`run` to end: connected, it sends what waits in memory and waits for the
        acknowledgements (up to ``timeout`` s); the spool's backlog stays for the next start.
        Not connected: with a spool it ends at once (:meth:`settle` spools the rest); without
        one, messages in memory wait for a connection up to ``timeout`` s."""
        self._deadline = time.monotonic() + timeout
        self._stopping = True
        self._wake.set()

    def counters(self) -> Dict[str, int]:
        """published, replayed, resent, dropped, expired, errors (a consistent copy)."""
        with self._lock:
            return {"published": self.published, "replayed": self.replayed,
                    "resent": self.resent, "dropped": self.dropped, "expired": self.expired,
                    "errors": self.errors}

    @property
    def queued(self) -> int:
        return len(self._inbox)

    @property
    def in_flight(self) -> int:
        return len(self._outstanding)

    # -- the publisher thread ---------------------------------------------------------------------
    def run(self, link: Callable[[], Link]) -> None:
        """Until :meth:`stop`: publish, spill, replay (see the module docstring). A failure
        (the spool's disk, a client bug) is logged and the loop goes on a second later."""
        while True:
            try:
                if not self._step(link()):
                    return
            except Exception as exc:  # this thread must outlive any one message
                with self._lock:
                    self.errors += 1
                log.warning("mqtt: forwarding failed (%s: %s); retrying in 1 s",
                            type(exc).__name__, exc)
                if self._stopping:
                    return
                self._wake.wait(1.0)

    def _step(self, current: Link) -> bool:
        self._take_acks()
        gen = None if current is None else current[1]
        if gen != self._gen:
            self._connection_changed()
            self._gen = gen
        if current is None:
            self._spill(0)
            if self._stopping and (self.spool is not None or not self._inbox
                                   or time.monotonic() > self._deadline):
                return False  # no spool: messages in memory wait for a connection until then
            self._idle()
            return True
        self._spill(self.queue_size)
        if self._stopping and (time.monotonic() > self._deadline or (
                not self._inbox and not any(m.row == 0 for m in self._outstanding.values()))):
            return False
        if len(self._outstanding) >= self.window:
            self._wait(0.2)
            return True
        message = self._next()
        if message is None:
            self._idle()
        else:
            self._send(current[0], message)
        return True

    def _next(self) -> Optional[_Message]:
        """The next message to send: live ones first, then the spool's oldest."""
        if self._inbox:
            return self._inbox.popleft()
        if self.spool is None or self._stopping:
            return None
        if not self._batch:
            self._batch = [_Message(m.id, m.t, m.payload)
                           for m in self.spool.peek(self._cursor, 64)]
            if not self._batch:
                return None
        message = self._batch.pop(0)
        self._cursor = message.row
        return message

    def _send(self, client: Any, message: _Message) -> None:
        props = self._properties(time.time() - message.t)
        if props is False:  # its MQTT 5 message expiry has passed
            with self._lock:
                self.expired += 1
            if message.row:
                self.spool.remove([message.row])  # type: ignore[union-attr]
            return
        live = message.row == 0
        qos = self.qos if live else max(1, self.qos)
        info = client.publish(self.topic, message.payload, qos=qos,
                              retain=self.retain and live, properties=props)
        if qos > 0 and info.rc in (self._ok, self._no_conn):
            self._outstanding[info.mid] = message  # acked() or a new connection settles it
        elif info.rc == self._ok:
            with self._lock:
                self.published += 1
        elif info.rc == self._no_conn:  # QoS 0 on a connection that just went: again later
            self._requeue([message])
        else:
            with self._lock:
                self.errors += 1
            log.warning("mqtt: the client refused a message (rc %s): dropped", info.rc)

    def _take_acks(self) -> None:
        done: List[int] = []
        while self._acks:
            gen, mid, ok = self._acks.popleft()
            message = self._outstanding.pop(mid, None) if gen == self._gen else None
            if message is None:
                continue
            with self._lock:
                if ok:
                    self.published += 1
                    self.replayed += message.row > 0
                else:
                    self.errors += 1
            if message.row:
                done.append(message.row)
        if done and self.spool is not None:
            self.spool.remove(done)

    def _connection_changed(self) -> None:
        """The connection the in-flight messages went out on is gone: send them again."""
        lost = list(self._outstanding.values())
        self._outstanding.clear()
        self._batch, self._cursor = [], 0  # re-read the spool from its oldest message
        live = [m for m in lost if m.row == 0]
        if lost:
            with self._lock:
                self.resent += len(lost)
        self._requeue(live)

    def _requeue(self, messages: List[_Message]) -> None:
        for message in reversed(messages):
            self._inbox.appendleft(message)

    def _spill(self, keep: int) -> None:
        """Move all but the newest ``keep`` memory messages to the spool (oldest first)."""
        if self.spool is None:
            return
        while len(self._inbox) > keep:
            try:
                message = self._inbox.popleft()
            except IndexError:
                return
            self.spool.put(self.topic, message.payload, message.t)  # False: it counted why

    def _idle(self) -> None:
        if self.spool is not None and time.monotonic() >= self._housekeeping_at:
            self._housekeeping_at = time.monotonic() + HOUSEKEEPING_S
            self.spool.expire()
            self.spool.checkpoint()
        self._wait(0.2)

    def _wait(self, timeout: float) -> None:
        self._wake.wait(timeout)
        self._wake.clear()

    def settle(self) -> int:
        """After :meth:`run` ended: what is still only in memory (queued, or in flight without
        an acknowledgement) goes to the spool. Returns the messages lost (no spool)."""
        self._take_acks()
        pending = [m for m in self._outstanding.values() if m.row == 0] + list(self._inbox)
        self._outstanding.clear()
        self._inbox.clear()
        if self.spool is None:
            with self._lock:
                self.dropped += len(pending)
            return len(pending)
        for message in pending:
            self._inbox.append(message)
        self._spill(0)
        self.spool.checkpoint()
        return 0
