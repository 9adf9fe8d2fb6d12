"""The real :class:`TrtEngine` code on a CPU, with TensorRT and the CUDA driver replaced by
recording stand-ins (labelled as such: nothing here runs TensorRT or a GPU; the ``gpu``/``trt``
tests in test_tensorrt.py do).

What these stand-ins can show is the engine's own logic: which optimisation profile a run
selects, which buffers it allocates and when (pinned host memory only for the host path), the
sidecar-driven runtime set-up, the input-size check at load, the output allocator and the CUDA
context at close. Every test runs twice: against TensorRT 8.5 as JetPack 5 ships it, with numpy
1.24 (:mod:`.fake_trt`: ``trt.nptype`` raises for every type, the binding API still there, pybind11
argument checks), and against TensorRT 10.3 (the binding API gone), so a call that only one of
them takes fails here.
"""

from __future__ import annotations

import sys
import threading
import types
from typing import List, Tuple

import numpy as np
import pytest

from trt_pose_td.cuda import driver
from trt_pose_td.cuda.driver import CudaError
from trt_pose_td.engine_meta import EngineMetadata, write_metadata
from trt_pose_td.engines import tensorrt as trt_engine
from trt_pose_td.engines import trt_api
from trt_pose_td.errors import EngineError
from trt_pose_td.models import get_spec

from .fake_trt import Engine, fake_tensorrt, runtime_class

INPUT, OUTPUT = "input", "output"
#: The stand-in TensorRT versions every test runs against.
RELEASES = {"trt8.5+numpy1.24": "8.5", "trt10.3": "10.3"}
_bound = threading.local()  # the device whose context the calling thread has bound


def _need_context(what: str) -> None:
    """What the CUDA driver does without a current context: CUDA_ERROR_INVALID_CONTEXT."""
    if getattr(_bound, "device", None) is None:
        raise CudaError(f"CUDA call failed: CUDA_ERROR_INVALID_CONTEXT ({what})")


class Buffer:
    """Device and pinned buffers in host memory, counted; allocating and freeing need a bound
    context, as cuMemAlloc / cuMemFree do."""

    made: List[Tuple[str, int]] = []

    def __init__(self, nbytes: int, kind: str = "device") -> None:
        _need_context(f"{kind} allocation")
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
        _need_context(f"free of {self.kind} memory")


class Pinned(Buffer):
    def __init__(self, nbytes: int) -> None:
        super().__init__(nbytes, "pinned")


class Stream:
    handle = 7

    def synchronize(self):
        _need_context("stream synchronize")

    def close(self):
        _need_context("stream destroy")


class Device:
    info = types.SimpleNamespace(name="Stand-in GPU", compute_capability="8.7")

    def make_current(self):
        _bound.device = self

    def close(self):
        pass


@pytest.fixture(params=sorted(RELEASES), ids=sorted(RELEASES))
def standin(request, monkeypatch, tmp_path):
    """make(static input shape, profiles, role, spec, dds=(), dtypes=None) -> TrtEngine on the
    stand-ins of one TensorRT release (``make.trt``: the fake module)."""
    trt = fake_tensorrt(RELEASES[request.param])
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_api, "_LOGGER", None)
    monkeypatch.setattr(trt_api, "_PLUGINS", False)
    for name, value in (("Stream", Stream), ("DeviceBuffer", Buffer), ("PinnedBuffer", Pinned),
                        ("Device", Device)):
        monkeypatch.setattr(driver, name, value)
    monkeypatch.setattr(trt_engine, "_download", lambda view, ptr, stream: None)
    monkeypatch.setattr(_bound, "device", None, raising=False)
    Buffer.made = []

    def make(static, profiles, role="pose", spec=None, command="trt-pose-td build --only pose",
             dds=(), dtypes=None):
        outputs = tuple(spec.outputs.values()) if spec is not None else (OUTPUT, *dds)
        engine = Engine(trt, static, profiles, (INPUT, *outputs), dds, dtypes)
        trt.Runtime = runtime_class(trt, engine)
        path = tmp_path / f"{role}.engine"
        path.write_bytes(b"plan")
        write_metadata(EngineMetadata("m", role, "0" * 64, "fp32", trt.__version__,
                                      "Stand-in GPU", "8.7", command), path)
        return trt_engine.TrtEngine(path, Device(), spec=spec)

    make.trt = trt
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


