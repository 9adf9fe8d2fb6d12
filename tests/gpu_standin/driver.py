"""Stand-in for :mod:`trt_pose_td.cuda.driver` on host memory: a TEST DOUBLE, not a GPU.

Memory: every allocation is its own numpy byte array at a fake integer address; device memory and
page-locked host memory live in two separate address ranges (mapped memory has an address in
both), with a 64 KiB unmapped gap after every allocation and addresses never reused. Kernels and
engines reach memory only through :meth:`Machine.view` on device addresses, so pointer arithmetic
such as ``crops.ptr + index * stride`` runs for real: a wrong offset inside a buffer reads the
wrong bytes, and a range that leaves its allocation, a freed buffer or a host-only pointer raises
:class:`~trt_pose_td.cuda.driver.CudaError` ("illegal address"). New memory is poisoned (0xFF:
NaN as float32, white as uint8), so reading memory nothing wrote is visible in the results.

Streams: work is queued per stream and runs lazily, in stream order, only when the host must see
it: ``Stream.synchronize``, ``Event.synchronize``, ``Device.synchronize`` or stream close. A
``Stream.wait(event)`` is the only cross-stream edge: when the waiting stream reaches it, the
recording stream runs up to that record. Of the schedules CUDA allows, this one is chosen to
expose ordering bugs: a missing ``wait`` lets the consumer run before the producer (it reads
poison or the previous frame), a missing ``synchronize`` leaves a download unwritten (and reading
its event's time raises ``CUDA_ERROR_NOT_READY``), and host writes into a staging buffer before
its copy has run change what the copy uploads. Running all work at enqueue would hide all three.
The opposite hazard, a stream overwriting what another stream's queued work has yet to read
(write-after-read, the two-slot overlap's risk), needs that producer to run early: set
``stream.eager = True`` and its work runs at enqueue while the others stay lazy. Event times
are host clock times at execution (ordering, not GPU speed).

Trace: :attr:`Machine.trace` lists, in host order, every enqueue (``("enqueue", stream handle,
what)``; copies say their size) and every host wait (``("sync", stream handle, what)`` from
``Stream.synchronize``, ``("sync", event handle, "event")`` from ``Event.synchronize``), so a test
can show what the host had queued before it waited for what.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections import deque
from typing import Any, Callable, ClassVar, Deque, Dict, List, Optional, Tuple

import numpy as np

from trt_pose_td.cuda.driver import CudaError, DeviceInfo

DEVICE, HOST = "device", "host"
_BASES = {DEVICE: 0x7F00_0000_0000, HOST: 0x5F00_0000_0000}
_GUARD = 1 << 16
_ALIGN = 256
POISON = 0xFF


class _Allocation:
    def __init__(self, base: int, data: np.ndarray, label: str) -> None:
        self.base, self.data, self.label, self.live = base, data, label, True

    @property
    def end(self) -> int:
        return self.base + len(self.data)


class Machine:
    """The stand-in's whole state: address spaces, live streams and events (one per test run).

    ``Machine.current`` is the machine the stand-in classes below allocate on (set by
    :func:`tests.gpu_standin.install`).
    """

    current: ClassVar[Optional[Machine]] = None

    def __init__(self) -> None:
        self._next = dict(_BASES)
        self._spaces: Dict[str, List[_Allocation]] = {DEVICE: [], HOST: []}
        self.streams: List[Stream] = []
        self.events: List[Event] = []
        self._handles = itertools.count(1)
        self.trace: List[Tuple[str, int, str]] = []

    # -- memory ---------------------------------------------------------------------------------
    def alloc(self, nbytes: int, space: str, label: str, data: Optional[np.ndarray] = None
              ) -> int:
        """Address of ``nbytes`` (poisoned) in ``space``; ``data`` maps existing storage."""
        if data is None:
            data = np.full(int(nbytes), POISON, np.uint8)
        base = -(-self._next[space] // _ALIGN) * _ALIGN
        self._next[space] = base + len(data) + _GUARD
        self._spaces[space].append(_Allocation(base, data, label))  # bases only grow: sorted
        return base

    def free(self, base: int, space: str) -> None:
        """Free the allocation at ``base``; like cuMemFree / cuMemFreeHost, queued work that
        may use it completes first."""
        self.synchronize()
        alloc = self._find(base, 1, space)
        if alloc.base != base:
            raise CudaError(f"CUDA_ERROR_INVALID_VALUE: free of {base:#x}, inside {alloc.label}")
        alloc.live = False

    def _find(self, ptr: int, nbytes: int, space: str) -> _Allocation:
        allocs = self._spaces[space]
        i = bisect.bisect_right([a.base for a in allocs], int(ptr)) - 1
        alloc = allocs[i] if i >= 0 else None
        if alloc is None or not alloc.live or int(ptr) + int(nbytes) > alloc.end:
            where = "no allocation" if alloc is None or ptr >= alloc.end else (
                f"{alloc.label} (freed)" if not alloc.live else
                f"{alloc.label}, {alloc.end - ptr} bytes left")
            raise CudaError(f"CUDA_ERROR_ILLEGAL_ADDRESS: {nbytes} bytes at {space} address "
                            f"{int(ptr):#x} ({where})")
        return alloc

    def view(self, ptr: int, nbytes: int, space: str = DEVICE) -> np.ndarray:
        """(nbytes,) uint8 view of live memory at ``ptr``; raises for any byte outside one
        live allocation of ``space``."""
        alloc = self._find(ptr, nbytes, space)
        start = int(ptr) - alloc.base
        return alloc.data[start:start + int(nbytes)]

    def live(self) -> List[str]:
        """Labels of allocations not freed, streams and events not closed (leak check)."""
        out = [a.label for space in self._spaces.values() for a in space if a.live]
        out += [f"stream {s.handle}" for s in self.streams if not s.closed]
        return out + [f"event {e.handle}" for e in self.events if not e.closed]

    def handle(self) -> int:
        return next(self._handles)

    def synchronize(self) -> None:
        for stream in self.streams:
            if not stream.closed:
                stream.synchronize()


def machine() -> Machine:
    if Machine.current is None:
        raise CudaError("no stand-in machine installed (tests.gpu_standin.install)")
    return Machine.current


class Device:
    """Stand-in :class:`trt_pose_td.cuda.driver.Device`: ``integrated`` decides the default
    zero-copy choice of the GPU pipeline."""

    def __init__(self, ordinal: int = 0, integrated: bool = False,
                 can_map_host_memory: bool = True) -> None:
        self._machine = machine()
        self._open = True
        self.info = DeviceInfo(ordinal, "host-memory stand-in (no GPU)", 8, 7, integrated,
                               can_map_host_memory, 1 << 34, 1, 12040)

    def make_current(self) -> None:
        if not self._open:
            raise CudaError("device is closed")

    def synchronize(self) -> None:
        self.make_current()
        self._machine.synchronize()

    def close(self) -> None:
        self._open = False


class Stream:
    """Stand-in stream: a queue of host callables run in order, lazily (module docstring)."""

    def __init__(self) -> None:
        m = machine()
        self._machine = m
        self.handle = m.handle()
        self.closed = False
        self._ops: Deque[Tuple[Callable[[], None], str]] = deque()
        self.enqueued = 0   # ops ever enqueued
        self.done = 0       # ops completed
        self._running = False
        self.eager = False  # run work at enqueue instead of when waited for
        m.streams.append(self)

    def enqueue(self, op: Callable[[], None], what: str) -> int:
        """Queue ``op``; returns its position + 1 (the stream has passed it when done >= that)."""
        if self.closed:
            raise CudaError(f"CUDA_ERROR_INVALID_HANDLE: {what} on a closed stream")
        self._ops.append((op, what))
        self.enqueued += 1
        self._machine.trace.append(("enqueue", self.handle, what))
        if self.eager and not self._running:
            self.run_until(self.enqueued)
        return self.enqueued

    def run_until(self, position: int) -> None:
        if self.done >= position:
            return
        if self._running:
            raise CudaError(f"stand-in deadlock: stream {self.handle} waits on its own later work")
        self._running = True
        try:
            while self.done < position:
                op, _ = self._ops.popleft()
                self.done += 1   # a failing op is consumed, like a faulted launch
                op()
        finally:
            self._running = False

    def synchronize(self) -> None:
        self._machine.trace.append(("sync", self.handle, "stream"))
        self.run_until(self.enqueued)

    def wait(self, event: Event) -> None:
        """Later work on this stream runs after the event's latest record (none: no wait)."""
        record = event.last_record
        if record is not None:
            stream, position = record
            self.enqueue(lambda: stream.run_until(position), f"wait on event {event.handle}")
        elif self.closed:
            raise CudaError("CUDA_ERROR_INVALID_HANDLE: stream is closed")

    def close(self) -> None:
        if not self.closed:
            self.synchronize()   # cuStreamDestroy lets queued work finish
            self.closed = True


