"""Recording stand-ins for the ``tensorrt`` module as TensorRT 8.5 (JetPack 5) and 10.x behave.

TEST DOUBLES: nothing here runs TensorRT or a GPU. They drive the real
:class:`~trt_pose_td.engines.tensorrt.TrtEngine` on a CPU, and reproduce the behaviours that differ
between the versions and that the type stubs (``tests/build/test_trt_typecheck.py``) cannot see:

- ``nptype``: TensorRT 8.5's builds its table with ``np.bool`` on every call, so with numpy
  1.24-1.26 it raises ``AttributeError: module 'numpy' has no attribute 'bool'`` for EVERY type
  (checked with the real 8.5.3.1 wheel and numpy 1.24.4: FLOAT, HALF, INT8, INT32, BOOL, UINT8
  all raise; TensorRT #2557, fixed in 8.6). numpy 2 re-added ``np.bool``, so the 8.5 stand-in
  evaluates it against :class:`Numpy124`, numpy as 1.24-1.26 present it. 10.x uses ``np.bool_``.
- ``DataType`` members: 8.5 has six, 10.3 ten, 10.16 twelve (the lists below; the stub test
  checks them against the stubs' ``class DataType``).
- The binding-index API (``num_bindings``, ``get_binding_shape``, ``binding_is_input``,
  ``get_profile_shape(profile_index, binding)``, ``set_binding_shape``) exists in 8.5 (deprecated)
  and is gone in 10 (AttributeError, TensorRT #4216 / #3948).
- pybind11 argument checking: ``get_tensor_profile_shape(name: str, profile_index: int)`` with
  the arguments swapped (the old ``get_profile_shape`` order) raises TypeError;
  ``set_input_shape`` takes only ``Dims`` in 8.5 (tuple and list overloads from 10).
- pybind11 objects take no new attributes: ``Runtime.engine_host_code_allowed`` exists only
  from 10, setting it on 8.5 raises AttributeError.
- ``IOutputAllocator``: 8.5 calls ``reallocate_output(name, memory, size, alignment)`` only; 10.x
  calls ``reallocate_output_async(..., stream)``. Both cast the Python return value to an address
  (``ptr.cast<size_t>()`` in the bindings' ``PyOutputAllocator``): an int, anything else is a
  null pointer and a failed run.
"""

from __future__ import annotations

import types
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

#: DataType members per TensorRT version, as the stubs list them.
DATA_TYPES = {
    "8.5": ("FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8"),
    "10.3": ("FLOAT", "HALF", "BF16", "INT8", "INT32", "INT64", "BOOL", "UINT8", "FP8", "INT4"),
    "10.16": ("FLOAT", "HALF", "BF16", "INT8", "INT32", "INT64", "BOOL", "UINT8", "FP8", "INT4",
              "FP4", "E8M0"),
}
#: Full version strings the stand-ins report.
VERSIONS = {"8.5": "8.5.2.2", "10.3": "10.3.0.26", "10.16": "10.16.1.11"}
#: The module-level aliases (``trt.float32`` ...) each version has.
_ALIASES = {"float32": "FLOAT", "float16": "HALF", "int8": "INT8", "int32": "INT32",
            "bool": "BOOL", "uint8": "UINT8", "int64": "INT64", "bfloat16": "BF16"}
_EXPIRED = ("bool", "int", "float", "complex", "object", "str")


class Numpy124(types.ModuleType):
    """numpy as 1.24-1.26 present it: the aliases expired in 1.24 (``np.bool``, ``np.int`` ...)
    raise AttributeError with numpy's message; everything else is the installed numpy."""

    def __init__(self) -> None:
        super().__init__("numpy")

    def __getattr__(self, name: str) -> Any:
        if name in _EXPIRED:
            raise AttributeError(f"module 'numpy' has no attribute '{name}'.\n`np.{name}` was a "
                                 f"deprecated alias for the builtin `{name}`.")
        return getattr(np, name)


def _typed(func: str, *pairs: Tuple[Any, Any]) -> None:
    """pybind11's overload resolution: TypeError unless every value has its declared type."""
    for value, kind in pairs:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"{func}(): incompatible function arguments: got "
                            f"{[type(v).__name__ for v, _ in pairs]}")


class Dims(tuple):
    """``trt.Dims``: built from a list (or tuple) of ints."""

    def __new__(cls, shape: Sequence[int] = ()) -> Dims:
        return super().__new__(cls, (int(d) for d in shape))


class IOutputAllocator:
    def __init__(self) -> None:
        pass


class EnumMember:
    """A pybind11 enum member: ``.name``, ``.value``, ``int()``, ``str()`` is ``DataType.FLOAT``."""

    def __init__(self, enum: str, name: str, value: int) -> None:
        self.enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    def __str__(self) -> str:
        return f"{self.enum}.{self.name}"

    __repr__ = __str__


