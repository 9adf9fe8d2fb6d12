"""TensorRT engine: deserialized once, named tensors, device buffers for the largest profile.

Only the named-tensor API is used (``num_io_tensors``, ``get_tensor_name``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``, ``get_tensor_profile_shape``): it exists from
TensorRT 8.5 (JetPack 5) to 10.x. Before deserializing, the provenance sidecar
(:mod:`trt_pose_td.engine_meta`) must say the engine was built for this TensorRT and GPU; the
sidecar also sets the runtime's DLA core and, for version-compatible engines, allows the lean
runtime they embed. Each run selects the tightest optimisation profile covering its shapes
(:mod:`.trt_profiles`).

:meth:`TrtEngine.infer` is the host-numpy :class:`~.base.Engine` seam (same conformance suite as
:class:`~.onnxruntime.OrtEngine`); :meth:`TrtEngine.infer_device` runs on device pointers with the
caller's stream, which is how the GPU pipeline keeps crops and heatmaps on the GPU (pinned host
buffers exist only for what the host paths copy: :meth:`TrtEngine.infer` and
:meth:`TrtEngine.fetch_outputs` allocate them on first use). Outputs whose
size depends on the data (ONNX ``NonMaxSuppression``) get memory through an ``IOutputAllocator``.
CUDA-graph replay is not implemented: its gain has not been measured on a device yet.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import EngineError
from ..models import ModelSpec
from .base import Engine, TensorSpec, check_contract
from .trt_api import TrtFeatures, detect, make_runtime, numpy_dtype
from .trt_profiles import ProfileSet, Range, Shape, as_shape, size_mismatch, volume

if TYPE_CHECKING:
    import tensorrt as trt

    from ..cuda.driver import Device, Stream

log = logging.getLogger(__name__)


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
            self.shapes[tensor_name] = as_shape(shape)

        def close(self) -> None:
            for buf in self.buffers.values():
                buf.close()
            self.buffers.clear()

    return _Allocator()


class TrtEngine(Engine):
    """A serialized TensorRT engine with its provenance sidecar ``<path>.json``.

    device: the :class:`~trt_pose_td.cuda.driver.Device` to run on (default: device 0, owned);
    onnx_sha256: refuse an engine built from another ONNX file; spec: also check the registry
    contract (:func:`~.base.check_contract`) and that a profile takes the spec's input size
    (:meth:`check_input_size`). Device buffers are sized once for the largest profile.
    """

    def __init__(self, path: Union[str, Path], device: Optional[Device] = None,
                 onnx_sha256: Optional[str] = None, spec: Optional[ModelSpec] = None) -> None:
        self.source = str(path)
        self._closed = False
        self._buffers: Dict[str, Any] = {}
        self._hosts: Dict[str, Any] = {}
        self._allocator: Any = None
        self._dds: List[str] = []
        self._stream: Any = None
        self._active = 0  # a new context runs profile 0
        self._context: Optional[trt.IExecutionContext] = None
        self._engine: Optional[trt.ICudaEngine] = None
        self._runtime: Optional[trt.Runtime] = None
        _, features = detect()  # DependencyError naming where TensorRT comes from
        from ..cuda.driver import Device

        if not Path(path).is_file():
            raise EngineError(f"engine file not found: {path}")
        self._own_device = device is None
        self._device = Device(0) if device is None else device
        try:
            self._open(Path(path), onnx_sha256, features)
            if spec is not None:
                check_contract(self, spec)
                self.check_input_size(spec)
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------------------------------
    def _open(self, path: Path, onnx_sha256: Optional[str], features: TrtFeatures) -> None:
        from ..cuda.driver import Stream
        from ..engine_meta import check_runnable

        info = self._device.info
        self.metadata = check_runnable(path, str(features.version), info.compute_capability,
                                       info.name, onnx_sha256=onnx_sha256)
        self._device.make_current()
        try:
            self._runtime = make_runtime(self.metadata, features)
        except EngineError as exc:
            raise EngineError(f"{path}: {exc}") from None
        try:
            self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        except (RuntimeError, TypeError, ValueError) as exc:
            log.debug("deserialize_cuda_engine raised %r", exc)
            self._engine = None
        if self._engine is None:
            raise EngineError(f"{path}: TensorRT {features.version} cannot deserialize it "
                              "(corrupt, or not a TensorRT engine); rebuild: "
                              f"{self.metadata.build_command}")
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
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.is_shape_inference_io(name):
                raise EngineError(f"{self.source}: shape tensor {name!r} is not supported")
            try:
                dtype = numpy_dtype(engine.get_tensor_dtype(name))
            except EngineError as exc:
                raise EngineError(f"{self.source}: tensor {name!r}: {exc}") from None
            spec = TensorSpec(name, as_shape(engine.get_tensor_shape(name)), dtype)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._inputs[name] = spec
            else:
                self._outputs[name] = spec
        profiles = []
        for index in range(max(int(engine.num_optimization_profiles), 1)):
            ranges: Dict[str, Range] = {}
            for name, spec in self._inputs.items():
                if all(d >= 0 for d in spec.shape):  # static: the profile is the shape
                    ranges[name] = (spec.shape, spec.shape)
                else:
                    lo, _, hi = engine.get_tensor_profile_shape(name, index)
                    ranges[name] = (as_shape(lo), as_shape(hi))
            profiles.append(ranges)
        self._profiles = ProfileSet(self.source, tuple(profiles))

    def _allocate(self) -> None:
        """Device buffers for every tensor at its largest size over all profiles (no host
        buffers: the host paths allocate theirs on first use)."""
        from ..cuda.driver import DeviceBuffer

        sizes: Dict[str, int] = {}
        dds = set()
        for index, profile in enumerate(self._profiles.profiles):
            self._use_profile(index, self._stream)
            for name, (_, hi) in profile.items():
                self._set_shape(name, hi)
            for name, spec in {**self._inputs, **self._outputs}.items():
                shape = profile[name][1] if name in self._inputs else \
                    as_shape(self._ctx.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    dds.add(name)  # size known only after execution
                    continue
                sizes[name] = max(sizes.get(name, 1), volume(shape) * spec.dtype.itemsize)
        self._use_profile(0, self._stream)
        self._stream.synchronize()  # profile switches are stream-ordered; runs use other streams
        self._dds = [n for n in self._outputs if n in dds]
        for name, nbytes in sizes.items():
            if name not in dds:
                self._buffers[name] = DeviceBuffer(nbytes)
        if self._dds:
            self._allocator = _output_allocator()
            for name in self._dds:
                if not self._ctx.set_output_allocator(name, self._allocator):
                    raise EngineError(f"{self.source}: cannot set an output allocator for {name}")
        log.info("%s: %s -> %s, profiles %s", self.source, list(self._inputs),
                 list(self._outputs), self._profiles.describe())

    def _use_profile(self, index: int, stream: Stream) -> None:
        """Switch the context to optimisation profile ``index`` (in ``stream`` order)."""
        if index == self._active:
            return
        if not self._ctx.set_optimization_profile_async(index, stream.handle):
            raise EngineError(f"{self.source}: TensorRT refused optimisation profile {index}")
        self._active = index

    def _set_shape(self, name: str, shape: Sequence[int]) -> None:
        import tensorrt as trt

        if not self._ctx.set_input_shape(name, trt.Dims([int(d) for d in shape])):
            raise EngineError(f"{self.source}: TensorRT refused shape {list(shape)} for {name} "
                              f"in profile {self._active}")

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

    @property
    def closed(self) -> bool:
        return self._closed or self._context is None

    # ---------------------------------------------------------------------------------------
    @property
    def inputs(self) -> Dict[str, TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Dict[str, TensorSpec]:
        return self._outputs

    @property
    def profiles(self) -> ProfileSet:
        """Every optimisation profile of the engine."""
        return self._profiles

    @property
    def active_profile(self) -> int:
        """The optimisation profile the last run used."""
        return self._active

    @property
    def max_batch(self) -> int:
        """The largest batch of the first input any profile takes."""
        return self._profiles.max_batch

    def profile(self, name: str) -> Range:
        """(min, max) shapes of input ``name`` over all optimisation profiles."""
        return self._profiles.bounds(name)

    def check_input_size(self, spec: ModelSpec) -> None:
        """:class:`EngineError` (one line, with the command that rebuilds the engine for it)
        unless some profile takes ``spec``'s input at its configured (W, H)."""
        problem = size_mismatch(self._profiles, spec.input_name, spec.preprocess.input_size,
                                spec.name, self.metadata.role, self.metadata.build_command)
        if problem:
            raise EngineError(problem)

    @property
    def pinned_bytes(self) -> int:
        """Page-locked host memory this engine holds (only what the host paths used)."""
        return sum(int(buf.nbytes) for buf in self._hosts.values())

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

    def infer_device(self, shapes: Mapping[str, Sequence[int]], stream: Stream,
                     addresses: Optional[Mapping[str, int]] = None) -> Dict[str, Shape]:
        """Enqueue one run on ``stream`` (a :class:`~trt_pose_td.cuda.driver.Stream`).

        shapes: every input's shape (some profile must cover them all; the tightest is used);
        addresses: device pointers to use instead of the engine's own buffers (e.g. a slice of a
        crop batch). Inputs must be in place in stream order. Returns every output's shape.
        """
        self.check_open()
        if set(shapes) != set(self._inputs):
            raise EngineError(f"{self.source}: shapes for inputs {sorted(self._inputs)} "
                              f"expected, got {sorted(shapes)}")
        index = self._profiles.select(shapes)
        self._device.make_current()
        self._use_profile(index, stream)
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
        return as_shape(self._ctx.get_tensor_shape(name))

    def _host(self, name: str, nbytes: int) -> Any:
        """The pinned host buffer of tensor ``name``, allocated or grown to ``nbytes``."""
        from ..cuda.driver import PinnedBuffer

        host = self._hosts.get(name)
        if host is None or host.nbytes < nbytes:
            if host is not None:
                host.close()
            host = self._hosts[name] = PinnedBuffer(max(nbytes, 256))
        return host

    def fetch_outputs(self, stream: Stream, shapes: Mapping[str, Sequence[int]]
                      ) -> Dict[str, np.ndarray]:
        """Enqueue device -> pinned host copies of the outputs ``shapes`` names; the returned
        views are valid once ``stream`` has synchronized (and until the next fetch)."""
        views = {}
        for name, shape in shapes.items():
            dtype = self._outputs[name].dtype
            nbytes = volume(shape) * dtype.itemsize
            view = self._host(name, nbytes).array(dtype, tuple(shape))
            if nbytes:
                _download(view, self.device_ptr(name), stream)
            views[name] = view
        return views

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Host numpy in, host numpy out (copies through pinned buffers, one private stream)."""
        arrays = {name: np.ascontiguousarray(value) for name, value in feeds.items()}
        shapes = {name: arr.shape for name, arr in arrays.items()}
        self._profiles.select(shapes)  # refuse before staging anything
        self._device.make_current()
        for name, arr in arrays.items():
            host = self._host(name, arr.nbytes).array(arr.dtype, arr.shape)
            host[...] = arr
            self._buffers[name].upload(host, self._stream)
        out_shapes = self.infer_device(shapes, self._stream)
        views = self.fetch_outputs(self._stream, out_shapes)
        self._stream.synchronize()
        return {name: view.copy() for name, view in views.items()}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._device.make_current()  # close() may run on a thread that never bound it
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


def _download(view: np.ndarray, src_ptr: int, stream: Stream) -> None:
    from ..cuda.driver import check, driver_api

    check(*driver_api().cuMemcpyDtoHAsync(int(view.ctypes.data), int(src_ptr), view.nbytes,
                                          stream.handle))
