"""cuda-python driver API: checked calls, device + primary context, streams, events, buffers.

Everything here uses the device's *primary* context, the one TensorRT (CUDA runtime) uses, so
pointers from :class:`DeviceBuffer` can be given to TensorRT directly. Every resource has one owner
and a ``close()`` (idempotent, also via ``with``); every copy, fill and launch names a stream.

cuda-python is imported inside the functions; with no NVIDIA driver, :func:`driver_api` callers
get :class:`CudaUnavailableError` (one line) instead of a loader traceback.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from ..errors import DependencyError, EngineError, require

log = logging.getLogger(__name__)

_ARCH_HINT = ("the tensorrt backend needs an NVIDIA GPU and driver; use --backend onnxruntime "
              "on this machine")


class CudaError(EngineError):
    """A CUDA driver, runtime or NVRTC call failed (out of memory, bad launch, ...)."""


class CudaUnavailableError(DependencyError):
    """No usable CUDA driver or device on this machine."""


def cuda_module(name: str, legacy: str) -> Any:
    """``cuda.bindings.<name>`` (cuda-python >= 12.6), else the older ``cuda.<legacy>``;
    :class:`DependencyError` naming the ``trt`` extra when cuda-python is missing."""
    import importlib

    try:
        return importlib.import_module(f"cuda.bindings.{name}")
    except ImportError:
        try:
            return importlib.import_module(f"cuda.{legacy}")
        except ImportError:
            return require(f"cuda.bindings.{name}", "trt", "cuda-python")


def bindings() -> Any:
    """The cuda-python driver API module."""
    return cuda_module("driver", "cuda")


def _error_name(err: Any) -> str:
    name = getattr(err, "name", None) or str(err)
    try:
        if type(err).__name__ == "CUresult":
            res, text = bindings().cuGetErrorString(err)
            if int(res) == 0 and text:
                return f"{name}: {text.decode() if isinstance(text, bytes) else text}"
    except Exception:
        pass
    return name


def check(err: Any, *values: Any) -> Any:
    """Raise :class:`CudaError` unless ``err`` (a CUresult / cudaError_t / nvrtcResult) is success.

    Use as ``check(*driver.cuMemAlloc(n))``: returns None, the single value, or the tuple.
    """
    if int(err) != 0:
        raise CudaError(f"CUDA call failed: {_error_name(err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


_initialised = False


def driver_api() -> Any:
    """The driver module after ``cuInit`` succeeded; :class:`CudaUnavailableError` otherwise."""
    global _initialised
    drv = bindings()
    if _initialised:
        return drv
    try:
        (err,) = drv.cuInit(0)
    except (RuntimeError, OSError) as exc:  # cuda.pathfinder DynamicLibNotFoundError, dlopen
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CudaUnavailableError(f"no NVIDIA driver ({first}); {_ARCH_HINT}") from None
    if int(err) != 0:
        raise CudaUnavailableError(f"CUDA initialisation failed ({_error_name(err)}); "
                                   f"{_ARCH_HINT}")
    _initialised = True
    return drv


def gpu_available() -> bool:
    """True when a CUDA driver and at least one device can be used (never raises)."""
    try:
        drv = driver_api()
        return int(check(*drv.cuDeviceGetCount())) > 0
    except (DependencyError, CudaError):
        return False


@dataclass(frozen=True)
class DeviceInfo:
    """What a device is: name, compute capability ``"8.7"``, integrated (Jetson) or discrete."""

    ordinal: int
    name: str
    major: int
    minor: int
    integrated: bool
    can_map_host_memory: bool
    total_memory: int
    multiprocessors: int
    driver_version: int  # e.g. 12040 for CUDA 12.4

    @property
    def compute_capability(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def arch(self) -> str:
        """NVRTC target of this device's own SASS, e.g. ``sm_87``."""
        return f"sm_{self.major}{self.minor}"


