"""The real :class:`TrtEngine` code on a CPU, with TensorRT and the CUDA driver replaced by
recording stand-ins (labelled as such: nothing here runs TensorRT or a GPU; the ``gpu``/``trt``
tests in test_tensorrt.py do).

What these stand-ins can show is the engine's own logic: which optimisation profile a run
selects, which buffers it allocates and when (pinned host memory only for the host path), the
sidecar-driven runtime set-up, and the input-size check at load.
"""

from __future__ import annotations

import sys
import types
from typing import Dict, List, Tuple

import numpy as np
import pytest

from trt_pose_td import trt_api
from trt_pose_td.cuda import driver
from trt_pose_td.engine_meta import EngineMetadata, write_metadata
from trt_pose_td.engines import tensorrt as trt_engine
from trt_pose_td.errors import EngineError
from trt_pose_td.models import get_spec

Profiles = List[Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]]]
INPUT, OUTPUT = "input", "output"


class StandinEngine:
    """An ``ICudaEngine``: input ``INPUT`` with ``profiles``; each output is the input halved
    in H and W with 4 channels."""

    def __init__(self, static: Tuple[int, ...], profiles: Profiles,
                 outputs: Tuple[str, ...] = (OUTPUT,)) -> None:
        self.static, self.profiles, self.names = static, profiles, (INPUT, *outputs)
        self.num_io_tensors = len(self.names)
        self.num_optimization_profiles = len(profiles)

    def get_tensor_name(self, i):
        return self.names[i]

    def is_shape_inference_io(self, name):
        return False

    def get_tensor_dtype(self, name):
        return "float32"

    def get_tensor_shape(self, name):
        return self.static if name == INPUT else (self.static[0], 4, -1, -1)

    def get_tensor_mode(self, name):
        return "in" if name == INPUT else "out"

    def get_tensor_profile_shape(self, name, index):
        lo, hi = self.profiles[index][name]
        return lo, lo, hi

    def create_execution_context(self):
        return StandinContext(self)