class Event:
    """Stand-in event: ``record`` queues a time stamp on the stream."""

    def __init__(self, timing: bool = True) -> None:
        m = machine()
        self._machine = m
        self.handle = m.handle()
        self.closed = False
        self.last_record: Optional[Tuple[Stream, int]] = None
        self._time: Optional[float] = None
        self._generation = object()
        m.events.append(self)

    def record(self, stream: Stream) -> Event:
        if self.closed:
            raise CudaError("event is closed")
        self._time = None
        generation = object()
        self._generation = generation

        def stamp() -> None:
            if self._generation is generation:   # a later record supersedes this one
                self._time = time.perf_counter()

        self.last_record = (stream, stream.enqueue(stamp, f"record event {self.handle}"))
        return self

    def synchronize(self) -> None:
        self._machine.trace.append(("sync", self.handle, "event"))
        if self.last_record is not None:
            stream, position = self.last_record
            stream.run_until(position)

    def elapsed_ms(self, start: Event) -> float:
        for e in (start, self):
            if e.last_record is None:
                raise CudaError(f"CUDA_ERROR_INVALID_HANDLE: event {e.handle} never recorded")
            if e._time is None:
                raise CudaError(f"CUDA_ERROR_NOT_READY: event {e.handle} has not completed")
        return (float(self._time) - float(start._time)) * 1e3  # type: ignore[arg-type]

    def close(self) -> None:
        self.closed = True