def _enum(enum: str, names: Sequence[str]) -> types.SimpleNamespace:
    members = {name: EnumMember(enum, name, i) for i, name in enumerate(names)}
    return types.SimpleNamespace(__members__=members, **members)


def fake_tensorrt(release: str, numpy_module: Any = None) -> types.ModuleType:
    """The stand-in ``tensorrt`` module of ``release`` ("8.5", "10.3" or "10.16"); 8.5 evaluates
    ``nptype`` against ``numpy_module`` (default :class:`Numpy124`)."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = VERSIONS[release]
    trt.release = release
    trt.DataType = _enum("DataType", DATA_TYPES[release])
    for alias, member in _ALIASES.items():
        if member in trt.DataType.__members__:
            setattr(trt, alias, trt.DataType.__members__[member])
    trt.nptype = _nptype_85(trt, numpy_module or Numpy124()) if release == "8.5" else \
        _nptype_10(trt)
    trt.TensorIOMode = _enum("TensorIOMode", ("NONE", "INPUT", "OUTPUT"))
    trt.LayerInformationFormat = _enum("LayerInformationFormat", ("ONELINE", "JSON"))
    trt.Dims = Dims
    trt.ILogger = type("ILogger", (), {"__init__": lambda self: None})
    trt.IOutputAllocator = IOutputAllocator
    trt.init_libnvinfer_plugins = lambda logger, namespace: True
    return trt


def _nptype_85(trt: Any, np_: Any) -> Any:
    def nptype(trt_type: Any) -> Any:  # TensorRT 8.5: the table, np.bool included, every call
        mapping = {trt.float32: np_.float32, trt.float16: np_.float16, trt.int8: np_.int8,
                   trt.int32: np_.int32, trt.bool: np_.bool, trt.uint8: np_.uint8}
        if trt_type in mapping:
            return mapping[trt_type]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
    return nptype


def _nptype_10(trt: Any) -> Any:
    def nptype(trt_type: Any) -> Any:
        mapping = {trt.float32: np.float32, trt.float16: np.float16, trt.int8: np.int8,
                   trt.int32: np.int32, trt.int64: np.int64, trt.bool: np.bool_,
                   trt.uint8: np.uint8}
        if trt_type in mapping:
            return mapping[trt_type]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
    return nptype


#: How a version-compatible plan starts here: TensorRT loads the lean runtime embedded in it
#: only when ``engine_host_code_allowed`` is set, else deserialization returns None.
VC_PLAN = b"vc-plan"


def runtime_class(trt: Any, engine: Any) -> type:
    """``trt.Runtime`` whose ``deserialize_cuda_engine`` returns ``engine`` (None for a
    :data:`VC_PLAN` unless host code is allowed); like a pybind11 object it takes no attribute
    its version lacks."""
    slots = ["DLA_core", "_logger"] + (["engine_host_code_allowed"] if trt.release != "8.5"
                                       else [])

    class Runtime:
        __slots__ = tuple(slots)
        num_DLA_cores = 0

        def __init__(self, logger: Any) -> None:
            self._logger = logger
            if "engine_host_code_allowed" in slots:
                self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, blob: bytes) -> Any:
            _typed("deserialize_cuda_engine", (blob, (bytes, bytearray, memoryview)))
            if bytes(blob).startswith(VC_PLAN) and not getattr(
                    self, "engine_host_code_allowed", False):
                return None
            return engine

    return Runtime


class Engine:
    """An ``ICudaEngine``: input ``names[0]`` with ``profiles`` (name -> (min, max) per profile);
    each output is the input halved in H and W with 4 channels, except ``dds`` outputs, whose
    shape (persons, 4) is known only after a run (set by :attr:`Context.dds_rows`)."""

    def __init__(self, trt: Any, static: Tuple[int, ...], profiles: List[Dict[str, Any]],
                 names: Sequence[str], dds: Sequence[str] = (),
                 dtypes: Optional[Dict[str, str]] = None) -> None:
        self.trt, self.static, self.profiles, self.names = trt, static, profiles, tuple(names)
        self.dds, self.dtypes = tuple(dds), dict(dtypes or {})
        self.num_io_tensors = len(self.names)
        self.num_optimization_profiles = len(profiles)
        if trt.release == "8.5":  # the binding-index API, removed in TensorRT 10
            self.num_bindings = len(self.names)
            self.get_binding_index = self.names.index
            self.binding_is_input = lambda i: i == 0
            self.get_binding_shape = lambda i: self.get_tensor_shape(self.names[i])
            self.get_profile_shape = self._profile_shape_85

    def _profile_shape_85(self, profile_index: int, binding: Any) -> List[Dims]:
        _typed("get_profile_shape", (profile_index, int), (binding, (int, str)))
        name = self.names[binding] if isinstance(binding, int) else binding
        return self.get_tensor_profile_shape(name, profile_index)

    def _name(self, func: str, name: Any) -> str:
        _typed(func, (name, str))
        if name not in self.names:
            raise RuntimeError(f"{func}: no tensor named {name!r}")
        return name

    def get_tensor_name(self, index: int) -> str:
        _typed("get_tensor_name", (index, int))
        return self.names[index]

    def is_shape_inference_io(self, name: str) -> bool:
        self._name("is_shape_inference_io", name)
        return False

    def get_tensor_dtype(self, name: str) -> Any:
        return self.trt.DataType.__members__[self.dtypes.get(self._name("get_tensor_dtype",
                                                                        name), "FLOAT")]

    def get_tensor_shape(self, name: str) -> Dims:
        if self._name("get_tensor_shape", name) == self.names[0]:
            return Dims(self.static)
        return Dims((-1, 4) if name in self.dds else (self.static[0], 4, -1, -1))

    def get_tensor_mode(self, name: str) -> Any:
        modes = self.trt.TensorIOMode
        return modes.INPUT if self._name("get_tensor_mode", name) == self.names[0] else \
            modes.OUTPUT

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> List[Dims]:
        _typed("get_tensor_profile_shape", (name, str), (profile_index, int))
        lo, hi = self.profiles[profile_index][self._name("get_tensor_profile_shape", name)]
        return [Dims(lo), Dims(lo), Dims(hi)]

    def create_execution_context(self) -> Context:
        return Context(self)

    #: What the engine inspector returns (JSON text); None: no inspector; an exception: raised.
    inspector_output: Any = '{"Layers": []}'

    def create_engine_inspector(self) -> Any:
        if self.inspector_output is None:
            return None
        output, trt = self.inspector_output, self.trt

        class EngineInspector:
            def get_engine_information(self, format: Any) -> str:
                _typed("get_engine_information", (format, EnumMember))
                assert format is trt.LayerInformationFormat.JSON
                if isinstance(output, BaseException):
                    raise output
                return output

        return EngineInspector()


class Context:
    """An ``IExecutionContext`` that checks shapes against its active profile and addresses at
    execution, as TensorRT does, and records what it was asked (``calls``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.trt, self.profile = engine, engine.trt, 0
        self.calls: List[Tuple[Any, ...]] = []
        self.shapes: Dict[str, Tuple[int, ...]] = {}
        self.addresses: Dict[str, int] = {}
        self.allocators: Dict[str, Any] = {}
        self.dds_rows = 3
        if self.trt.release == "8.5":
            self.set_binding_shape = lambda i, dims: self.set_input_shape(engine.names[i], dims)

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        _typed("set_optimization_profile_async", (profile_index, int), (stream_handle, int))
        self.calls.append(("profile", profile_index))
        self.profile = profile_index
        return True

    def set_input_shape(self, name: str, shape: Any) -> bool:
        kinds = Dims if self.trt.release == "8.5" else (Dims, tuple, list)
        _typed("set_input_shape", (name, str), (shape, kinds))
        lo, hi = self.engine.profiles[self.profile][name]
        self.shapes[name] = tuple(shape)
        return len(shape) == len(lo) and all(a <= d <= b for d, a, b in zip(shape, lo, hi))

    def get_tensor_shape(self, name: str) -> Dims:
        if name in self.engine.dds:
            return Dims((-1, 4))
        n, _, h, w = self.shapes[self.engine.names[0]]
        return Dims((n, 4, h // 2, w // 2))

    def set_tensor_address(self, name: str, memory: int) -> bool:
        _typed("set_tensor_address", (name, str), (memory, int))
        self.calls.append(("address", name, memory))
        self.addresses[name] = memory
        return True

    def set_output_allocator(self, name: str, output_allocator: Any) -> bool:
        _typed("set_output_allocator", (name, str), (output_allocator, IOutputAllocator))
        self.allocators[name] = output_allocator
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        _typed("execute_async_v3", (stream_handle, int))
        for name in self.engine.names:
            if name not in self.addresses and name not in self.allocators:
                self.calls.append(("error", f"tensor {name} has no address"))
                return False
        for name, allocator in self.allocators.items():
            size = self.dds_rows * 4 * 4
            if self.trt.release == "8.5":
                ptr = allocator.reallocate_output(name, 0, size, 256)
            else:
                ptr = allocator.reallocate_output_async(name, 0, size, 256, stream_handle)
            if not isinstance(ptr, int) or isinstance(ptr, bool) or ptr == 0:
                self.calls.append(("error", f"reallocate_output for {name} returned {ptr!r}"))
                return False
            allocator.notify_shape(name, Dims((self.dds_rows, 4)))
        self.calls.append(("execute", self.profile, self.shapes[self.engine.names[0]]))
        return True
