"""One-crop self-test of the CUDA kernels, run when :class:`~.launchers.Kernels` opens.

A kernel image that does not fit the GPU fails late and obscurely: a cubin for another
architecture or PTX newer than the driver ("no kernel image is available for execution on the
device", ``CUDA_ERROR_NO_BINARY_FOR_GPU``, ``CUDA_ERROR_INVALID_PTX``), a cache missing a kernel
("named symbol not found"), or a kernel that runs and computes something else. So
:func:`run_self_test` runs every kernel once on tiny fixed inputs, compares with its numpy twin
(:mod:`.twins`) and raises :class:`~trt_pose_td.errors.EngineError` in one line naming the GPU's
SM, the compiled target, the NVRTC and driver versions and the fix:

- ``warp_affine_f32`` and ``warp_affine_f16``: one 12x16 crop of a 40x30 random frame, the crop
  partly outside the frame (border taps), BGR -> RGB, normalised;
- ``warp_frames_f32`` and ``warp_frames_f16`` (the launch the GPU pipeline crops and letterboxes
  with): that crop from the frame, and its mirror from a copy of the frame with padded rows,
  written with a gap between them;
- ``flip_average``: two crops of six values, the gather reversing them;
- ``decode_heatmaps`` (DARK): two 16x12 maps, a Gaussian blob at a sub-pixel position and one
  on the border (refinement rejected there);
- ``decode_simcc``: two maps of 24 / 32 bins.

Every output buffer is poisoned with NaN first, so an element a kernel does not write fails the
test. Tolerances (max absolute difference; the twins reproduce the kernels' arithmetic, so 0 is
what a correct GPU gives): warp float32 1e-3 (normalised units), warp float16 1e-3 + 1e-3 x |twin|
(one float16 step at these values), decoded x, y (input pixels) and scores 1e-3. Cost: seven
launches of a few hundred threads and one synchronisation, about a millisecond.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, List, Tuple

import numpy as np

from .. import geometry
from ..errors import EngineError, TrtPoseError
from . import driver, twins
from .driver import CudaError

log = logging.getLogger(__name__)

SEED = 20240601
#: Output poison: float32 NaN, and two float16 NaNs per 32-bit word.
NAN32, NAN16X2 = 0x7FC00000, 0x7E007E00
WARP_TOLERANCE = 1e-3
WARP_F16_RELATIVE = 1e-3
DECODE_TOLERANCE = 1e-3
FIX = ("recompile the kernel cache for this GPU with `trt-pose-td precompile --force` (or delete "
       "{cache}); if that does not help, use an NVRTC no newer than the driver's CUDA (on "
       "JetPack 5 the JetPack's own, not nvidia-cuda-nvrtc-cu12)")
_CAUSES = (
    (("NO_BINARY_FOR_GPU", "no kernel image"), "the kernel image was compiled for another GPU"),
    (("INVALID_PTX", "UNSUPPORTED_PTX_VERSION", "PTX JIT"),
     "the driver cannot compile this PTX: NVRTC newer than the driver"),
    (("NOT_FOUND", "named symbol not found"), "the kernel image lacks a kernel (a stale cache)"),
)


@dataclass(frozen=True)
class KernelCheck:
    """One kernel against its twin: the largest difference beyond ``relative`` x |twin| (see
    :func:`max_difference`) and the allowed one."""

    kernel: str
    max_diff: float
    tolerance: float
    relative: float = 0.0

    @property
    def allowed(self) -> str:
        return f"{self.tolerance:g}" + (f" + {self.relative:g} x |twin|" if self.relative else "")

    @property
    def ok(self) -> bool:
        return self.max_diff <= self.tolerance


def _versions(kernels: Any) -> str:
    """``GPU NAME (sm_87, driver CUDA 12.4), kernels for TARGET by NVRTC 12.6``."""
    info = kernels.device.info
    v = int(info.driver_version)
    try:
        from .nvrtc import nvrtc_version

        major, minor = nvrtc_version()
        nvrtc = f"NVRTC {major}.{minor}"
    except (TrtPoseError, ImportError, RuntimeError, OSError):
        nvrtc = "an unknown NVRTC"
    return (f"GPU {info.name} ({info.arch}, driver CUDA {v // 1000}.{v % 1000 // 10}), kernels "
            f"compiled for {kernels.target} by {nvrtc}")


def _fix(kernels: Any) -> str:
    paths = sorted(str(p) for p in getattr(kernels, "image_paths", {}).values())
    if paths:
        return FIX.format(cache=", ".join(paths))
    from .nvrtc import default_cache_dir  # no GPU or cuda-python needed

    return FIX.format(cache=default_cache_dir())


def kernel_error(kernels: Any, doing: str, exc: BaseException) -> EngineError:
    """The one-line :class:`EngineError` for a CUDA error while ``doing`` something with the
    kernels: what failed, the likely cause, the versions involved and the fix."""
    text = " ".join(str(exc).split())
    cause = next((why for keys, why in _CAUSES if any(k.lower() in text.lower() for k in keys)),
                 "the kernels cannot run on this GPU")
    return EngineError(f"CUDA kernel check failed while {doing}: {text} ({cause}); "
                       f"{_versions(kernels)}. Fix: {_fix(kernels)}")


def mismatch_error(kernels: Any, check: KernelCheck) -> EngineError:
    """The one-line :class:`EngineError` for a kernel that ran but disagrees with its twin."""
    what = ("left outputs unwritten (NaN where its numpy twin has numbers)"
            if not np.isfinite(check.max_diff) else f"differs from its numpy twin by "
            f"{check.max_diff:.3g} (tolerance {check.allowed})")
    return EngineError(f"CUDA kernel check failed: {check.kernel} {what} on a one-crop test, so "
                       f"this GPU would compute wrong crops or keypoints: {_versions(kernels)}. "
                       f"Fix: {_fix(kernels)}")


def max_difference(got: np.ndarray, want: np.ndarray, relative: float = 0.0) -> float:
    """The largest ``|got - want| - relative x |want|`` (>= 0), compared with an absolute
    tolerance; NaN (an unwritten output) counts as infinite."""
    g, w = got.astype(np.float64), want.astype(np.float64)
    diff = np.abs(g - w) - relative * np.abs(w)
    diff[np.isnan(diff)] = np.inf
    return float(max(diff.max(initial=0.0), 0.0))


# --------------------------------------------------------------------------------------------
# inputs (fixed: the same numbers on every device)
def warp_case() -> Tuple[np.ndarray, np.ndarray, Tuple[int, int], Tuple[float, ...],
                         Tuple[float, ...]]:
    """frame (30, 40, 3) uint8; affines (1, 2, 3); out size (W, H) = (12, 16); mean; std."""
    rng = np.random.default_rng(SEED)
    frame = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    # the crop covers x -7.5 .. 19.5, y -8.5 .. 27.5: over the frame's top-left corner
    affines = geometry.crop_affines(np.array([[6.0, 9.5]], np.float32),
                                    np.array([[27.0, 36.0]], np.float32), (12, 16))
    return frame, affines, (12, 16), (100.0, 110.0, 120.0), (50.0, 60.0, 70.0)


def heatmap_case() -> Tuple[np.ndarray, Tuple[int, int]]:
    """heatmaps (1, 2, 16, 12) float32 and the network input size (W, H) = (48, 64)."""
    yy, xx = np.mgrid[0:16, 0:12].astype(np.float64)
    maps = [np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5 ** 2))
            for cx, cy in ((5.3, 7.6), (0.2, 15.0))]
    return np.stack(maps)[None].astype(np.float32), (48, 64)


def simcc_case() -> Tuple[np.ndarray, np.ndarray]:
    """simcc_x (1, 2, 24), simcc_y (1, 2, 32) float32."""
    rng = np.random.default_rng(SEED + 1)
    return (rng.random((1, 2, 24), dtype=np.float32), rng.random((1, 2, 32), dtype=np.float32))


# --------------------------------------------------------------------------------------------
class _Session:
    """Device buffers and one stream for the test, all released by :meth:`close`."""

    def __init__(self) -> None:
        self.stream = driver.Stream()
        self.buffers: List[Any] = []
        self.keep: List[np.ndarray] = []  # host arrays the queued copies still read / write

    def upload(self, host: np.ndarray) -> int:
        host = np.ascontiguousarray(host)
        buf = driver.DeviceBuffer(host.nbytes)
        self.buffers.append(buf)
        self.keep.append(host)
        buf.upload(host, self.stream)
        return int(buf.ptr)

    def output(self, nbytes: int, poison: int) -> Any:
        buf = driver.DeviceBuffer(nbytes)
        self.buffers.append(buf)
        buf.fill_u32(poison, self.stream)
        return buf

    def download(self, buf: Any, dtype: Any, shape: Tuple[int, ...]) -> np.ndarray:
        host = np.empty(shape, dtype)
        self.keep.append(host)
        buf.download(host, self.stream)
        return host

    def close(self) -> None:
        """Release everything, even after a fault (the first error is logged, not raised)."""
        for release in [self.stream.synchronize] + [b.close for b in self.buffers] + \
                [self.stream.close]:
            try:
                release()
            except TrtPoseError as exc:  # a faulted context: report what failed first
                log.debug("kernel self-test clean-up: %s", exc)


Result = Tuple[np.ndarray, np.ndarray, float]  # (kernel output, twin output, relative tolerance)


def _warp(kernels: Any, s: _Session, dtype: Any) -> Result:
    frame, affines, (w, h), mean, std = warp_case()
    half = np.dtype(dtype) == np.float16
    out = s.output(3 * h * w * np.dtype(dtype).itemsize, NAN16X2 if half else NAN32)
    kernels.warp(s.stream, s.upload(frame), (frame.shape[1], frame.shape[0]), frame.shape[1] * 3,
                 s.upload(twins.warp_params(affines)), 1, out.ptr, (w, h), mean, std, "rgb",
                 7.0, dtype, out.nbytes)
    want = twins.warp_batch_twin(frame, affines, (w, h), mean, std, "rgb", 7.0, dtype)
    return s.download(out, dtype, want.shape), want, WARP_F16_RELATIVE if half else 0.0


def _keypoints(s: _Session, out: Any, kpts: np.ndarray, scores: np.ndarray) -> Result:
    """The decode kernel's (maps, 3) output against the twin's (1, maps, 2) + (1, maps)."""
    want = np.concatenate([kpts[0], scores[0][:, None]], 1)
    return s.download(out, np.float32, want.shape), want, 0.0


def _heatmaps(kernels: Any, s: _Session) -> Result:
    heatmaps, size = heatmap_case()
    maps = heatmaps.shape[1]
    out = s.output(maps * 3 * 4, NAN32)
    kernels.decode_heatmaps(s.stream, s.upload(heatmaps), maps, heatmaps.shape[2:], size, "dark",
                            out.ptr, 0.5, out.nbytes)
    return _keypoints(s, out, *twins.decode_heatmaps_twin(heatmaps, size, "dark", 0.5))


def _simcc(kernels: Any, s: _Session) -> Result:
    sx, sy = simcc_case()
    maps = sx.shape[1]
    out = s.output(maps * 3 * 4, NAN32)
    kernels.decode_simcc(s.stream, s.upload(sx), sx.shape[2], s.upload(sy), sy.shape[2], maps,
                         2.0, out.ptr, out.nbytes)
    return _keypoints(s, out, *twins.decode_simcc_twin(sx, sy, 2.0))


def _warp_frames(kernels: Any, s: _Session, dtype: Any) -> Result:
    """Two items from two frames (the second with padded rows, mirrored crop) written with a
    gap between them: the multi-frame launch every GPU pipeline crop and letterbox uses."""
    frame, affines, (w, h), mean, std = warp_case()
    second = np.ascontiguousarray(frame[::-1, ::-1])
    padded = np.zeros((second.shape[0], second.shape[1] * 3 + 8), np.uint8)
    padded[:, :second.shape[1] * 3] = second.reshape(second.shape[0], -1)
    size = (frame.shape[1], frame.shape[0])
    table = twins.warp_frame_table([(s.upload(frame), *size, size[0] * 3),
                                    (s.upload(padded), *size, padded.shape[1])])
    both = np.concatenate([affines, geometry.mirror_affines(affines, w)])
    item = 3 * h * w
    items = twins.warp_items(both, np.array([0, 1]), np.array([0, item + 64]))
    half = np.dtype(dtype) == np.float16
    extent = 2 * item + 64
    out = s.output(extent * np.dtype(dtype).itemsize, NAN16X2 if half else NAN32)
    kernels.warp_frames(s.stream, s.upload(table), s.upload(items), 2, out.ptr, (w, h), mean,
                        std, "rgb", 7.0, dtype, extent, out.nbytes)
    want = twins.warp_frames_twin([frame, second], np.array([0, 1]), both, (w, h), mean, std,
                                  "rgb", 7.0, dtype)
    got = s.download(out, dtype, (extent,))
    # the two items, not the gap: a strided VIEW, read after the stream synchronised
    size = np.dtype(dtype).itemsize
    items = np.lib.stride_tricks.as_strided(
        got, (2, 3, h, w), ((item + 64) * size, h * w * size, w * size, size), writeable=False)
    return items, want, WARP_F16_RELATIVE if half else 0.0


def _flip_average(kernels: Any, s: _Session) -> Result:
    """Two crops of 2 x 3 "keypoint" values with their mirrored outputs; gather swaps the two
    keypoints and reverses x, as a heatmap flip-back does."""
    rng = np.random.default_rng(SEED + 2)
    outputs = rng.random((2, 2, 3), dtype=np.float32)
    mirrored = rng.random((2, 2, 3), dtype=np.float32)
    gather = np.array([5, 4, 3, 2, 1, 0], np.int32)
    buf = s.output(outputs.nbytes, NAN32)
    host = np.ascontiguousarray(outputs)
    s.keep.append(host)
    buf.upload(host, s.stream)
    kernels.flip_average(s.stream, buf.ptr, s.upload(mirrored), s.upload(gather), 6, 2,
                         outputs.nbytes)
    want = twins.flip_average_twin(outputs, mirrored, gather)
    return s.download(buf, np.float32, want.shape), want, 0.0


CASES: Tuple[Tuple[str, float, Callable[[Any, _Session], Result]], ...] = (
    ("warp_affine_f32", WARP_TOLERANCE, lambda k, s: _warp(k, s, np.float32)),
    ("warp_affine_f16", WARP_TOLERANCE, lambda k, s: _warp(k, s, np.float16)),
    ("warp_frames_f32", WARP_TOLERANCE, lambda k, s: _warp_frames(k, s, np.float32)),
    ("warp_frames_f16", WARP_TOLERANCE, lambda k, s: _warp_frames(k, s, np.float16)),
    ("flip_average", DECODE_TOLERANCE, _flip_average),
    ("decode_heatmaps", DECODE_TOLERANCE, _heatmaps),
    ("decode_simcc", DECODE_TOLERANCE, _simcc),
)


def run_self_test(kernels: Any) -> List[KernelCheck]:
    """Run every kernel of ``kernels`` once against its twin (module docstring); the checks, or
    :class:`EngineError` (one line) on a CUDA error or a mismatch. Leaves nothing allocated."""
    kernels.device.make_current()
    session = _Session()
    pending = []
    try:
        for name, tol, case in CASES:
            try:
                pending.append((name, tol, case(kernels, session)))
            except CudaError as exc:
                raise kernel_error(kernels, f"launching {name}", exc) from None
        try:
            session.stream.synchronize()
        except CudaError as exc:
            raise kernel_error(kernels, "running the kernels", exc) from None
    finally:
        session.close()
    checks = [KernelCheck(name, max_difference(got, want, rel), tol, rel)
              for name, tol, (got, want, rel) in pending]
    for check in checks:
        if not check.ok:
            raise mismatch_error(kernels, check)
    log.info("CUDA kernel self-test passed on %s: %s", kernels.device.info.name,
             ", ".join(f"{c.kernel} {c.max_diff:.2g}" for c in checks))
    return checks
