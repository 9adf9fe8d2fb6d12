"""TensorRT engine: deserialized once, named tensors, buffers for the profile maximum.

Only the named-tensor API is used (``num_io_tensors``, ``get_tensor_name``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``, ``get_tensor_profile_shape``): it exists from
TensorRT 8.5 (JetPack 5) to 10.x. Before deserializing, the provenance sidecar
(:mod:`trt_pose_td.engine_meta`) must say the engine was built for this TensorRT and GPU.

:meth:`TrtEngine.infer` is the host-numpy :class:`~.base.Engine` seam (same conformance suite as
:class:`~.onnxruntime.OrtEngine`); :meth:`TrtEngine.infer_device` runs on device pointers with the
caller's stream, which is how the GPU pipeline keeps crops and heatmaps on the GPU. Outputs whose
size depends on the data (ONNX ``NonMaxSuppression``) get memory through an ``IOutputAllocator``.
CUDA-graph replay is not implemented: its gain has not been measured on a device yet.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import EngineError
from ..models import ModelSpec
from ..trt_api import import_tensorrt, trt_logger
from .base import Engine, TensorSpec, check_contract

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

Shape = Tuple[int, ...]


def _shape(dims: Any) -> Shape:
    """A TensorRT ``Dims`` (or any sequence) -> tuple of ints."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def _volume(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def _output_allocator() -> Any:
    """An ``IOutputAllocator`` owning one growing :class:`DeviceBuffer` per output."""
    import tensorrt as trt

    from ..cuda.driver import DeviceBuffer

    class _Allocator(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffers: Dict[str, DeviceBuffer] = {}
            self.shapes: Dict[str, Shape] = {}

        def reallocate_output(self, tensor_name: str, memory: Any, size: int,
                              alignment: int) -> Any:
            try:
                buf = self.buffers.get(tensor_name)
                if buf is None or buf.nbytes < size:
                    if buf is not None:
                        buf.close()
                    buf = DeviceBuffer(max(int(size), 256))
                    self.buffers[tensor_name] = buf
                return buf.ptr
            except Exception:
                log.exception("output allocation of %d bytes for %s failed", size, tensor_name)
                return None

        def reallocate_output_async(self, tensor_name: str, memory: Any, size: int,
                                    alignment: int, stream: Any) -> Any:
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name: str, shape: Any) -> None:
            self.shapes[tensor_name] = _shape(shape)

        def close(self) -> None:
            for buf in self.buffers.values():
                buf.close()
            self.buffers.clear()

    return _Allocator()


