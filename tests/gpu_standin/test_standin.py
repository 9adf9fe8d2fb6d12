"""The stand-in itself: it must fail where a GPU would (or worse), or the pipeline tests on it
prove nothing. No models except the engine check (the packaged keypoint model)."""

from __future__ import annotations

import numpy as np
import pytest

from tests import gpu_standin
from tests.gpu_standin.driver import DeviceBuffer, Event, MappedBuffer, PinnedBuffer, Stream
from trt_pose_td.cuda import twins
from trt_pose_td.cuda.driver import CudaError
from trt_pose_td.errors import EngineError


@pytest.fixture
def machine(monkeypatch):
    return gpu_standin.install(monkeypatch)


def _staged(values):
    """A pinned (host-only) copy of ``values``."""
    view = PinnedBuffer(values.nbytes).array(values.dtype, values.shape)
    view[...] = values
    return view


def test_pointers_outside_a_live_device_allocation_raise(machine):
    buf = DeviceBuffer(1000)
    assert machine.view(buf.ptr + 990, 10).tolist() == [0xFF] * 10  # poisoned, in range
    with pytest.raises(CudaError, match="ILLEGAL_ADDRESS.*1 bytes left"):
        machine.view(buf.ptr + 999, 2)
    pinned = PinnedBuffer(16)
    with pytest.raises(CudaError, match="ILLEGAL_ADDRESS"):  # host-only memory
        machine.view(pinned.host_ptr, 16)
    mapped = MappedBuffer(16)
    mapped.array(np.uint8, (16,))[:] = 7
    assert machine.view(mapped.device_ptr, 16).tolist() == [7] * 16  # zero-copy alias
    ptr = buf.ptr
    for b in (buf, pinned, mapped):
        b.close()
    with pytest.raises(CudaError, match="freed"):
        machine.view(ptr, 1)
    assert machine.live() == []


def test_streams_run_lazily_and_waits_order_them(machine):
    data = np.arange(64, dtype=np.uint8)
    producer, consumer = Stream(), Stream()
    buf, src = DeviceBuffer(64), _staged(data)
    out = PinnedBuffer(64)
    dst = out.array(np.uint8, (64,))
    buf.upload(src, producer)
    done = Event().record(producer)
    buf.download(dst, consumer)          # no wait: reads before the upload ran
    consumer.synchronize()
    assert (dst == 0xFF).all()
    consumer.wait(done)
    buf.download(dst, consumer)
    with pytest.raises(CudaError, match="NOT_READY"):
        done.elapsed_ms(done)
    consumer.synchronize()               # runs the producer up to the event first
    assert np.array_equal(dst, data) and done.elapsed_ms(done) == 0.0


def test_an_eager_stream_runs_at_enqueue_and_nested_waits_resolve(machine):
    a, b = Stream(), Stream()
    buf, src = DeviceBuffer(8), _staged(np.ones(8, np.uint8))
    a.eager = True
    buf.upload(src, a)                   # ran at enqueue: no synchronize needed
    assert machine.view(buf.ptr, 8).tolist() == [1] * 8
    a.eager = False
    b.enqueue(lambda: None, "work")
    a.wait(Event().record(b))            # a waits on b's first record ...
    b.wait(Event().record(a))            # ... and b's later work on a: legal, no cycle
    b.synchronize()
    assert a.done == a.enqueued and b.done == b.enqueued


def test_the_warp_launch_reads_the_frame_at_its_pitch(machine, sample_photo):
    import cv2

    from tests.gpu_standin.driver import Device

    frame = cv2.imread(str(sample_photo))
    h, w = frame.shape[:2]
    pitch = 3 * w + 64                   # padded rows: the launch must honour the pitch
    padded = np.zeros((h, pitch), np.uint8)
    padded[:, :3 * w] = frame.reshape(h, -1)
    affines = np.float32([[[0.5, 0, -10], [0, 0.5, -20]], [[1, 0, -300], [0, 1, -100]]])
    kernels, stream = gpu_standin.StandinKernels(Device()), Stream()
    src, staged = DeviceBuffer(padded.nbytes), _staged(padded)
    params, pstaged = DeviceBuffer(48), _staged(twins.warp_params(affines))
    out = DeviceBuffer(2 * 3 * 32 * 48 * 4)
    src.upload(staged, stream)
    params.upload(pstaged, stream)
    mean, std = (1.0, 2.0, 3.0), (2.0, 3.0, 4.0)
    with pytest.raises(ValueError, match="warp output needs"):  # the real host-side check
        kernels.warp(stream, src.ptr, (w, h), pitch, params.ptr, 2, out.ptr, (48, 32), mean,
                     std, out_capacity=out.nbytes - 4)
    kernels.warp(stream, src.ptr, (w, h), pitch, params.ptr, 2, out.ptr, (48, 32), mean, std,
                 "rgb", 5.0, np.float32, out.nbytes)
    stream.synchronize()
    got = machine.view(out.ptr, out.nbytes).view(np.float32).reshape(2, 3, 32, 48)
    want = twins.warp_batch_twin(frame, affines, (48, 32), mean, std, "rgb", 5.0)
    np.testing.assert_array_equal(got, want)


def test_the_engine_keeps_to_its_profile(machine):
    from trt_pose_td.assets import model_path
    from trt_pose_td.engines.onnxruntime import OrtEngine
    from trt_pose_td.models import get_spec

    ort = OrtEngine(model_path(get_spec("pp_tinypose_256x192"), progress=False))
    engine = gpu_standin.StandinEngine(ort, 2, (256, 192))
    crops = np.random.default_rng(0).normal(size=(2, 3, 256, 192)).astype(np.float32)
    assert engine.max_batch == 2 and engine.capacity("image") == crops.nbytes
    stream = Stream()
    with pytest.raises(EngineError, match="outside the engine's profile"):
        engine.infer_device({"image": (3, 3, 256, 192)}, stream)
    stream.close()
    out = engine.infer({"image": crops})
    want = ort.infer({"image": crops})
    assert all(np.array_equal(out[n], want[n]) for n in want)
    engine.close()
    ort.close()
    assert machine.live() == []
