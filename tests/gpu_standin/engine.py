"""Stand-in for :class:`trt_pose_td.engines.tensorrt.TrtEngine`: ONNX Runtime behind TensorRT's
device interface (a TEST DOUBLE: no TensorRT, no GPU).

Like ``TrtEngine`` it has one optimisation profile (batch 1..``max_batch`` at a fixed H x W) and
device buffers sized at the profile maximum; ``infer_device`` checks shapes against the profile,
takes the tensor addresses at enqueue time (the caller's or its own buffers, as
``set_tensor_address`` does; 256-byte aligned, as TensorRT requires) and queues the run on the
caller's stream. When the stream runs it, the inputs are read from stand-in memory at those
addresses, ONNX Runtime runs, and the outputs are written at their addresses; ``fetch_outputs``
queues their copies to pinned host views. The ONNX Runtime session is borrowed (the test owns
it), so engines are cheap to make.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from trt_pose_td.engines.base import Engine, TensorSpec
from trt_pose_td.engines.onnxruntime import OrtEngine
from trt_pose_td.errors import EngineError

from .driver import DeviceBuffer, PinnedBuffer, Stream, machine

Shape = Tuple[int, ...]
#: TensorRT wants every tensor address aligned to this many bytes.
TENSOR_ALIGNMENT = 256


def _volume(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


class StandinEngine(Engine):
    """``ort`` behind TensorRT's device interface; profile: batch 1..``max_batch`` at
    ``input_hw`` = (H, W) for the single image input. ``submitted`` / ``runs`` count the runs
    enqueued / executed."""

    def __init__(self, ort: OrtEngine, max_batch: int, input_hw: Tuple[int, int]) -> None:
        if len(ort.inputs) != 1:
            raise EngineError(f"{ort.source}: the stand-in engine takes one image input")
        self._ort = ort
        self.source = f"{ort.source} (stand-in TensorRT engine)"
        self._machine = machine()
        self._inputs, self._outputs = dict(ort.inputs), dict(ort.outputs)
        name = next(iter(self._inputs))
        h, w = input_hw
        self._profile = {name: ((1, 3, h, w), (int(max_batch), 3, h, w))}
        probe = ort.infer({name: np.zeros((1, 3, h, w), self._inputs[name].dtype)})
        self._per_item = {n: tuple(v.shape[1:]) for n, v in probe.items()}
        self._buffers: Dict[str, DeviceBuffer] = {}
        self._hosts: Dict[str, PinnedBuffer] = {}
        for n, spec in {**self._inputs, **self._outputs}.items():
            shape = self._profile[n][1] if n in self._inputs else self._shape(n, max_batch)
            self._buffers[n] = DeviceBuffer(_volume(shape) * spec.dtype.itemsize)
        self._shapes: Dict[str, Shape] = {}
        self._stream = Stream()
        self.runs = 0        # executed (when a stream ran them)
        self.submitted = 0   # enqueued
        self._closed = False

    def _shape(self, output: str, batch: int) -> Shape:
        return (int(batch), *self._per_item[output])

    @property
    def inputs(self) -> Dict[str, TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Dict[str, TensorSpec]:
        return self._outputs

    @property
    def max_batch(self) -> int:
        return int(next(iter(self._profile.values()))[1][0])

    def profile(self, name: str) -> Tuple[Shape, Shape]:
        return self._profile[name]

    def check_input_size(self, spec: Any) -> None:
        """As :meth:`TrtEngine.check_input_size`: the profile must take the configured (W, H)."""
        lo, hi = self._profile[spec.input_name]
        w, h = spec.preprocess.input_size
        if not (lo[2] <= h <= hi[2] and lo[3] <= w <= hi[3]):
            raise EngineError(f"{self.source} takes {spec.name} input {spec.input_name} at "
                              f"{hi[3]}x{hi[2]}, the pipeline runs it at {w}x{h}")

    def device_ptr(self, name: str) -> int:
        self._live()
        return self._buffers[name].ptr

    def capacity(self, name: str) -> int:
        return self._buffers[name].nbytes

    def _live(self) -> None:
        if self._closed:
            raise EngineError(f"{self.source}: engine is closed")

    def _check_shape(self, name: str, shape: Sequence[int]) -> Shape:
        lo, hi = self._profile[name]
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(hi) or any(d < a or d > b for d, a, b in zip(shape, lo, hi)):
            raise EngineError(f"{self.source}: input {name} shape {list(shape)} is outside the "
                              f"engine's profile {list(lo)}..{list(hi)}; rebuild with a larger "
                              "profile or lower --max-batch")
        return shape

    def infer_device(self, shapes: Mapping[str, Sequence[int]], stream: Stream,
                     addresses: Optional[Mapping[str, int]] = None) -> Dict[str, Shape]:
        """Queue one run on ``stream``; returns every output's shape (known at enqueue)."""
        self._live()
        if set(shapes) != set(self._inputs):
            raise EngineError(f"{self.source}: shapes for inputs {sorted(self._inputs)} "
                              f"expected, got {sorted(shapes)}")
        inputs = {n: self._check_shape(n, s) for n, s in shapes.items()}
        where = {n: int((addresses or {}).get(n, self._buffers[n].ptr))
                 for n in (*self._inputs, *self._outputs)}
        odd = {n: hex(a) for n, a in where.items() if a % TENSOR_ALIGNMENT}
        if odd:  # IExecutionContext.set_tensor_address: "at least 256-byte alignment"
            raise EngineError(f"{self.source}: tensor addresses {odd} are not "
                              f"{TENSOR_ALIGNMENT}-byte aligned")
        batch = next(iter(inputs.values()))[0]
        outs = {n: self._shape(n, batch) for n in self._outputs}
        m = self._machine

        def run() -> None:
            feeds = {}
            for n, shape in inputs.items():
                dtype = self._inputs[n].dtype
                raw = m.view(where[n], _volume(shape) * dtype.itemsize)
                feeds[n] = raw.view(dtype).reshape(shape).copy()
            self.runs += 1
            for n, value in self._ort.infer(feeds).items():
                if value.shape != outs[n]:
                    raise EngineError(f"{self.source}: output {n} is {value.shape}, the profile "
                                      f"said {outs[n]}")
                value = np.ascontiguousarray(value, self._outputs[n].dtype)
                m.view(where[n], value.nbytes)[...] = value.reshape(-1).view(np.uint8)

        stream.enqueue(run, f"execute {self.source}")
        self.submitted += 1
        self._shapes = outs
        return dict(outs)

    def output_shape(self, name: str) -> Shape:
        return self._shapes[name]

    def fetch_outputs(self, stream: Stream, shapes: Mapping[str, Sequence[int]]
                      ) -> Dict[str, np.ndarray]:
        """Queue device -> pinned host copies; the views are valid after ``stream`` syncs."""
        views = {}
        for name, shape in shapes.items():
            dtype = self._outputs[name].dtype
            nbytes = _volume(shape) * dtype.itemsize
            host = self._hosts.get(name)
            if host is None or host.nbytes < nbytes:
                if host is not None:
                    host.close()
                host = self._hosts[name] = PinnedBuffer(max(nbytes, 256))
            view = host.array(dtype, tuple(shape))
            self._buffers[name].download(view, stream)
            views[name] = view
        return views

    def infer(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """The host seam, through the device path on a private stream."""
        self._live()
        self.check_feeds(feeds)
        staged = []
        for name, value in feeds.items():
            host = PinnedBuffer(max(value.nbytes, 1))
            view = host.array(value.dtype, value.shape)
            view[...] = value
            self._buffers[name].upload(view, self._stream)
            staged.append(host)
        views = self.fetch_outputs(self._stream, self.infer_device(
            {n: v.shape for n, v in feeds.items()}, self._stream))
        self._stream.synchronize()
        for host in staged:
            host.close()
        return {n: v.copy() for n, v in views.items()}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stream.close()
        for buf in (*self._buffers.values(), *self._hosts.values()):
            buf.close()
