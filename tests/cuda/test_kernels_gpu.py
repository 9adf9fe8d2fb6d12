"""The CUDA kernels against their numpy twins on a GPU (marker ``gpu``; skipped without one).

Fresh random frames, boxes (partly off the frame, up- and down-scaled) and heatmaps every case;
every output buffer is poisoned with NaN first, so an element the kernel fails to write shows up.
Bound: float32 max abs error <= 1e-3 (the twins reproduce the arithmetic, so 0 is expected).
"""

from __future__ import annotations

import numpy as np
import pytest

from trt_pose_td import geometry
from trt_pose_td.cuda import twins

pytestmark = pytest.mark.gpu

NAN32 = 0x7FC00000
NAN16X2 = 0x7E007E00


@pytest.fixture(scope="module")
def kit(cuda_device, tmp_path_factory):
    from trt_pose_td.cuda.driver import Stream
    from trt_pose_td.cuda.launchers import Kernels

    kernels = Kernels(cuda_device, tmp_path_factory.mktemp("kernels"))
    stream = Stream()
    yield kernels, stream
    stream.close()
    kernels.close()


def _device_copy(arr, stream):
    from trt_pose_td.cuda.driver import DeviceBuffer

    buf = DeviceBuffer(arr.nbytes)
    buf.upload(np.ascontiguousarray(arr), stream)
    return buf


def _download(buf, shape, dtype, stream):
    out = np.empty(shape, dtype)
    buf.download(out, stream)
    stream.synchronize()
    return out


def _random_affines(rng, w, h, n, out_size, aspect):
    x1, y1 = rng.uniform(-0.3 * w, w, n), rng.uniform(-0.3 * h, h, n)
    boxes = np.stack([x1, y1, x1 + rng.uniform(2, 1.2 * w, n),
                      y1 + rng.uniform(2, 1.2 * h, n)], 1)
    c, s = geometry.box_to_center_size(boxes, aspect, 1.25)
    return geometry.crop_affines(c, s, out_size)


@pytest.mark.parametrize("case", range(6))
def test_warp_kernel_equals_twin(kit, case):
    from trt_pose_td.cuda.driver import DeviceBuffer

    kernels, stream = kit
    rng = np.random.default_rng()  # fresh inputs every run
    h, w = int(rng.integers(31, 1100)), int(rng.integers(29, 1930))
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    n = (1, 3, 17, 40, 64, 2)[case]
    out_w, out_h = ((192, 256), (96, 128), (320, 320), (288, 384), (192, 256), (7, 5))[case]
    order = ("bgr", "rgb")[case % 2]
    dtype = (np.float32, np.float16)[case % 3 == 2]
    mean, std = rng.uniform(0, 255, 3), rng.uniform(1, 80, 3)
    border = float(rng.integers(0, 256))
    affines = _random_affines(rng, w, h, n, (out_w, out_h), out_w / out_h)
    params = twins.warp_params(affines)
    src, par = _device_copy(frame, stream), _device_copy(params, stream)
    out = DeviceBuffer(n * 3 * out_h * out_w * np.dtype(dtype).itemsize)
    out.fill_u32(NAN32 if dtype == np.float32 else NAN16X2, stream)
    kernels.warp(stream, src.ptr, (w, h), w * 3, par.ptr, n, out.ptr, (out_w, out_h), mean, std,
                 order, border, dtype, out.nbytes)
    got = _download(out, (n, 3, out_h, out_w), dtype, stream)
    ref = twins.warp_batch_twin(frame, affines, (out_w, out_h), mean, std, order, border, dtype)
    for buf in (src, par, out):
        buf.close()
    assert not np.isnan(got).any(), "kernel left output elements unwritten"
    # float32: <= 1e-3 absolute; float16 also allows one half-precision rounding step
    rtol = 2.0 ** -10 if dtype == np.float16 else 0.0
    np.testing.assert_allclose(got.astype(np.float32), ref.astype(np.float32), rtol=rtol,
                               atol=1e-3)