class Device:
    """One GPU with its primary context retained (released by :meth:`close`)."""

    def __init__(self, ordinal: int = 0) -> None:
        drv = driver_api()
        count = int(check(*drv.cuDeviceGetCount()))
        if not 0 <= ordinal < count:
            raise CudaUnavailableError(f"no CUDA device {ordinal} (this machine has {count})")
        self._drv = drv
        self._dev = check(*drv.cuDeviceGet(ordinal))
        self._ctx: Any = check(*drv.cuDevicePrimaryCtxRetain(self._dev))
        self.make_current()
        self.info = self._query(ordinal)
        log.info("CUDA device %d: %s (compute %s, %s)", ordinal, self.info.name,
                 self.info.compute_capability, "integrated" if self.info.integrated else "discrete")

    def _attr(self, name: str) -> int:
        attr = getattr(self._drv.CUdevice_attribute, name)
        return int(check(*self._drv.cuDeviceGetAttribute(attr, self._dev)))

    def _query(self, ordinal: int) -> DeviceInfo:
        raw = check(*self._drv.cuDeviceGetName(256, self._dev))
        name = raw.split(b"\0", 1)[0].decode(errors="replace") if isinstance(raw, bytes) \
            else str(raw)
        return DeviceInfo(
            ordinal=ordinal, name=name,
            major=self._attr("CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR"),
            minor=self._attr("CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR"),
            integrated=bool(self._attr("CU_DEVICE_ATTRIBUTE_INTEGRATED")),
            can_map_host_memory=bool(self._attr("CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY")),
            total_memory=int(check(*self._drv.cuDeviceTotalMem(self._dev))),
            multiprocessors=self._attr("CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT"),
            driver_version=int(check(*self._drv.cuDriverGetVersion())))

    def make_current(self) -> None:
        """Bind the primary context to the calling thread (cheap; call per thread / frame)."""
        if self._ctx is None:
            raise CudaError("device is closed")
        check(*self._drv.cuCtxSetCurrent(self._ctx))

    def synchronize(self) -> None:
        self.make_current()
        check(*self._drv.cuCtxSynchronize())

    def memory_info(self) -> Tuple[int, int]:
        """(free, total) bytes of device memory now (``cuMemGetInfo``: free "according to the
        OS", a snapshot other processes can change). On an integrated GPU (Jetson) this is the
        DRAM the CPU shares, without swap, and page cache the kernel could reclaim does not count
        as free: a cautious figure there."""
        self.make_current()
        free, total = check(*self._drv.cuMemGetInfo())
        return int(free), int(total)

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx = None
            check(*self._drv.cuDevicePrimaryCtxRelease(self._dev))

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Stream:
    """A non-blocking CUDA stream; ``handle`` is what TensorRT's ``execute_async_v3`` takes."""

    def __init__(self) -> None:
        self._drv = driver_api()
        self._stream: Any = check(*self._drv.cuStreamCreate(
            int(self._drv.CUstream_flags.CU_STREAM_NON_BLOCKING)))

    @property
    def handle(self) -> int:
        if self._stream is None:
            raise CudaError("stream is closed")
        return int(self._stream)

    def synchronize(self) -> None:
        check(*self._drv.cuStreamSynchronize(self.handle))

    def wait(self, event: Event) -> None:
        """Work enqueued after this waits until ``event`` has completed (on any stream)."""
        check(*self._drv.cuStreamWaitEvent(self.handle, event.handle, 0))

    def close(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            check(*self._drv.cuStreamDestroy(stream))

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Event:
    """A CUDA event; with ``timing`` the milliseconds between two recorded events are readable."""

    def __init__(self, timing: bool = True) -> None:
        self._drv = driver_api()
        flags = 0 if timing else int(self._drv.CUevent_flags.CU_EVENT_DISABLE_TIMING)
        self._event: Any = check(*self._drv.cuEventCreate(flags))

    @property
    def handle(self) -> int:
        if self._event is None:
            raise CudaError("event is closed")
        return int(self._event)

    def record(self, stream: Stream) -> Event:
        check(*self._drv.cuEventRecord(self.handle, stream.handle))
        return self

    def synchronize(self) -> None:
        check(*self._drv.cuEventSynchronize(self.handle))

    def elapsed_ms(self, start: Event) -> float:
        """Milliseconds from ``start`` to this event (both recorded and completed)."""
        return float(check(*self._drv.cuEventElapsedTime(start.handle, self.handle)))

    def close(self) -> None:
        if self._event is not None:
            event, self._event = self._event, None
            check(*self._drv.cuEventDestroy(event))


def _host_view(ptr: int, nbytes: int) -> np.ndarray:
    """(nbytes,) uint8 numpy view of host memory at ``ptr`` (owned elsewhere)."""
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))


