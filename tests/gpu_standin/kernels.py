"""Stand-in for :class:`trt_pose_td.cuda.launchers.Kernels`: the real host side, numpy twins as the
kernel bodies (a TEST DOUBLE, not a GPU).

Everything the real class does before ``cuLaunchKernel`` runs unchanged (argument checks,
capacities, float32 normalisation, DARK weights uploaded through a :class:`DeviceBuffer`); only
``_launch`` is replaced. It queues the launch on its stream; when the stream runs it, the launch
reads its inputs from stand-in memory at the device pointers it was given, in the argument order
of ``kernels/warp.cu`` and ``kernels/decode.cu``, computes with the twins of
:mod:`trt_pose_td.cuda.twins`, and writes the result at its output pointer.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import numpy as np

from trt_pose_td.cuda import twins
from trt_pose_td.cuda.driver import CudaError
from trt_pose_td.cuda.launchers import Kernels
from trt_pose_td.decode import REFINEMENTS

from .driver import Device, Stream, machine

_MAX_GRID_YZ = 65535
_MAX_BLOCK = 1024


def _value(arg: Any) -> Any:
    return arg.value if hasattr(arg, "value") else arg


class StandinKernels(Kernels):
    """Kernels on a stand-in :class:`~.driver.Device`; ``launches`` counts launches by name."""

    def __init__(self, device: Device) -> None:  # no NVRTC, no modules: nothing to load
        self.device = device
        self.target = "standin"
        self._machine = machine()
        self._modules: List[Any] = []
        self._fn = {name: name for name in ("warp_affine_f32", "warp_affine_f16",
                                            "warp_frames_f32", "warp_frames_f16",
                                            "decode_heatmaps", "decode_simcc", "flip_average")}
        self._gauss = {}
        self.launches: dict = {}

    def _launch(self, name: str, grid: Tuple[int, int, int], block: Tuple[int, int, int],
                stream: Stream, args: Sequence[Any]) -> None:
        if min(*grid, *block) < 1 or max(grid[1:]) > _MAX_GRID_YZ or \
                int(np.prod(block)) > _MAX_BLOCK:
            raise CudaError(f"CUDA_ERROR_INVALID_VALUE: launch of {name} with grid {grid}, "
                            f"block {block}")
        values = [_value(a) for a in args]
        body = {"warp_affine_f32": self._warp, "warp_affine_f16": self._warp,
                "warp_frames_f32": self._warp_frames, "warp_frames_f16": self._warp_frames,
                "decode_heatmaps": self._decode_heatmaps, "decode_simcc": self._decode_simcc,
                "flip_average": self._flip_average}
        dtype = np.float16 if name.endswith("f16") else np.float32
        self.launches[name] = self.launches.get(name, 0) + 1
        stream.enqueue(lambda: body[self._fn[name]](grid, values, dtype), name)

    def _read(self, ptr: int, dtype: Any, shape: Tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self._machine.view(ptr, n).view(dtype).reshape(shape).copy()

    def _write(self, ptr: int, value: np.ndarray) -> None:
        value = np.ascontiguousarray(value)
        self._machine.view(ptr, value.nbytes)[...] = value.reshape(-1).view(np.uint8)

    # -- kernel bodies ---------------------------------------------------------------------------
    @staticmethod
    def _norm(norm: Any) -> Tuple[np.ndarray, np.ndarray]:
        return (np.array([norm.mean0, norm.mean1, norm.mean2], np.float32),
                np.array([norm.istd0, norm.istd1, norm.istd2], np.float32))

    def _frame(self, src: int, src_w: int, src_h: int, pitch: int) -> np.ndarray:
        """(H * W, 3) uint8 pixels of a frame read at its pitch."""
        rows = self._read(src, np.uint8, (src_h, pitch))
        return np.ascontiguousarray(rows[:, :3 * src_w]).reshape(-1, 3)

    def _warp(self, grid: Tuple[int, int, int], args: List[Any], dtype: Any) -> None:
        """warp_affine_f32/_f16(src, src_w, src_h, src_pitch, inv, dst, out_w, out_h, norm, rgb,
        border); grid z = items."""
        src, src_w, src_h, pitch, inv_ptr, dst, w, h, norm, rgb, border = args
        count = grid[2]
        inv = self._read(inv_ptr, np.float32, (count, 6))
        out = twins.warp_normalized(self._frame(src, src_w, src_h, pitch), (src_w, src_h), inv,
                                    (w, h), border, *self._norm(norm), bool(rgb), dtype)
        self._write(dst, out)

    def _warp_frames(self, grid: Tuple[int, int, int], args: List[Any], dtype: Any) -> None:
        """warp_frames_f32/_f16(frames, items, dst, out_w, out_h, norm, rgb, border); grid z =
        items, each read from its own frame of the table and written at its own offset."""
        frames_ptr, items_ptr, dst, w, h, norm, rgb, border = args
        items = self._read(items_ptr, twins.WARP_ITEM, (grid[2],))
        table = self._read(frames_ptr, twins.WARP_FRAME, (int(items["frame"].max()) + 1,))
        itemsize = np.dtype(dtype).itemsize
        for f in np.unique(items["frame"]):
            mine = items[items["frame"] == f]
            desc = table[f]
            out = twins.warp_normalized(
                self._frame(int(desc["src"]), int(desc["w"]), int(desc["h"]), int(desc["pitch"])),
                (int(desc["w"]), int(desc["h"])), mine["inv"], (w, h), border, *self._norm(norm),
                bool(rgb), dtype)
            for offset, crop in zip(mine["out"], out):
                self._write(dst + int(offset) * itemsize, crop)

    def _flip_average(self, grid: Tuple[int, int, int], args: List[Any], dtype: Any) -> None:
        """flip_average(a, b, gather, item); grid y = crops."""
        a_ptr, b_ptr, gather_ptr, item = args
        shape = (grid[1], item)
        gather = self._read(gather_ptr, np.int32, (item,))
        self._write(a_ptr, twins.flip_average_twin(self._read(a_ptr, np.float32, shape),
                                                   self._read(b_ptr, np.float32, shape), gather))

    def _decode_heatmaps(self, grid: Tuple[int, int, int], args: List[Any], dtype: Any) -> None:
        """decode_heatmaps(heatmaps, h, w, refine, kernel, gauss, stride_x, stride_y,
        cell_offset, out); grid x = maps. The twin derives stride and blur from the input size,
        so the launch's values must be the ones it derives (and the weights in memory too)."""
        hm_ptr, h, w, refine_code, kernel, gauss_ptr, sx, sy, cell_offset, out = args
        maps = grid[0]
        refine = REFINEMENTS[refine_code]
        size = (int(round(sx * w)), int(round(sy * h)))
        want = twins.heatmap_params(size, h, w, refine)
        got = self._read(gauss_ptr, np.float64, (kernel,))
        if (np.float32(sx), np.float32(sy), kernel) != want[:3] or \
                not np.array_equal(got, want[3]):
            raise CudaError(f"stand-in decode_heatmaps: stride ({sx}, {sy}), blur {kernel} and "
                            "the weights in memory do not describe one input size")
        heatmaps = self._read(hm_ptr, np.float32, (1, maps, h, w))
        kpts, scores = twins.decode_heatmaps_twin(heatmaps, size, refine, cell_offset)
        self._write(out, np.concatenate([kpts[0], scores[0][:, None]], 1).astype(np.float32))

    def _decode_simcc(self, grid: Tuple[int, int, int], args: List[Any], dtype: Any) -> None:
        """decode_simcc(simcc_x, lx, simcc_y, ly, split, out); grid x = maps."""
        x_ptr, lx, y_ptr, ly, split, out = args
        maps = grid[0]
        kpts, scores = twins.decode_simcc_twin(self._read(x_ptr, np.float32, (1, maps, lx)),
                                               self._read(y_ptr, np.float32, (1, maps, ly)),
                                               split)
        self._write(out, np.concatenate([kpts[0], scores[0][:, None]], 1).astype(np.float32))
