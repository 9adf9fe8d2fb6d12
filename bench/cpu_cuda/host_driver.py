"""The package's real CUDA host code on a CPU: a host-memory stand-in for ``cuda.bindings.driver``.

:func:`host_kernels` patches this driver into :mod:`trt_pose_td.cuda.driver` and
:mod:`trt_pose_td.cuda.launchers` (and g++ in for NVRTC), then builds the real
:class:`~trt_pose_td.cuda.launchers.Kernels`: its ``__init__`` loads one "module" per kernel source
and looks up each function, and its ``warp`` / ``decode_*`` methods check arguments, pack the
parameters and call ``cuLaunchKernel`` exactly as on a GPU. Here ``cuLaunchKernel`` hands the
void* parameter array to the shim library of that source (``cuda_shim.h``), which reads every
parameter the way the driver does (by the kernel's signature) and runs the grid on CPU threads.

Memory: "device" allocations are numpy byte arrays; their host addresses are the device pointers,
so kernels read and write them directly. Every allocation is poisoned with 0xff (NaN) and framed by
guard bytes that are checked after every launch (a write out of bounds is reported). Copies and
launches complete before they return, which is one legal schedule of any stream order.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from .build import ShimLibrary, build

GUARD = 256          # guard bytes before and after every allocation (a multiple of 4)
#: The guard pattern: float32 NaN 0x7fa5a5a5 (an out-of-bounds float read wins every argmax), bytes
#: 165 / 127 (a frame read past its end is not the border value), double ~2^1019.
_GUARD_WORD = np.array([0x7FA5A5A5], "<u4").view(np.uint8)
ARCH = (8, 7)        # the device this stand-in reports: Jetson Orin (sm_87)


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_VALUE = 1
    CUDA_ERROR_INVALID_HANDLE = 400
    CUDA_ERROR_NOT_FOUND = 500
    CUDA_ERROR_ILLEGAL_ADDRESS = 700
    CUDA_ERROR_LAUNCH_FAILED = 719


class _Names:
    """Attribute namespaces of the bindings (values are only passed back to this driver)."""

    def __init__(self, **values: int) -> None:
        self.__dict__.update(values)


class HostMemory:
    """Guarded host allocations whose addresses serve as device pointers."""

    def __init__(self, guard: int = GUARD) -> None:
        if guard % 4:
            raise ValueError(f"guard must be a multiple of 4 bytes, not {guard}")
        self.guard = guard
        self._guards = np.tile(_GUARD_WORD, guard // 4)
        self._blocks: Dict[int, np.ndarray] = {}
        self._arrays: List[int] = []

    def alloc(self, nbytes: int) -> int:
        block = np.full(nbytes + 2 * self.guard, 0xFF, np.uint8)
        block[:self.guard] = self._guards
        block[self.guard + nbytes:] = self._guards
        addr = int(block.ctypes.data) + self.guard
        self._blocks[addr] = block
        return addr

    def array(self, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        """A poisoned (0xff) numpy array in guarded memory; pass ``.ctypes.data`` to kernels."""
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        addr = self.alloc(max(nbytes, 1))
        self._arrays.append(addr)
        block = self._blocks[addr]
        return block[self.guard:self.guard + nbytes].view(dt).reshape(shape)

    def free(self, addr: int) -> None:
        if addr not in self._blocks:
            raise KeyError(f"free of {addr:#x}, which is not an allocation")
        self.check()
        del self._blocks[addr]

    def free_arrays(self) -> List[str]:
        """Free every :meth:`array` (not the driver's cuMemAlloc memory); guard messages."""
        bad = self.check()
        for addr in self._arrays:
            self._blocks.pop(addr, None)
        self._arrays.clear()
        return bad

    def check(self) -> List[str]:
        """Allocations whose guard bytes changed (an out-of-bounds write), as messages."""
        bad = []
        for addr, block in self._blocks.items():
            n = len(block) - 2 * self.guard
            if self.guard and (np.any(block[:self.guard] != self._guards)
                               or np.any(block[self.guard + n:] != self._guards)):
                bad.append(f"write out of bounds of the {n}-byte allocation at {addr:#x}")
                block[:self.guard] = self._guards
                block[self.guard + n:] = self._guards
        return bad

    def clear(self) -> None:
        self._blocks.clear()
        self._arrays.clear()


class HostDriver:
    """The subset of ``cuda.bindings.driver`` that the package's driver and launchers call."""

    CUdevice_attribute = _Names(**{f"CU_DEVICE_ATTRIBUTE_{n}": i for i, n in enumerate((
        "COMPUTE_CAPABILITY_MAJOR", "COMPUTE_CAPABILITY_MINOR", "INTEGRATED",
        "CAN_MAP_HOST_MEMORY", "MULTIPROCESSOR_COUNT"))})
    CUstream_flags = _Names(CU_STREAM_NON_BLOCKING=1)
    CUevent_flags = _Names(CU_EVENT_DISABLE_TIMING=2)

    def __init__(self, libraries: Dict[str, Path], guard: int = GUARD) -> None:
        self.memory = HostMemory(guard)
        self._library_paths = libraries        # kernel source name -> built library
        self._modules: Dict[int, ShimLibrary] = {}
        self._handles = itertools.count(1)
        self.launches: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = []
        #: problems found by the last launches: (kernel, "divergence" | "memory" | "shim", text)
        self.reports: List[Tuple[str, str, str]] = []
        self._attrs = dict(zip(range(5), (*ARCH, 1, 1, 8)))

    OK = CUresult.CUDA_SUCCESS

    # -- device, context, streams, events (no state worth keeping) -----------------------------
    def cuInit(self, flags: int) -> Tuple[Any]:
        return (self.OK,)

    def cuDeviceGetCount(self) -> Tuple[Any, int]:
        return self.OK, 1

    def cuDeviceGet(self, ordinal: int) -> Tuple[Any, int]:
        return self.OK, ordinal

    def cuDevicePrimaryCtxRetain(self, dev: int) -> Tuple[Any, int]:
        return self.OK, 1

    def cuDeviceGetAttribute(self, attr: int, dev: int) -> Tuple[Any, int]:
        return self.OK, self._attrs[attr]

    def cuDeviceGetName(self, size: int, dev: int) -> Tuple[Any, bytes]:
        return self.OK, b"CPU threads through cuda_shim.h (not a GPU)"

    def cuDeviceTotalMem(self, dev: int) -> Tuple[Any, int]:
        return self.OK, 1 << 30

    def cuDriverGetVersion(self) -> Tuple[Any, int]:
        return self.OK, 12060

    def _ok(self, *args: Any) -> Tuple[Any]:
        return (self.OK,)

    cuCtxSetCurrent = cuCtxSynchronize = cuDevicePrimaryCtxRelease = _ok
    cuStreamSynchronize = cuStreamDestroy = cuStreamWaitEvent = _ok
    cuEventRecord = cuEventSynchronize = cuEventDestroy = _ok

    def cuStreamCreate(self, flags: int) -> Tuple[Any, int]:
        return self.OK, next(self._handles)

    def cuEventCreate(self, flags: int) -> Tuple[Any, int]:
        return self.OK, next(self._handles)

    def cuEventElapsedTime(self, start: int, end: int) -> Tuple[Any, float]:
        return self.OK, 0.0

    # -- memory ----------------------------------------------------------------------------------
    def cuMemAlloc(self, nbytes: int) -> Tuple[Any, int]:
        return self.OK, self.memory.alloc(int(nbytes))

    def cuMemFree(self, ptr: int) -> Tuple[Any]:
        self.memory.free(int(ptr))
        return (self.OK,)

    def _copy(self, dst: int, src: int, nbytes: int, stream: int) -> Tuple[Any]:
        import ctypes

        ctypes.memmove(int(dst), int(src), int(nbytes))
        return (self.OK,)

    cuMemcpyHtoDAsync = cuMemcpyDtoHAsync = _copy

    def cuMemsetD32Async(self, ptr: int, value: int, count: int, stream: int) -> Tuple[Any]:
        import ctypes

        view = (ctypes.c_uint32 * int(count)).from_address(int(ptr))
        np.ctypeslib.as_array(view)[...] = np.uint32(value)
        return (self.OK,)

    def libraries(self) -> List[ShimLibrary]:
        """The shim libraries of the loaded modules (to set their schedule / math ulps)."""
        return list(self._modules.values())

    # -- modules and launches --------------------------------------------------------------------
    def cuModuleLoadData(self, image: bytes) -> Tuple[Any, int]:
        handle = next(self._handles)
        self._modules[handle] = ShimLibrary(Path(image.decode()))
        return self.OK, handle

    def cuModuleUnload(self, module: int) -> Tuple[Any]:
        return (self.OK,) if self._modules.pop(module, None) else \
            (CUresult.CUDA_ERROR_INVALID_HANDLE,)

    def cuModuleGetFunction(self, module: int, name: bytes) -> Tuple[Any, Any]:
        lib = self._modules[module]
        if not lib.has_kernel(name.decode()):
            return CUresult.CUDA_ERROR_NOT_FOUND, None
        return self.OK, (lib, name.decode())

    def cuLaunchKernel(self, fn: Tuple[ShimLibrary, str], gx: int, gy: int, gz: int, bx: int,
                       by: int, bz: int, shared_bytes: int, stream: int, params: int,
                       extra: int) -> Tuple[Any]:
        lib, name = fn
        if shared_bytes or extra or not params:  # no dynamic shared memory / extra in the shim
            return (CUresult.CUDA_ERROR_INVALID_VALUE,)
        grid, block = (int(gx), int(gy), int(gz)), (int(bx), int(by), int(bz))
        self.launches.append((name, grid, block))
        err = lib.launch(name, grid, block, int(params))
        count, divergent, text = lib.errors()
        if count:
            self.reports.append((name, "divergence" if divergent else "shim", text.strip()))
        self.reports.extend((name, "memory", msg) for msg in self.memory.check())
        return (CUresult(err),)


def libraries(kernel_dir: Path, cache: Optional[Path] = None,
              sanitize: Optional[str] = None) -> Dict[str, Path]:
    """Build (or take from the cache) the shim library of every kernel source the package ships.
    """
    from trt_pose_td.cuda.nvrtc import KERNEL_SOURCES

    return {name: build(Path(kernel_dir) / name, cache, sanitize) for name in KERNEL_SOURCES}


@contextlib.contextmanager
def host_kernels(libs: Dict[str, Path], guard: int = GUARD) -> Iterator[Tuple[Any, HostDriver]]:
    """The package's real ``Kernels`` on :class:`HostDriver` (patches undone on exit).

    Yields (kernels, driver); ``driver.memory`` allocates the buffers whose addresses the tests
    pass as device pointers.
    """
    from trt_pose_td.cuda import driver as cuda_driver
    from trt_pose_td.cuda import launchers

    drv = HostDriver(libs, guard)
    patches = {
        (cuda_driver, "driver_api"): lambda: drv,
        (launchers, "driver_api"): lambda: drv,
        (launchers, "supported_archs"): lambda: [72, 87],
        (launchers, "load_or_compile"):
            lambda name, target, cache_dir=None, refresh=False:
            (str(libs[name]).encode(), libs[name]),
    }
    saved = {key: getattr(*key) for key in patches}
    for (module, attr), value in patches.items():
        setattr(module, attr, value)
    kernels = None
    try:
        device = cuda_driver.Device(0)
        kernels = launchers.Kernels(device, self_test=False)  # run_self_test reports it
        yield kernels, drv
    finally:
        if kernels is not None:
            kernels.close()
        for (module, attr), value in saved.items():
            setattr(module, attr, value)
        drv.memory.clear()