def test_cuda_preprocessor_and_argument_checks(kit):
    from trt_pose_td.cuda.launchers import CudaPreprocessor

    kernels, stream = kit
    rng = np.random.default_rng()
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    affines = _random_affines(rng, 640, 480, 5, (192, 256), 0.75)
    pre = CudaPreprocessor(kernels)
    try:
        got = pre.warp_batch(frame, affines, (192, 256), (1, 2, 3), (4, 5, 6), "rgb", 114.0)
    finally:
        pre.close()
    ref = twins.TwinPreprocessor().warp_batch(frame, affines, (192, 256), (1, 2, 3), (4, 5, 6),
                                              "rgb", 114.0)
    assert np.abs(got - ref).max() <= 1e-3
    with pytest.raises(ValueError, match="buffer holds"):
        kernels.warp(stream, 1, (64, 48), 192, 1, 4, 1, (192, 256), (0,) * 3, (1,) * 3,
                     out_capacity=100)
    with pytest.raises(ValueError, match="bad warp sizes"):
        kernels.warp(stream, 1, (64, 48), 100, 1, 4, 1, (192, 256), (0,) * 3, (1,) * 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_multi_frame_warp_kernel_equals_twin(kit, dtype):
    """warp_frames: three frames (one with padded rows), 1..64 items each reading its own
    frame, written at scattered offsets (gaps stay poisoned)."""
    from trt_pose_td.cuda.driver import DeviceBuffer

    kernels, stream = kit
    rng = np.random.default_rng()
    images = [rng.integers(0, 256, (int(rng.integers(31, 900)), int(rng.integers(29, 1300)), 3),
                           dtype=np.uint8) for _ in range(3)]
    pitches = [im.shape[1] * 3 + pad for im, pad in zip(images, (0, 64, 0))]
    bufs = []
    for im, pitch in zip(images, pitches):
        rows = np.zeros((im.shape[0], pitch), np.uint8)
        rows[:, :im.shape[1] * 3] = im.reshape(im.shape[0], -1)
        bufs.append(_device_copy(rows, stream))
    n, (out_w, out_h) = int(rng.integers(1, 65)), (48, 64)
    frames = rng.integers(0, 3, n)
    affines = np.concatenate([_random_affines(rng, images[f].shape[1], images[f].shape[0], 1,
                                              (out_w, out_h), 0.75) for f in frames])
    item = 3 * out_h * out_w
    offsets = np.arange(n) * item + np.arange(n) // 5 * 128  # a gap after every 5th item
    table = twins.warp_frame_table([(b.ptr, im.shape[1], im.shape[0], p)
                                    for b, im, p in zip(bufs, images, pitches)])
    tab, items = _device_copy(table, stream), _device_copy(
        twins.warp_items(affines, frames, offsets), stream)
    extent = int(offsets[-1]) + item
    out = DeviceBuffer(extent * np.dtype(dtype).itemsize)
    out.fill_u32(NAN32 if dtype == np.float32 else NAN16X2, stream)
    mean, std = rng.uniform(0, 255, 3), rng.uniform(1, 80, 3)
    kernels.warp_frames(stream, tab.ptr, items.ptr, n, out.ptr, (out_w, out_h), mean, std, "rgb",
                        114.0, dtype, extent, out.nbytes)
    flat = _download(out, (extent,), dtype, stream)
    for buf in (*bufs, tab, items, out):
        buf.close()
    got = np.stack([flat[o:o + item].reshape(3, out_h, out_w) for o in offsets])
    ref = twins.warp_frames_twin(images, frames, affines, (out_w, out_h), mean, std, "rgb", 114.0,
                                 dtype)
    assert not np.isnan(got).any(), "kernel left output elements unwritten"
    if n > 5:
        assert np.isnan(flat[offsets[4] + item:offsets[5]]).all(), "wrote into a gap"
    rtol = 2.0 ** -10 if dtype == np.float16 else 0.0
    np.testing.assert_allclose(got.astype(np.float32), ref.astype(np.float32), rtol=rtol,
                               atol=1e-3)


@pytest.mark.parametrize("decoder, shapes", [
    ("heatmap", {"heatmaps": (17, 64, 48)}),
    ("simcc", {"simcc_x": (17, 384), "simcc_y": (17, 512)}),
])
def test_flip_average_kernel_equals_twin(kit, decoder, shapes):
    from trt_pose_td.decode import KEYPOINT_DECODERS
    from trt_pose_td.skeleton import flip_permutation

    kernels, stream = kit
    rng = np.random.default_rng()
    n = int(rng.integers(1, 33))
    gathers = twins.flip_gathers(KEYPOINT_DECODERS[decoder].flip_back, shapes, flip_permutation())
    for role, shape in shapes.items():
        a = rng.standard_normal((n, *shape)).astype(np.float32)
        b = rng.standard_normal((n, *shape)).astype(np.float32)
        da, db, dg = (_device_copy(x, stream) for x in (a, b, gathers[role]))
        kernels.flip_average(stream, da.ptr, db.ptr, dg.ptr, int(np.prod(shape)), n, a.nbytes)
        got = _download(da, a.shape, np.float32, stream)
        for buf in (da, db, dg):
            buf.close()
        np.testing.assert_array_equal(got, twins.flip_average_twin(a, b, gathers[role]))


def _heatmaps(rng, n, k, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = rng.uniform(-1, w, (n, k, 1, 1)), rng.uniform(-1, h, (n, k, 1, 1))
    maps = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * rng.uniform(1, 3) ** 2))
    maps = maps * rng.uniform(0.05, 1, (n, k, 1, 1)) + rng.normal(0, 0.01, (n, k, h, w))
    maps[0, 0] = 0.5          # a flat map: ties everywhere, first index wins
    maps[-1, -1, h - 1, w - 1] = 9.0  # a maximum in the corner
    return maps.astype(np.float32)