def _host_bytes(host: np.ndarray, capacity: int, what: str) -> np.ndarray:
    if not host.flags.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous")
    if host.nbytes > capacity:
        raise ValueError(f"{what} has {host.nbytes} bytes, the buffer only {capacity}")
    return host.reshape(-1).view(np.uint8)


class DeviceBuffer:
    """Stand-in device memory: ``ptr`` in the device address range; copies queue on a stream."""

    def __init__(self, nbytes: int) -> None:
        if nbytes < 1:
            raise ValueError(f"buffer size must be >= 1 byte, not {nbytes}")
        self._machine = machine()
        self.nbytes = int(nbytes)
        self._ptr: Optional[int] = self._machine.alloc(self.nbytes, DEVICE,
                                                       f"device buffer of {nbytes} bytes")

    @property
    def ptr(self) -> int:
        if self._ptr is None:
            raise CudaError("device buffer is closed")
        return self._ptr

    def upload(self, host: np.ndarray, stream: Stream, offset: int = 0) -> None:
        src = _host_bytes(host, self.nbytes - offset, "host array")
        dst, m = self.ptr + offset, self._machine

        def copy() -> None:
            m.view(dst, src.nbytes)[...] = src   # reads ``host`` when the copy runs

        stream.enqueue(copy, f"HtoD copy of {src.nbytes} bytes")

    def download(self, host: np.ndarray, stream: Stream, offset: int = 0) -> None:
        dst = _host_bytes(host, self.nbytes - offset, "host array")
        src, m = self.ptr + offset, self._machine

        def copy() -> None:
            dst[...] = m.view(src, dst.nbytes)

        stream.enqueue(copy, f"DtoH copy of {dst.nbytes} bytes")

    def fill_u32(self, value: int, stream: Stream, count: Optional[int] = None) -> None:
        n = self.nbytes // 4 if count is None else int(count)
        ptr, m = self.ptr, self._machine

        def fill() -> None:
            m.view(ptr, 4 * n).view(np.uint32)[...] = np.uint32(int(value) & 0xFFFFFFFF)

        stream.enqueue(fill, "memset")

    def close(self) -> None:
        if self._ptr is not None:
            ptr, self._ptr = self._ptr, None
            self._machine.free(ptr, DEVICE)


class PinnedBuffer:
    """Stand-in page-locked host memory: host address range only (kernels cannot read it)."""

    def __init__(self, nbytes: int) -> None:
        if nbytes < 1:
            raise ValueError(f"buffer size must be >= 1 byte, not {nbytes}")
        self._machine = machine()
        self.nbytes = int(nbytes)
        self._host: Optional[int] = self._machine.alloc(self.nbytes, HOST, self._label())

    def _label(self) -> str:
        return f"pinned buffer of {self.nbytes} bytes"

    @property
    def host_ptr(self) -> int:
        if self._host is None:
            raise CudaError("host buffer is closed")
        return self._host

    def array(self, dtype: Any, shape: Tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * np.dtype(dtype).itemsize
        if nbytes > self.nbytes:
            raise ValueError(f"{shape} {np.dtype(dtype)} needs {nbytes} bytes, buffer has "
                             f"{self.nbytes}")
        raw = self._machine.view(self.host_ptr, max(nbytes, 1), HOST)
        return raw[:nbytes].view(dtype).reshape(shape)

    def close(self) -> None:
        if self._host is not None:
            host, self._host = self._host, None
            self._machine.free(host, HOST)


class MappedBuffer(PinnedBuffer):
    """Stand-in mapped (zero-copy) host memory: the same bytes at a host and a device address."""

    def __init__(self, nbytes: int) -> None:
        super().__init__(nbytes)
        data = self._machine.view(self.host_ptr, self.nbytes, HOST)
        self.device_ptr = self._machine.alloc(self.nbytes, DEVICE, self._label(), data)

    def _label(self) -> str:
        return f"mapped buffer of {self.nbytes} bytes"

    def close(self) -> None:
        if self._host is not None:
            self._machine.free(self.device_ptr, DEVICE)
        super().close()