def test_the_stand_ins_differ_as_the_releases_do(standin):
    """Controls for the fakes themselves: 8.5 + numpy 1.24 raises in ``trt.nptype`` for every
    type (so any call of it fails these tests), 10.3 has no binding-index API and no
    swapped-argument profile query."""
    trt = standin.trt
    engine = Engine(trt, (-1, 3, 64, 32), _pose_profiles((1, 8)), (INPUT, OUTPUT))
    if trt.release == "8.5":
        for member in trt.DataType.__members__.values():
            with pytest.raises(AttributeError, match="module 'numpy' has no attribute 'bool'"):
                trt.nptype(member)
        assert engine.get_profile_shape(0, INPUT)[2] == (8, 3, 64, 32)
    else:
        assert trt.nptype(trt.float32) is np.float32
        for old in ("num_bindings", "get_binding_shape", "binding_is_input", "get_profile_shape"):
            assert not hasattr(engine, old)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        engine.get_tensor_profile_shape(0, INPUT)  # the old (profile, binding) order


def test_every_io_type_numpy_holds_loads_and_the_others_are_refused(standin):
    """Each DataType of this release as an output's type: numpy's dtype from our own map, or one
    line naming the engine, the tensor and the fix."""
    for name in standin.trt.DataType.__members__:
        if name in trt_api.NUMPY_DTYPES:
            engine = standin((-1, 3, 64, 32), _pose_profiles((1, 2)), dtypes={OUTPUT: name})
            assert engine.outputs[OUTPUT].dtype == np.dtype(trt_api.NUMPY_DTYPES[name])
            engine.close()
            continue
        with pytest.raises(EngineError) as info:
            standin((-1, 3, 64, 32), _pose_profiles((1, 2)), dtypes={OUTPUT: name})
        message = str(info.value)
        assert "\n" not in message and f"pose.engine: tensor 'output': TensorRT type {name}" \
            in message and message.endswith("rebuild the engine with float32/float16 inputs "
                                            "and outputs")


def test_output_sized_by_data_gets_memory_from_the_allocator(standin):
    """An output whose shape only the run knows (NonMaxSuppression's): TensorRT 8.5 asks
    ``reallocate_output``, 10.x ``reallocate_output_async``; both take the returned address as
    an integer (a capsule or None would be a null pointer and a failed run)."""
    engine = standin((-1, 3, 64, 32), _pose_profiles((1, 4)), dds=("boxes",))
    assert "boxes" not in engine._buffers and engine.capacity("boxes") == 0
    shapes = engine.infer_device({INPUT: (2, 3, 64, 32)}, Stream())
    ctx = engine._context
    assert ctx.calls[-1] == ("execute", 0, (2, 3, 64, 32))
    assert shapes == {OUTPUT: (2, 4, 32, 16), "boxes": (3, 4)}
    assert engine.device_ptr("boxes") == engine._allocator.buffers["boxes"].ptr
    assert engine.capacity("boxes") == 256  # 3 x 4 float32 = 48 bytes, at least 256 allocated
    ctx.dds_rows = 100
    assert engine.infer_device({INPUT: (1, 3, 64, 32)}, Stream())["boxes"] == (100, 4)
    assert engine.capacity("boxes") == 1600  # grown


def test_close_binds_the_cuda_context_on_its_own_thread(standin):
    """A service stops on another thread than the one that opened the engine: without binding
    the context first, cuStreamSynchronize / cuMemFree fail (CUDA_ERROR_INVALID_CONTEXT) and the
    memory stays allocated."""
    engine = standin((-1, 3, 64, 32), _pose_profiles((1, 2)))
    errors: List[BaseException] = []

    def close():
        try:
            engine.close()
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    worker = threading.Thread(target=close)
    worker.start()
    worker.join()
    assert errors == [] and engine._buffers == {} and engine._context is None