class TrtEngine(Engine):
    """A serialized TensorRT engine with its provenance sidecar ``<path>.json``.

    device: the :class:`~trt_pose_td.cuda.driver.Device` to run on (default: device 0, owned);
    onnx_sha256: refuse an engine built from another ONNX file; spec: also check the registry
    contract (:func:`~.base.check_contract`). Optimisation profile 0 is used; its maximum sizes
    every buffer, allocated once.
    """

    def __init__(self, path: Union[str, Path], device: Any = None,
                 onnx_sha256: Optional[str] = None, spec: Optional[ModelSpec] = None) -> None:
        self.source = str(path)
        self._closed = False
        self._buffers: Dict[str, Any] = {}
        self._hosts: Dict[str, Any] = {}
        self._allocator: Any = None
        self._dds: List[str] = []
        self._stream: Any = None
        self._context: Optional[trt.IExecutionContext] = None
        self._engine: Optional[trt.ICudaEngine] = None
        self._runtime: Optional[trt.Runtime] = None
        import_tensorrt()
        from ..cuda.driver import Device

        if not Path(path).is_file():
            raise EngineError(f"engine file not found: {path}")
        self._own_device = device is None
        self._device = Device(0) if device is None else device
        try:
            self._open(Path(path), onnx_sha256)
            if spec is not None:
                check_contract(self, spec)
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------------------------------
    def _open(self, path: Path, onnx_sha256: Optional[str]) -> None:
        import tensorrt as trt

        from ..cuda.driver import Stream
        from ..engine_meta import check_runnable

        info = self._device.info
        self.metadata = check_runnable(path, trt.__version__, info.compute_capability, info.name,
                                       onnx_sha256=onnx_sha256)
        self._device.make_current()
        self._runtime = trt.Runtime(trt_logger())
        try:
            self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        except (RuntimeError, TypeError, ValueError) as exc:
            log.debug("deserialize_cuda_engine raised %r", exc)
            self._engine = None
        if self._engine is None:
            raise EngineError(f"{path}: TensorRT {trt.__version__} cannot deserialize it (corrupt, "
                              f"or not a TensorRT engine); rebuild: {self.metadata.build_command}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"{path}: cannot create an execution context (out of GPU memory?)")
        self._read_tensors()
        self._stream = Stream()
        self._allocate()

    def _read_tensors(self) -> None:
        import tensorrt as trt

        engine = self._eng
        self._inputs: Dict[str, TensorSpec] = {}
        self._outputs: Dict[str, TensorSpec] = {}
        self._profile: Dict[str, Tuple[Shape, Shape]] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.is_shape_inference_io(name):
                raise EngineError(f"{self.source}: shape tensor {name!r} is not supported")
            try:
                dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            except TypeError as exc:
                raise EngineError(f"{self.source}: tensor {name!r} has a type numpy cannot hold "
                                  f"({exc}); rebuild with float32/float16 I/O") from None
            spec = TensorSpec(name, _shape(engine.get_tensor_shape(name)), dtype)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._inputs[name] = spec
                if all(d >= 0 for d in spec.shape):  # static: the profile is the shape
                    self._profile[name] = (spec.shape, spec.shape)
                else:
                    lo, _, hi = engine.get_tensor_profile_shape(name, 0)
                    self._profile[name] = (_shape(lo), _shape(hi))
            else:
                self._outputs[name] = spec

    def _allocate(self) -> None:
        """Device + pinned host buffers at the profile maximum of every tensor."""
        from ..cuda.driver import DeviceBuffer, PinnedBuffer

        for name, (_, hi) in self._profile.items():
            self._set_shape(name, hi)
        self._dds = []
        for name, spec in {**self._inputs, **self._outputs}.items():
            shape = self._profile[name][1] if name in self._inputs else \
                _shape(self._ctx.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                self._dds.append(name)  # size known only after execution
                continue
            nbytes = max(_volume(shape) * spec.dtype.itemsize, 1)
            self._buffers[name] = DeviceBuffer(nbytes)
            self._hosts[name] = PinnedBuffer(nbytes)
        if self._dds:
            self._allocator = _output_allocator()
            for name in self._dds:
                if not self._ctx.set_output_allocator(name, self._allocator):
                    raise EngineError(f"{self.source}: cannot set an output allocator for {name}")
        log.info("%s: %s -> %s, profile max %s", self.source, list(self._inputs),
                 list(self._outputs), {n: hi for n, (_, hi) in self._profile.items()})

    def _set_shape(self, name: str, shape: Sequence[int]) -> None:
        import tensorrt as trt

        lo, hi = self._profile[name]
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(hi) or any(d < a or d > b for d, a, b in zip(shape, lo, hi)):
            raise EngineError(f"{self.source}: input {name} shape {list(shape)} is outside the "
                              f"engine's profile {list(lo)}..{list(hi)}; rebuild with a larger "
                              "profile or lower --max-batch")
        if not self._ctx.set_input_shape(name, trt.Dims(list(shape))):
            raise EngineError(f"{self.source}: TensorRT refused shape {list(shape)} for {name}")

    @property
    def _eng(self) -> trt.ICudaEngine:
        if self._engine is None:
            raise EngineError(f"{self.source}: engine is closed")
        return self._engine

    @property
    def _ctx(self) -> trt.IExecutionContext:
        if self._context is None:
            raise EngineError(f"{self.source}: engine is closed")
        return self._context

    def _live(self) -> None:
        if self._closed or self._context is None:
            raise EngineError(f"{self.source}: engine is closed")

    # ---------------------------------------------------------------------------------------
    @property
    def inputs(self) -> Dict[str, TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Dict[str, TensorSpec]:
        return self._outputs

    @property
    def max_batch(self) -> int:
        """The profile's maximum batch of the first input."""
        first = next(iter(self._inputs))
        return int(self._profile[first][1][0])

    def profile(self, name: str) -> Tuple[Shape, Shape]:
        """(min, max) shapes of input ``name`` in optimisation profile 0."""
        return self._profile[name]

    def device_ptr(self, name: str) -> int:
        """Current device address of tensor ``name`` (outputs sized by data: after a run)."""
        if name in self._buffers:
            return int(self._buffers[name].ptr)
        if self._allocator is not None and name in self._allocator.buffers:
            return int(self._allocator.buffers[name].ptr)
        raise EngineError(f"{self.source}: tensor {name!r} has no memory yet")

    def capacity(self, name: str) -> int:
        """Bytes of the buffer behind tensor ``name``."""
        if name in self._buffers:
            return int(self._buffers[name].nbytes)
        return int(self._allocator.buffers[name].nbytes) if self._allocator is not None and \
            name in self._allocator.buffers else 0

    def infer_device(self, shapes: Mapping[str, Sequence[int]], stream: Any,
                     addresses: Optional[Mapping[str, int]] = None) -> Dict[str, Shape]:
        """Enqueue one run on ``stream`` (a :class:`~trt_pose_td.cuda.driver.Stream`).

        shapes: every input's shape (within the profile); addresses: device pointers to use
        instead of the engine's own buffers (e.g. a slice of a crop batch). Inputs must be in
        place in stream order. Returns every output's shape.
        """
        self._live()
        if set(shapes) != set(self._inputs):
            raise EngineError(f"{self.source}: shapes for inputs {sorted(self._inputs)} "
                              f"expected, got {sorted(shapes)}")
        self._device.make_current()
        for name, shape in shapes.items():
            self._set_shape(name, shape)
        addresses = addresses or {}
        for name in (*self._inputs, *self._outputs):
            if name in addresses:
                self._ctx.set_tensor_address(name, int(addresses[name]))
            elif name in self._buffers:
                self._ctx.set_tensor_address(name, self._buffers[name].ptr)
        if not self._ctx.execute_async_v3(stream.handle):
            raise EngineError(f"{self.source}: TensorRT execution failed (see the log)")
        return {name: self.output_shape(name) for name in self._outputs}

    def output_shape(self, name: str) -> Shape:
        if name in self._dds:
            return self._allocator.shapes.get(name, ())
        return _shape(self._ctx.get_tensor_shape(name))

    def fetch_outputs(self, stream: Any, shapes: Mapping[str, Sequence[int]]
                      ) -> Dict[str, np.ndarray]:
        """Enqueue device -> pinned host copies of the outputs ``shapes`` names; the returned
        views are valid once ``stream`` has synchronized (and until the next fetch)."""
        from ..cuda.driver import PinnedBuffer

        views = {}
        for name, shape in shapes.items():
            dtype = self._outputs[name].dtype
            nbytes = _volume(shape) * dtype.itemsize
            host = self._hosts.get(name)
            if host is None or host.nbytes < nbytes:  # outputs sized by data only
                if host is not None:
                    host.close()
                host = self._hosts[name] = PinnedBuffer(max(nbytes, 256))
            view = host.array(dtype, tuple(shape))
            if nbytes:
                _download(view, self.device_ptr(name), stream)
            views[name] = view
        return views

    def infer(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Host numpy in, host numpy out (copies through pinned buffers, one private stream)."""
        self._live()
        self.check_feeds(feeds)
        self._device.make_current()
        shapes = {}
        for name, value in feeds.items():
            arr = np.ascontiguousarray(value)
            self._check_batch(name, arr.shape)
            host = self._hosts[name].array(arr.dtype, arr.shape)
            host[...] = arr
            self._buffers[name].upload(host, self._stream)
            shapes[name] = arr.shape
        out_shapes = self.infer_device(shapes, self._stream)
        views = self.fetch_outputs(self._stream, out_shapes)
        self._stream.synchronize()
        return {name: view.copy() for name, view in views.items()}

    def _check_batch(self, name: str, shape: Sequence[int]) -> None:
        lo, hi = self._profile[name]
        if any(d < a or d > b for d, a, b in zip(shape, lo, hi)):
            raise EngineError(f"{self.source}: input {name} shape {list(shape)} is outside the "
                              f"engine's profile {list(lo)}..{list(hi)}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._stream is not None:
                self._stream.synchronize()
        finally:
            for buf in (*self._buffers.values(), *self._hosts.values()):
                buf.close()
            self._buffers.clear()
            self._hosts.clear()
            if self._allocator is not None:
                self._allocator.close()
            if self._stream is not None:
                self._stream.close()
            self._context = self._engine = self._runtime = None
            if getattr(self, "_own_device", False):
                self._device.close()


def _download(view: np.ndarray, src_ptr: int, stream: Any) -> None:
    from ..cuda.driver import check, driver_api

    check(*driver_api().cuMemcpyDtoHAsync(int(view.ctypes.data), int(src_ptr), view.nbytes,
                                          stream.handle))