def _array_ptr(arr: np.ndarray, nbytes: int, what: str) -> int:
    if not arr.flags.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous")
    if arr.nbytes > nbytes:
        raise ValueError(f"{what} has {arr.nbytes} bytes, the buffer only {nbytes}")
    return int(arr.ctypes.data)


class DeviceBuffer:
    """``nbytes`` of device memory (``ptr``), freed by :meth:`close`."""

    def __init__(self, nbytes: int) -> None:
        if nbytes < 1:
            raise ValueError(f"buffer size must be >= 1 byte, not {nbytes}")
        self._drv = driver_api()
        self.nbytes = int(nbytes)
        self._ptr: Optional[int] = int(check(*self._drv.cuMemAlloc(self.nbytes)))

    @property
    def ptr(self) -> int:
        if self._ptr is None:
            raise CudaError("device buffer is closed")
        return self._ptr

    def upload(self, host: np.ndarray, stream: Stream, offset: int = 0) -> None:
        """Enqueue host -> device of ``host`` (contiguous; pinned for a truly async copy)."""
        src = _array_ptr(host, self.nbytes - offset, "host array")
        check(*self._drv.cuMemcpyHtoDAsync(self.ptr + offset, src, host.nbytes, stream.handle))

    def download(self, host: np.ndarray, stream: Stream, offset: int = 0) -> None:
        """Enqueue device -> host into ``host`` (read it after the stream synchronizes)."""
        dst = _array_ptr(host, self.nbytes - offset, "host array")
        check(*self._drv.cuMemcpyDtoHAsync(dst, self.ptr + offset, host.nbytes, stream.handle))

    def fill_u32(self, value: int, stream: Stream, count: Optional[int] = None) -> None:
        """Write the 32-bit pattern ``value`` ``count`` times (default: the whole buffer)."""
        n = self.nbytes // 4 if count is None else int(count)
        check(*self._drv.cuMemsetD32Async(self.ptr, int(value) & 0xFFFFFFFF, n, stream.handle))

    def close(self) -> None:
        if self._ptr is not None:
            ptr, self._ptr = self._ptr, None
            check(*self._drv.cuMemFree(ptr))

    def __enter__(self) -> DeviceBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PinnedBuffer:
    """``nbytes`` of page-locked host memory: fast, truly asynchronous copies; :meth:`array` views.
    """

    _flags_name: Tuple[str, ...] = ()

    def __init__(self, nbytes: int) -> None:
        if nbytes < 1:
            raise ValueError(f"buffer size must be >= 1 byte, not {nbytes}")
        self._drv = driver_api()
        flags = 0
        for name in self._flags_name:
            flags |= int(getattr(self._drv, name))
        self.nbytes = int(nbytes)
        self._host: Optional[int] = int(check(*self._drv.cuMemHostAlloc(self.nbytes, flags)))

    @property
    def host_ptr(self) -> int:
        if self._host is None:
            raise CudaError("host buffer is closed")
        return self._host

    def array(self, dtype: Any, shape: Tuple[int, ...]) -> np.ndarray:
        """A numpy view (``dtype``, ``shape``) of the start of the buffer."""
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * np.dtype(dtype).itemsize
        if nbytes > self.nbytes:
            raise ValueError(f"{shape} {np.dtype(dtype)} needs {nbytes} bytes, buffer has "
                             f"{self.nbytes}")
        return _host_view(self.host_ptr, max(nbytes, 1))[:nbytes].view(dtype).reshape(shape)

    def close(self) -> None:
        if self._host is not None:
            host, self._host = self._host, None
            check(*self._drv.cuMemFreeHost(host))


class MappedBuffer(PinnedBuffer):
    """Pinned host memory mapped into the device address space (zero-copy).

    On integrated GPUs (Jetson) host and device share DRAM: kernels read ``device_ptr`` directly
    and no copy is needed. Check :attr:`DeviceInfo.can_map_host_memory` first.
    """

    _flags_name = ("CU_MEMHOSTALLOC_DEVICEMAP", "CU_MEMHOSTALLOC_PORTABLE")

    def __init__(self, nbytes: int) -> None:
        super().__init__(nbytes)
        self.device_ptr = int(check(*self._drv.cuMemHostGetDevicePointer(self.host_ptr, 0)))
