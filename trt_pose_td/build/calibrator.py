"""Implicit INT8 calibration (TensorRT <= 10): ``IInt8EntropyCalibrator2`` fed with the project's
calibration tensors (:mod:`trt_pose_td.quantize.calibration`), with a calibration cache file.

The logic is pure and tested without a GPU: :class:`CalibrationFeed` (fixed-size batches for the
calibration profile), :class:`CalibrationCache` (read / atomic write) and :class:`CalibratorCore`
(what ``get_batch`` / ``read_calibration_cache`` / ``write_calibration_cache`` do). The TensorRT
subclass (:func:`make_entropy_calibrator`) only delegates to the core; :func:`device_staging` is
the one device buffer batches are copied into (:mod:`trt_pose_td.cuda.driver`).
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import CalibrationError
from ..quantize.calibration import batches

log = logging.getLogger(__name__)


class CalibrationFeed:
    """Consecutive (B, C, H, W) float32 batches of ``data`` for input ``input_name``.

    The calibration profile fixes the shape, so every batch has exactly ``batch_size`` samples:
    a short remainder is dropped (logged). ``shape``: the profile shape to check ``data`` against.
    """

    def __init__(self, data: np.ndarray, batch_size: int, input_name: str,
                 shape: Optional[Sequence[int]] = None) -> None:
        if data.ndim != 4:
            raise CalibrationError(f"calibration data must be (N, C, H, W), not {data.shape}")
        if shape is not None and (batch_size != shape[0] or data.shape[1:] != tuple(shape[1:])):
            raise CalibrationError(f"calibration data {data.shape[1:]} in batches of {batch_size} "
                                   f"does not fit the input {input_name!r} profile {list(shape)}")
        if len(data) < batch_size:
            raise CalibrationError(f"the calibration set has {len(data)} samples, fewer than one "
                                   f"batch of {batch_size}: add images or lower --calib-batch")
        self.data, self.batch_size, self.input_name = data, batch_size, input_name
        self.num_batches = len(data) // batch_size
        if len(data) % batch_size:
            log.info("calibration uses %d of %d samples (%d batches of %d)",
                     self.num_batches * batch_size, len(data), self.num_batches, batch_size)
        self.served = 0
        self._iter: Iterator[np.ndarray] = iter(())
        self.reset()

    @property
    def batch_nbytes(self) -> int:
        return int(self.batch_size * np.prod(self.data.shape[1:]) * 4)

    def reset(self) -> None:
        self.served = 0
        self._iter = iter(batches(self.data, self.batch_size))

    def next_batch(self, names: Sequence[str]) -> Optional[np.ndarray]:
        """The next full batch for ``names`` (TensorRT's input list), None when done."""
        if list(names) != [self.input_name]:
            raise CalibrationError(f"TensorRT asks calibration data for {list(names)}; this set "
                                   f"feeds the single input {self.input_name!r}")
        if self.served >= self.num_batches:
            return None
        self.served += 1
        return next(self._iter)


def cache_header_version(data: bytes) -> Optional[Tuple[int, int, int]]:
    """(major, minor, patch) of the TensorRT that wrote a calibration cache, from its header line
    ``TRT-<version>-<algorithm>`` (``TRT-8502-EntropyCalibration2`` for 8.5.2: major * 1000 +
    minor * 100 + patch before 10, major * 10000 + minor * 100 + patch from 10 on, as
    ``NV_TENSORRT_VERSION``); None when the first line is no such header."""
    match = re.match(rb"TRT-(\d+)-\S+\s*(\n|$)", data)
    if match is None:
        return None
    n = int(match.group(1))
    if n >= 100000:
        return n // 10000, n // 100 % 100, n % 100
    return n // 1000, n // 100 % 10, n % 100


class CalibrationCache:
    """TensorRT's calibration cache file (per-tensor scales): read if present, written atomically.
    ``path`` None keeps nothing on disk. ``trt_version``: the TensorRT building now; a cache whose
    header names another TensorRT (copied from another machine or kept across a JetPack upgrade)
    is refused with a warning and calibration runs again — TensorRT itself would skip it silently
    and quantize with default scales (jetson-first-run.md A8: TensorRT #1378, #3612)."""

    def __init__(self, path: Optional[Path], trt_version: Optional[str] = None) -> None:
        self.path = Path(path) if path is not None else None
        self.trt_version = trt_version

    def read(self) -> Optional[bytes]:
        if self.path is None or not self.path.is_file():
            return None
        data = self.path.read_bytes()
        if not data:
            log.warning("calibration cache %s is empty; calibrating again", self.path)
            return None
        problem = self._header_problem(data)
        if problem:
            log.warning("calibration cache %s %s: calibrating again on this device (the file is "
                        "replaced)", self.path, problem)
            return None
        log.info("using calibration cache %s", self.path)
        return data

    def _header_problem(self, data: bytes) -> str:
        written = cache_header_version(data)
        if written is None:
            return "has no TensorRT header (TRT-<version>-<algorithm>)"
        if self.trt_version is None:
            return ""
        from packaging.version import Version

        now = tuple((Version(self.trt_version).release + (0, 0, 0))[:3])
        if written != now:
            return (f"was written by TensorRT {'.'.join(map(str, written))}, this is "
                    f"{self.trt_version}")
        return ""

    def write(self, data: bytes) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(bytes(data))
        tmp.replace(self.path)
        log.info("wrote calibration cache %s (%d bytes)", self.path, len(data))


def calibration_cache_path(tensors: Path, trt_version: str, arch: str = "") -> Path:
    """The TensorRT calibration cache beside the calibration tensors it was made from (their file
    name already encodes model, ONNX, preprocessing and image set), per TensorRT version and GPU
    architecture (``sm87``): calibrate on the device (A8: a cache from another GPU quantized
    worse on Xavier, TensorRT #2036)."""
    tensors = Path(tensors)
    return tensors.with_name(f"{tensors.stem}.trt{trt_version}{'.' + arch if arch else ''}.calib")


class CalibratorCore:
    """What the TensorRT calibrator does, minus TensorRT: hand out device pointers of the next
    batch (``upload`` copies a host batch to the device and returns its address), read and write
    the cache. An exception inside TensorRT's callback cannot propagate, so it is kept in
    :attr:`error` and the batch list ends; the builder raises it after the build."""

    def __init__(self, feed: CalibrationFeed, cache: CalibrationCache,
                 upload: Callable[[np.ndarray], int]) -> None:
        self.feed, self.cache, self.upload = feed, cache, upload
        self.error: Optional[BaseException] = None

    def get_batch(self, names: Sequence[str]) -> List[int]:
        try:
            batch = self.feed.next_batch(names)
            if batch is None:
                return []
            return [int(self.upload(batch))]
        except Exception as exc:  # reported by the builder, TensorRT only sees "no more data"
            self.error = exc
            return []

    def read_cache(self) -> Optional[bytes]:
        return self.cache.read()

    def write_cache(self, data: bytes) -> None:
        self.cache.write(data)


@contextmanager
def device_staging(nbytes: int) -> Iterator[Callable[[np.ndarray], int]]:
    """An upload function for :class:`CalibratorCore`: copies one host batch of exactly
    ``nbytes`` into a device buffer on GPU 0 (:mod:`trt_pose_td.cuda.driver`, the primary context
    TensorRT builds in) and returns its address; the buffer is freed on exit."""
    from ..cuda.driver import Device, DeviceBuffer, Stream

    with Device(0), Stream() as stream, DeviceBuffer(nbytes) as buffer:
        def upload(batch: np.ndarray) -> int:
            batch = np.ascontiguousarray(batch, np.float32)
            if batch.nbytes != buffer.nbytes:
                raise CalibrationError(f"calibration batch of {batch.nbytes} bytes, buffer holds "
                                       f"{buffer.nbytes}")
            buffer.upload(batch, stream)
            stream.synchronize()  # TensorRT reads it as soon as get_batch returns
            return buffer.ptr

        yield upload


def make_entropy_calibrator(core: CalibratorCore) -> Any:
    """A ``tensorrt.IInt8EntropyCalibrator2`` delegating to ``core`` (TensorRT <= 10 only)."""
    import tensorrt as trt

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # pybind11 needs the explicit call
            self.core = core

        def get_batch_size(self) -> int:
            return 1  # explicit batch: the batch is part of the calibration profile's shape

        def get_batch(self, names: Sequence[str]) -> List[int]:
            return self.core.get_batch(names)

        def read_calibration_cache(self) -> Any:  # None means "no cache" (the stubs omit it)
            return self.core.read_cache()

        def write_calibration_cache(self, cache: Any) -> None:
            self.core.write_cache(bytes(cache))

    return EntropyCalibrator()
