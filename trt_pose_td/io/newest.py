"""The newest-frame hand-off between a reader thread and its consumer (one type for every live
feed: :class:`~.capture.CaptureSource`'s capture thread and the service's file prefetch).

The reader :meth:`NewestFrame.put` s frames; an unread frame is replaced by the newer one and
counted in :attr:`NewestFrame.drops` (when inference is slower than the camera, the oldest work
is what is skipped). The consumer :meth:`NewestFrame.take` s the newest unread frame, or None
on a timeout; :attr:`NewestFrame.ended` tells end-of-stream apart from a timeout once the reader
called :meth:`NewestFrame.finish`. A reader that must not run ahead (a file decoded one frame
ahead, never skipped through) waits with :meth:`NewestFrame.wait_taken`.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

from ..types import Frame


class NewestFrame:
    """At most one unread frame, guarded by one condition; safe between two threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Optional[Frame] = None
        self._done = False
        #: Frames replaced before anyone took them.
        self.drops = 0

    def put(self, frame: Frame) -> None:
        """Offer ``frame`` (reader side), replacing an unread one (counted in :attr:`drops`)."""
        with self._cond:
            if self._frame is not None:
                self.drops += 1
            self._frame = frame
            self._cond.notify_all()

    def take(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The newest frame not taken yet (consumer side); None when none arrives within
        ``timeout`` seconds (None: wait) or the reader finished (see :attr:`ended`)."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None or self._done, timeout)
            frame, self._frame = self._frame, None
            self._cond.notify_all()  # a reader in wait_taken may go on
            return frame

    def wait_taken(self, stop: Callable[[], bool]) -> None:
        """Block the reader until its frame was taken or ``stop()`` is true (re-checked on
        :meth:`wake`)."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is None or stop())

    def wake(self) -> None:
        """Make every waiter re-check its condition (after its ``stop`` became true)."""
        with self._cond:
            self._cond.notify_all()

    def finish(self) -> None:
        """End of stream (reader side): :meth:`take` no longer waits once the last frame is
        taken."""
        with self._cond:
            self._done = True
            self._cond.notify_all()

    @property
    def ended(self) -> bool:
        """True once the reader finished and every frame was taken."""
        with self._cond:
            return self._done and self._frame is None