class StandinContext:
    """An ``IExecutionContext`` that checks shapes against its active profile, as TensorRT
    does, and records what it was asked."""

    def __init__(self, engine: StandinEngine) -> None:
        self.engine, self.profile, self.calls = engine, 0, []
        self.shapes: Dict[str, Tuple[int, ...]] = {}

    def set_optimization_profile_async(self, index, stream):
        self.calls.append(("profile", index))
        self.profile = index
        return True

    def set_input_shape(self, name, dims):
        lo, hi = self.engine.profiles[self.profile][name]
        shape = tuple(dims)
        self.shapes[name] = shape
        return all(a <= d <= b for d, a, b in zip(shape, lo, hi))

    def get_tensor_shape(self, name):
        n, _, h, w = self.shapes[INPUT]
        return (n, 4, h // 2, w // 2)

    def set_tensor_address(self, name, ptr):
        self.calls.append(("address", name, ptr))

    def execute_async_v3(self, stream):
        self.calls.append(("execute", self.profile, self.shapes[INPUT]))
        return True


class Buffer:
    """Device and pinned buffers in host memory, counted."""

    made: List[Tuple[str, int]] = []

    def __init__(self, nbytes: int, kind: str = "device") -> None:
        self.nbytes, self.kind = int(nbytes), kind
        self.mem = np.zeros(self.nbytes, np.uint8)
        self.ptr = self.host_ptr = int(self.mem.ctypes.data)
        Buffer.made.append((kind, self.nbytes))

    def array(self, dtype, shape):
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self.mem[:n].view(dtype).reshape(shape)

    def upload(self, host, stream, offset=0):
        self.mem[offset:offset + host.nbytes] = host.reshape(-1).view(np.uint8)

    def close(self):
        pass


class Pinned(Buffer):
    def __init__(self, nbytes: int) -> None:
        super().__init__(nbytes, "pinned")


class Stream:
    handle = 7

    def synchronize(self):
        pass

    def close(self):
        pass


class Device:
    info = types.SimpleNamespace(name="Stand-in GPU", compute_capability="8.7")

    def make_current(self):
        pass

    def close(self):
        pass


@pytest.fixture
def standin(monkeypatch, tmp_path):
    """make(static input shape, profiles, role, spec) -> TrtEngine on the stand-ins."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0.26"
    trt.ILogger = type("ILogger", (), {"__init__": lambda self: None})
    trt.init_libnvinfer_plugins = lambda logger, ns: True
    trt.nptype = lambda dtype: np.dtype(dtype).type
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in")
    trt.Dims = tuple
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_api, "_LOGGER", None)
    monkeypatch.setattr(trt_api, "_PLUGINS", False)
    for name, value in (("Stream", Stream), ("DeviceBuffer", Buffer), ("PinnedBuffer", Pinned),
                        ("Device", Device)):
        monkeypatch.setattr(driver, name, value)
    monkeypatch.setattr(trt_engine, "_download", lambda view, ptr, stream: None)
    Buffer.made = []

    def make(static, profiles, role="pose", spec=None, command="trt-pose-td build --only pose"):
        outputs = tuple(spec.outputs.values()) if spec is not None else (OUTPUT,)
        engine = StandinEngine(static, profiles, outputs)

        class Runtime:
            num_DLA_cores = 0

            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, blob):
                return engine

        trt.Runtime = Runtime
        path = tmp_path / f"{role}.engine"
        path.write_bytes(b"plan")
        write_metadata(EngineMetadata("m", role, "0" * 64, "fp32", "10.3.0.26", "Stand-in GPU",
                                      "8.7", command), path)
        return trt_engine.TrtEngine(path, Device(), spec=spec)

    return make


def _pose_profiles(*batches):
    return [{INPUT: ((lo, 3, 64, 32), (hi, 3, 64, 32))} for lo, hi in batches]


def test_each_run_takes_the_tightest_profile_that_covers_it(standin):
    engine = standin((-1, 3, 64, 32), _pose_profiles((1, 8), (1, 2)))
    ctx = engine._context
    assert engine.max_batch == 8 and engine.profile(INPUT) == ((1, 3, 64, 32), (8, 3, 64, 32))
    ctx.calls.clear()
    for batch, expected in ((2, 1), (5, 0), (1, 1), (8, 0)):
        engine.infer_device({INPUT: (batch, 3, 64, 32)}, Stream())
        assert ctx.calls[-1] == ("execute", expected, (batch, 3, 64, 32))
        assert engine.active_profile == expected
    assert [c for c in ctx.calls if c[0] == "profile"] == [("profile", 1), ("profile", 0),
                                                           ("profile", 1), ("profile", 0)]
    with pytest.raises(EngineError, match=r"outside the engine's profiles \(input "
                                          r"\[1, 3, 64, 32\]\.\.\[8, 3, 64, 32\] \| "):
        engine.infer_device({INPUT: (9, 3, 64, 32)}, Stream())


def test_device_buffers_fit_the_largest_profile_and_pinned_memory_only_the_host_path(standin):
    engine = standin((-1, 3, 64, 32), _pose_profiles((1, 2), (1, 8)))
    item = 3 * 64 * 32 * 4
    assert sorted(Buffer.made) == [("device", 8 * 4 * 32 * 16 * 4), ("device", 8 * item)]
    crops = Buffer(16 * item)
    engine.infer_device({INPUT: (6, 3, 64, 32)}, Stream(), {INPUT: crops.ptr + 3 * item})
    assert engine.pinned_bytes == 0          # the GPU pipeline's path: no pinned buffers
    assert not [k for k, _ in Buffer.made if k == "pinned"]
    x = np.ones((3, 3, 64, 32), np.float32)
    out = engine.infer({INPUT: x})[OUTPUT]
    assert out.shape == (3, 4, 32, 16)
    assert engine.pinned_bytes == x.nbytes + out.nbytes  # allocated by the host path, on use
    np.testing.assert_array_equal(engine._buffers[INPUT].array(np.float32, x.shape), x)


def test_detector_engine_built_for_another_size_is_refused_at_load(standin):
    spec = get_spec("rtmdet_nano_person_raw").with_input_size((416, 416))
    profiles = [{INPUT: ((1, 3, 320, 320), (1, 3, 320, 320))}]
    static = (-1, 3, -1, -1)
    with pytest.raises(EngineError) as info:
        standin(static, profiles, "detector", spec,
                "trt-pose-td build --only detector --det-size 320x320 --precision fp16")
    message = str(info.value)
    assert "\n" not in message
    assert "takes rtmdet_nano_person_raw input input at 320x320, the pipeline runs it at " \
        "416x416" in message
    assert message.endswith("rebuild it: trt-pose-td build --only detector --precision fp16 "
                            "--det-size 416x416 (or run with --det-size 320x320)")
    ok = standin(static, [{INPUT: ((1, 3, 416, 416), (1, 3, 416, 416))}], "detector", spec)
    ok.check_input_size(spec)