@pytest.mark.parametrize("refine", ["none", "quarter", "dark"])
@pytest.mark.parametrize("hw, size", [((64, 48), (192, 256)), ((32, 24), (96, 128)),
                                      ((96, 72), (288, 384))])
def test_heatmap_decode_kernel_equals_twin(kit, refine, hw, size):
    from trt_pose_td.cuda.driver import DeviceBuffer

    kernels, stream = kit
    rng = np.random.default_rng()
    n, k = int(rng.integers(1, 41)), 17
    maps = _heatmaps(rng, n, k, *hw)
    src = _device_copy(maps, stream)
    out = DeviceBuffer(n * k * 12)
    out.fill_u32(NAN32, stream)
    kernels.decode_heatmaps(stream, src.ptr, n * k, hw, size, refine, out.ptr, 0.5, out.nbytes)
    got = _download(out, (n, k, 3), np.float32, stream)
    src.close()
    out.close()
    ref_k, ref_s = twins.decode_heatmaps_twin(maps, size, refine)
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(got[..., 2], ref_s)
    assert np.abs(got[..., :2] - ref_k).max() <= 1e-3


def test_simcc_decode_kernel_equals_twin(kit):
    from trt_pose_td.cuda.driver import DeviceBuffer

    kernels, stream = kit
    rng = np.random.default_rng()
    n, k = int(rng.integers(1, 41)), 17
    sx = rng.standard_normal((n, k, 384)).astype(np.float32)
    sy = rng.standard_normal((n, k, 512)).astype(np.float32)
    sx[0, 0, [3, 300]] = 40.0  # tie: first wins
    bx, by = _device_copy(sx, stream), _device_copy(sy, stream)
    out = DeviceBuffer(n * k * 12)
    out.fill_u32(NAN32, stream)
    kernels.decode_simcc(stream, bx.ptr, 384, by.ptr, 512, n * k, 2.0, out.ptr, out.nbytes)
    got = _download(out, (n, k, 3), np.float32, stream)
    for buf in (bx, by, out):
        buf.close()
    ref_k, ref_s = twins.decode_simcc_twin(sx, sy, 2.0)
    np.testing.assert_array_equal(got[..., :2], ref_k)
    np.testing.assert_array_equal(got[..., 2], ref_s)


def test_device_info_and_mapped_memory(cuda_device):
    from trt_pose_td.cuda.driver import Event, MappedBuffer, PinnedBuffer, Stream

    info = cuda_device.info
    assert info.major >= 5 and info.arch == f"sm_{info.major}{info.minor}" and info.name
    with Stream() as stream:
        pinned = PinnedBuffer(1 << 20)
        view = pinned.array(np.float32, (256, 1024))
        view[...] = 3.0
        start, end = Event(), Event()
        start.record(stream)
        end.record(stream)
        end.synchronize()
        assert end.elapsed_ms(start) >= 0.0
        if info.can_map_host_memory:
            mapped = MappedBuffer(4096)
            assert mapped.device_ptr != 0
            mapped.close()
        pinned.close()
        start.close()
        end.close()
