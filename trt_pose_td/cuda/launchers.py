"""Host side of the CUDA kernels: load the compiled images, validate arguments, launch on a stream.

:class:`Kernels` holds the warp and decode functions of one device. Its methods take device
pointers (ints) and an explicit :class:`~.driver.Stream`, check every size against the buffers'
capacities before launching, and check the launch. :class:`CudaPreprocessor` wraps the warp kernel
as a host-in / host-out :class:`~trt_pose_td.preprocess.Preprocessor` (tests and simple use).
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..decode import REFINEMENTS
from ..errors import TrtPoseError
from . import selftest
from .driver import CudaError, Device, DeviceBuffer, PinnedBuffer, Stream, check, driver_api
from .nvrtc import KERNEL_SOURCES, load_or_compile, supported_archs, target_for
from .twins import WARP_DTYPES, heatmap_params, norm_params, warp_params

log = logging.getLogger(__name__)

Size = Tuple[int, int]
#: Floats per decoded keypoint: x, y (input pixels of the crop), score.
KEYPOINT_FIELDS = 3
_DECODE_THREADS = 256
_WARP_BLOCK = (32, 8)
_REFINE_CODES = {name: code for code, name in enumerate(REFINEMENTS)}  # none 0, quarter 1, dark 2
_FUNCTIONS = {"warp.cu": ("warp_affine_f32", "warp_affine_f16", "warp_frames_f32",
                          "warp_frames_f16"),
              "decode.cu": ("decode_heatmaps", "decode_simcc", "flip_average")}
#: Largest grid y / z extent (items of a warp launch, crops of a flip launch).
_MAX_GRID_YZ = 65535


class _Norm(ctypes.Structure):
    _fields_ = [(n, ctypes.c_float) for n in ("mean0", "mean1", "mean2", "istd0", "istd1",
                                              "istd2")]


def _ptr(value: Any) -> ctypes.c_uint64:
    return ctypes.c_uint64(int(value))


def _warp_dtype(dtype: object, channel_order: str) -> np.dtype:
    """The output dtype of a warp launch (float32 / float16), its channel order checked."""
    out_dtype = np.dtype(dtype)  # type: ignore[call-overload]
    if out_dtype not in WARP_DTYPES:
        raise ValueError(f"dtype must be float32 or float16, not {out_dtype}")
    if channel_order not in ("bgr", "rgb"):
        raise ValueError(f"channel_order must be 'bgr' or 'rgb', not {channel_order!r}")
    return out_dtype


def _norm(mean: Sequence[float], std: Sequence[float]) -> _Norm:
    mean32, istd32 = norm_params(mean, std)
    return _Norm(*[float(v) for v in (*mean32, *istd32)])


def _warp_grid(w: int, h: int, count: int) -> Tuple[int, int, int]:
    """One block per 32 x 8 output pixels, grid z = items."""
    return -(-w // _WARP_BLOCK[0]), -(-h // _WARP_BLOCK[1]), count


def _capacity(nbytes: int, capacity: Optional[int], what: str) -> None:
    if capacity is not None and nbytes > capacity:
        raise ValueError(f"{what} needs {nbytes} bytes but its buffer holds {capacity}")


class Kernels:
    """The package's kernels loaded on ``device`` (compiled or taken from the cache).

    self_test: run :meth:`self_test` once loaded (default; the GPU pipeline relies on it), so a
    kernel image that does not fit this GPU fails here in one line, not as wrong poses later.
    ``image_paths``: the cache file each kernel source was loaded from.
    """

    def __init__(self, device: Device, cache_dir: Optional[Path] = None,
                 self_test: bool = True) -> None:
        self.device = device
        self._drv = driver_api()
        info = device.info
        self.target = target_for(info.major, info.minor, supported_archs())
        device.make_current()
        self._modules: List[Any] = []
        self._fn: Dict[str, Any] = {}
        self._gauss: Dict[int, DeviceBuffer] = {}
        self.image_paths: Dict[str, Path] = {}
        try:
            for source in KERNEL_SOURCES:
                module = self._load(source, cache_dir)
                self._modules.append(module)
                for name in _FUNCTIONS[source]:
                    self._fn[name] = check(*self._drv.cuModuleGetFunction(module, name.encode()))
            log.info("CUDA kernels loaded for %s (%s)", info.name, self.target)
            if self_test:
                self.self_test()
        except BaseException as exc:
            self._abandon()
            if isinstance(exc, CudaError):  # no image for this GPU, a symbol missing, ...
                raise selftest.kernel_error(self, "loading the kernels", exc) from None
            raise

    def _load(self, source: str, cache_dir: Optional[Path]) -> Any:
        image, path = load_or_compile(source, self.target, cache_dir)
        self.image_paths[source] = path
        try:
            return check(*self._drv.cuModuleLoadData(image))
        except CudaError as exc:  # e.g. a cubin from a newer NVRTC than the driver accepts
            log.warning("cannot load %s (%s); recompiling", path, exc)
            image, _ = load_or_compile(source, self.target, cache_dir, refresh=True)
            return check(*self._drv.cuModuleLoadData(image))

    # -- fail fast: the kernels against their numpy twins (cuda/selftest.py) -------------------
    def self_test(self) -> List[selftest.KernelCheck]:
        """Run every kernel once on a tiny fixed input (one crop, float32 and float16; two
        heatmaps; two SimCC maps) and compare with its numpy twin. Returns the checks (max
        difference, tolerance); raises :class:`~trt_pose_td.errors.EngineError` in one line
        naming the GPU's SM, the compiled target and the fix on a CUDA error or a mismatch."""
        return selftest.run_self_test(self)

    def _abandon(self) -> None:
        """Release what a failed ``__init__`` loaded, keeping its error the one raised."""
        try:
            self.close()
        except TrtPoseError as exc:
            log.debug("releasing the kernels after a failed load: %s", exc)

    def _launch(self, name: str, grid: Tuple[int, int, int], block: Tuple[int, int, int],
                stream: Stream, args: Sequence[Any]) -> None:
        keep = list(args)
        ptrs = (ctypes.c_void_p * len(keep))(*[ctypes.addressof(a) for a in keep])
        check(*self._drv.cuLaunchKernel(self._fn[name], *grid, *block, 0, stream.handle,
                                        ctypes.addressof(ptrs), 0))

    # ----------------------------------------------------------------------------------------
    def warp(self, stream: Stream, src_ptr: int, src_size: Size, src_pitch: int, params_ptr: int,
             count: int, out_ptr: int, out_size: Size, mean: Sequence[float],
             std: Sequence[float], channel_order: str = "bgr", border_value: float = 0.0,
             dtype: object = np.float32, out_capacity: Optional[int] = None) -> int:
        """Warp ``count`` items of a uint8 HWC BGR frame into (count, 3, H, W) ``dtype``.

        src_ptr: device address of the frame (src_size = (W, H), row pitch in bytes);
        params_ptr: device address of (count, 6) float32 :func:`~.twins.warp_params`;
        out_ptr: device address of the output; returns the bytes written.
        """
        out_dtype = _warp_dtype(dtype, channel_order)
        src_w, src_h = int(src_size[0]), int(src_size[1])
        w, h = int(out_size[0]), int(out_size[1])
        if min(src_w, src_h, w, h) < 1 or src_pitch < 3 * src_w or count < 1:
            raise ValueError(f"bad warp sizes: frame {src_w}x{src_h} pitch {src_pitch}, output "
                             f"{w}x{h}, count {count}")
        nbytes = count * 3 * h * w * out_dtype.itemsize
        _capacity(nbytes, out_capacity, "warp output")
        norm, grid = _norm(mean, std), _warp_grid(w, h, count)
        name = "warp_affine_f32" if out_dtype == np.float32 else "warp_affine_f16"
        self._launch(name, grid, (*_WARP_BLOCK, 1), stream, [
            _ptr(src_ptr), ctypes.c_int(src_w), ctypes.c_int(src_h), ctypes.c_int(src_pitch),
            _ptr(params_ptr), _ptr(out_ptr), ctypes.c_int(w), ctypes.c_int(h), norm,
            ctypes.c_int(channel_order == "rgb"), ctypes.c_float(border_value)])
        return nbytes

    def warp_frames(self, stream: Stream, frames_ptr: int, items_ptr: int, count: int,
                    out_ptr: int, out_size: Size, mean: Sequence[float], std: Sequence[float],
                    channel_order: str = "bgr", border_value: float = 0.0,
                    dtype: object = np.float32, out_extent: Optional[int] = None,
                    out_capacity: Optional[int] = None) -> None:
        """Warp ``count`` items, each from its own frame, into ``dtype`` 3 x H x W outputs.

        frames_ptr: device address of the :data:`~.twins.WARP_FRAME` table
        (:func:`~.twins.warp_frame_table`); items_ptr: of ``count`` :data:`~.twins.WARP_ITEM`
        (:func:`~.twins.warp_items`: map, frame index, output offset in elements); out_extent:
        the elements of the output the items reach (largest offset + 3 * H * W), checked
        against ``out_capacity`` (bytes) before the launch.
        """
        out_dtype = _warp_dtype(dtype, channel_order)
        w, h = int(out_size[0]), int(out_size[1])
        if min(w, h) < 1 or not 1 <= count <= _MAX_GRID_YZ:
            raise ValueError(f"bad warp sizes: output {w}x{h}, {count} items (1..{_MAX_GRID_YZ})")
        extent = count * 3 * h * w if out_extent is None else int(out_extent)
        _capacity(extent * out_dtype.itemsize, out_capacity, "warp output")
        norm, grid = _norm(mean, std), _warp_grid(w, h, count)
        name = "warp_frames_f32" if out_dtype == np.float32 else "warp_frames_f16"
        self._launch(name, grid, (*_WARP_BLOCK, 1), stream, [
            _ptr(frames_ptr), _ptr(items_ptr), _ptr(out_ptr), ctypes.c_int(w), ctypes.c_int(h),
            norm, ctypes.c_int(channel_order == "rgb"), ctypes.c_float(border_value)])

    def flip_average(self, stream: Stream, outputs_ptr: int, mirrored_ptr: int, gather_ptr: int,
                     item: int, count: int, capacity: Optional[int] = None) -> None:
        """``outputs = (outputs + mirrored flipped back) * 0.5`` in place, for ``count`` crops of
        ``item`` float32 each; gather_ptr: (item,) int32 :func:`~.twins.flip_gathers` on the
        device; capacity: bytes of each of the two buffers (checked before the launch)."""
        if item < 1 or not 1 <= count <= _MAX_GRID_YZ:
            raise ValueError(f"bad flip batch: {count} crops of {item} floats")
        _capacity(count * item * 4, capacity, "flip output")
        grid = (-(-item // _DECODE_THREADS), count, 1)
        self._launch("flip_average", grid, (_DECODE_THREADS, 1, 1), stream, [
            _ptr(outputs_ptr), _ptr(mirrored_ptr), _ptr(gather_ptr), ctypes.c_int(item)])

    def _gauss_ptr(self, weights: np.ndarray, stream: Stream) -> int:
        """Device copy of DARK blur weights (float64), uploaded once per size."""
        size = len(weights)
        if size not in self._gauss:
            buf = DeviceBuffer(weights.nbytes)
            host = np.ascontiguousarray(weights, np.float64)
            buf.upload(host, stream)
            stream.synchronize()  # ``host`` is pageable and temporary
            self._gauss[size] = buf
        return self._gauss[size].ptr

    def decode_heatmaps(self, stream: Stream, heatmaps_ptr: int, maps: int, hw: Size,
                        input_size: Size, refine: str, out_ptr: int, cell_offset: float = 0.5,
                        out_capacity: Optional[int] = None) -> None:
        """Decode ``maps`` float32 heatmaps of hw = (h, w) -> (maps, 3) float32 at ``out_ptr``.

        input_size: (W, H) of the network input (sets the stride); refine: none|quarter|dark.
        """
        h, w = int(hw[0]), int(hw[1])
        if maps < 1 or h < 1 or w < 1:
            raise ValueError(f"bad heatmap batch: {maps} maps of {h}x{w}")
        _capacity(maps * KEYPOINT_FIELDS * 4, out_capacity, "keypoint output")
        sx, sy, kernel, gauss = heatmap_params(input_size, h, w, refine)
        gauss_ptr = self._gauss_ptr(gauss, stream)
        self._launch("decode_heatmaps", (maps, 1, 1), (_DECODE_THREADS, 1, 1), stream, [
            _ptr(heatmaps_ptr), ctypes.c_int(h), ctypes.c_int(w),
            ctypes.c_int(_REFINE_CODES[refine]), ctypes.c_int(kernel), _ptr(gauss_ptr),
            ctypes.c_float(float(sx)), ctypes.c_float(float(sy)), ctypes.c_float(cell_offset),
            _ptr(out_ptr)])

    def decode_simcc(self, stream: Stream, x_ptr: int, lx: int, y_ptr: int, ly: int, maps: int,
                     split_ratio: float, out_ptr: int, out_capacity: Optional[int] = None) -> None:
        """Decode ``maps`` SimCC pairs (lx and ly float32 bins) -> (maps, 3) float32."""
        if maps < 1 or lx < 1 or ly < 1 or split_ratio <= 0:
            raise ValueError(f"bad SimCC batch: {maps} maps, {lx}/{ly} bins, split {split_ratio}")
        _capacity(maps * KEYPOINT_FIELDS * 4, out_capacity, "keypoint output")
        self._launch("decode_simcc", (maps, 1, 1), (_DECODE_THREADS, 1, 1), stream, [
            _ptr(x_ptr), ctypes.c_int(lx), _ptr(y_ptr), ctypes.c_int(ly),
            ctypes.c_float(split_ratio), _ptr(out_ptr)])

    def close(self) -> None:
        for buf in self._gauss.values():
            buf.close()
        self._gauss.clear()
        while self._modules:
            check(*self._drv.cuModuleUnload(self._modules.pop()))


class CudaPreprocessor:
    """The warp kernel as a host-in / host-out :class:`~trt_pose_td.preprocess.Preprocessor`.

    Buffers grow to the largest request and are reused; one private stream. For the pipeline's
    zero-copy path see :mod:`trt_pose_td.pipelines.gpu`.
    """

    def __init__(self, kernels: Kernels, dtype: object = np.float32) -> None:
        self.kernels = kernels
        self.dtype = np.dtype(dtype)  # type: ignore[call-overload]
        self.stream = Stream()
        self._bufs: Dict[str, Any] = {}

    def _buffer(self, key: str, nbytes: int, pinned: bool) -> Any:
        buf = self._bufs.get(key)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                self.stream.synchronize()
                buf.close()
            buf = PinnedBuffer(nbytes) if pinned else DeviceBuffer(nbytes)
            self._bufs[key] = buf
        return buf

    def warp_batch(self, image: np.ndarray, affines: np.ndarray, out_size: Size,
                   mean: Sequence[float], std: Sequence[float], channel_order: str = "bgr",
                   border_value: float = 0.0) -> np.ndarray:
        """image: (H, W, 3) uint8 BGR; affines: (N, 2, 3). Returns (N, 3, H, W) ``dtype``."""
        img = np.ascontiguousarray(image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8, got {img.dtype} {img.shape}")
        params = warp_params(affines)
        n, (w, h) = len(params), out_size
        out_bytes = n * 3 * h * w * self.dtype.itemsize
        self.kernels.device.make_current()
        host_frame = self._buffer("host_frame", img.nbytes, True)
        host_params = self._buffer("host_params", params.nbytes, True)
        frame = self._buffer("frame", img.nbytes, False)
        par = self._buffer("params", params.nbytes, False)
        out = self._buffer("out", out_bytes, False)
        host_out = self._buffer("host_out", out_bytes, True)
        staged = host_frame.array(np.uint8, img.shape)
        staged[...] = img
        pstaged = host_params.array(np.float32, params.shape)
        pstaged[...] = params
        frame.upload(staged, self.stream)
        par.upload(pstaged, self.stream)
        self.kernels.warp(self.stream, frame.ptr, (img.shape[1], img.shape[0]), img.shape[1] * 3,
                          par.ptr, n, out.ptr, (w, h), mean, std, channel_order, border_value,
                          self.dtype, out.nbytes)
        result = host_out.array(self.dtype, (n, 3, h, w))
        out.download(result, self.stream)
        self.stream.synchronize()
        return result.copy()

    def close(self) -> None:
        for buf in self._bufs.values():
            buf.close()
        self._bufs.clear()
        self.stream.close()

