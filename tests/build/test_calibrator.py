"""The implicit calibrator's logic over real calibration tensors (no GPU: batches are "uploaded"
into a host buffer whose address stands in for the device pointer)."""

import ctypes

import numpy as np
import pytest

from trt_pose_td.build.calibrator import (
    CalibrationCache,
    CalibrationFeed,
    CalibratorCore,
    cache_header_version,
    calibration_cache_path,
)
from trt_pose_td.errors import CalibrationError
from trt_pose_td.models import get_spec
from trt_pose_td.quantize import calibration

pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def pose_tensors(calib_subset, tmp_path_factory):
    """Real keypoint-model calibration crops (the run-time crop of every annotated person)."""
    spec = get_spec("pp_tinypose_128x96")
    data, path = calibration.load_or_make(
        spec, "ab" * 32, calib_subset, calib_subset / "person_keypoints_train2017_calib_subset"
        ".json", cache_dir=tmp_path_factory.mktemp("calib"), quiet=True)
    assert data.shape[1:] == (3, 128, 96) and len(data) > 10
    return data, path


class HostUpload:
    """Copies each batch into one fixed buffer and returns its address, like device_staging()."""

    def __init__(self, nbytes):
        self.buffer = np.zeros(nbytes // 4, np.float32)
        self.copies = []

    def __call__(self, batch):
        ctypes.memmove(self.buffer.ctypes.data, batch.ctypes.data, batch.nbytes)
        self.copies.append(self.buffer.copy())
        return self.buffer.ctypes.data


def test_feed_serves_full_consecutive_batches(pose_tensors):
    data, _ = pose_tensors
    feed = CalibrationFeed(data, 4, "image", [4, 3, 128, 96])
    assert feed.num_batches == len(data) // 4 and feed.batch_nbytes == 4 * 3 * 128 * 96 * 4
    served = []
    while (batch := feed.next_batch(["image"])) is not None:
        assert batch.shape == (4, 3, 128, 96) and batch.flags.c_contiguous
        served.append(batch)
    assert len(served) == feed.num_batches
    np.testing.assert_array_equal(np.concatenate(served), data[:feed.num_batches * 4])
    feed.reset()
    np.testing.assert_array_equal(feed.next_batch(["image"]), data[:4])


def test_feed_refuses_data_that_does_not_fit(pose_tensors):
    data, _ = pose_tensors
    with pytest.raises(CalibrationError, match="does not fit"):
        CalibrationFeed(data, 4, "image", [4, 3, 256, 192])
    with pytest.raises(CalibrationError, match="fewer than one batch"):
        CalibrationFeed(data[:3], 4, "image")
    with pytest.raises(CalibrationError, match="single input 'image'"):
        CalibrationFeed(data, 4, "image").next_batch(["input"])


def test_core_hands_tensorrt_pointers_to_each_batch_then_stops(pose_tensors, tmp_path):
    data, _ = pose_tensors
    feed = CalibrationFeed(data, 8, "image")
    upload = HostUpload(feed.batch_nbytes)
    core = CalibratorCore(feed, CalibrationCache(tmp_path / "x.calib"), upload)
    pointers = []
    while ptrs := core.get_batch(["image"]):
        pointers += ptrs
    assert pointers == [upload.buffer.ctypes.data] * feed.num_batches
    for i, copy in enumerate(upload.copies):  # what TensorRT would read at that pointer
        np.testing.assert_array_equal(copy.reshape(8, 3, 128, 96), data[i * 8:(i + 1) * 8])
    assert core.get_batch(["image"]) == [] and core.error is None


def test_core_keeps_errors_for_the_builder(pose_tensors, tmp_path):
    data, _ = pose_tensors
    core = CalibratorCore(CalibrationFeed(data, 8, "image"), CalibrationCache(None),
                          HostUpload(8 * 3 * 128 * 96 * 4))
    assert core.get_batch(["input"]) == []  # TensorRT just sees "no more data"
    assert isinstance(core.error, CalibrationError)


def test_cache_round_trip(tmp_path):
    # TensorRT's calibration cache: a header line, then one "tensor: scale (hex float)" per line
    blob = b"TRT-8502-EntropyCalibration2\nimage: 3c010a14\nconv1: 3d8c3a29\n"
    cache = CalibrationCache(tmp_path / "sub" / "m.trt8.5.2.2.calib")
    assert cache.read() is None
    cache.write(blob)
    assert cache.read() == blob
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.trt8.5.2.2.calib"]
    core = CalibratorCore(CalibrationFeed(np.zeros((2, 3, 4, 4), np.float32), 1, "x"), cache,
                          HostUpload(3 * 4 * 4 * 4))
    assert core.read_cache() == blob  # a second build skips calibration
    core.write_cache(blob + b"x: 0\n")
    assert cache.read().endswith(b"x: 0\n")
    (tmp_path / "sub" / "m.trt8.5.2.2.calib").write_bytes(b"")
    assert cache.read() is None  # an empty cache means calibrate again
    assert CalibrationCache(None).read() is None


def test_cache_sits_beside_the_tensors_it_was_made_from(pose_tensors):
    _, path = pose_tensors
    cache = calibration_cache_path(path, "10.3.0.30")
    assert cache.parent == path.parent and cache.name == f"{path.stem}.trt10.3.0.30.calib"
    assert calibration_cache_path(path, "8.5.2.2") != cache
    # per GPU architecture too: calibrate on the device (A8)
    assert calibration_cache_path(path, "8.5.2.2", "sm87").name == \
        f"{path.stem}.trt8.5.2.2.sm87.calib"


@pytest.mark.parametrize("header, version", [
    (b"TRT-8502-EntropyCalibration2\n", (8, 5, 2)),      # TensorRT 8.5.2 (JetPack 5)
    (b"TRT-8203-EntropyCalibration2\n", (8, 2, 3)),      # TensorRT #2036
    (b"TRT-8600-EntropyCalibration2\n", (8, 6, 0)),      # Deep-Learning-Accelerator-SW #26
    (b"TRT-100300-EntropyCalibration2\n", (10, 3, 0)),   # NV_TENSORRT_VERSION from 10 on
    (b"TRT-101600-MinMaxCalibration", (10, 16, 0)),
    (b"image: 3c010a14\n", None), (b"", None), (b"TRT-x-Entropy\n", None),
])
def test_cache_header_version(header, version):
    assert cache_header_version(header) == version


def test_a_cache_from_another_tensorrt_is_refused_loudly(tmp_path, caplog):
    """TensorRT skips an incompatible cache without a word and quantizes with default scales
    (A8); ours says so, ignores it (calibration runs again) and the new cache replaces it."""
    path = tmp_path / "m.trt8.5.2.2.sm87.calib"
    path.write_bytes(b"TRT-8203-EntropyCalibration2\nimage: 3c010a14\n")
    cache = CalibrationCache(path, "8.5.2.2")
    with caplog.at_level("WARNING"):
        assert cache.read() is None
    assert "written by TensorRT 8.2.3, this is 8.5.2.2: calibrating again" in caplog.text
    path.write_bytes(b"not a cache at all\n")
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert cache.read() is None
    assert "has no TensorRT header" in caplog.text
    good = b"TRT-8502-EntropyCalibration2\nimage: 3c010a14\n"
    cache.write(good)
    assert cache.read() == good
    assert CalibrationCache(path, "10.3.0.30").read() is None   # after a JetPack upgrade


def test_device_staging_copies_each_batch_on_the_cuda_wrapper(monkeypatch):
    """device_staging() goes through cuda/driver.py (stand-ins here: a host "device" buffer):
    the primary context is held, each batch is copied and synchronized before its address is
    returned, a batch of another size is refused, and everything is released on exit."""
    from trt_pose_td.build.calibrator import device_staging
    from trt_pose_td.cuda import driver

    events = []

    class Device:
        def __init__(self, ordinal):
            events.append(("device", ordinal))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            events.append("device closed")

    class Stream:
        handle = 3

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            events.append("stream closed")

        def synchronize(self):
            events.append("sync")

    class DeviceBuffer(HostUpload):
        def __init__(self, nbytes):
            super().__init__(nbytes)
            self.nbytes, self.ptr = nbytes, self.buffer.ctypes.data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            events.append("buffer freed")

        def upload(self, host, stream):
            assert stream.handle == 3 and host.flags.c_contiguous
            self(host)

    monkeypatch.setattr(driver, "Device", Device)
    monkeypatch.setattr(driver, "Stream", Stream)
    monkeypatch.setattr(driver, "DeviceBuffer", DeviceBuffer)
    batch = np.arange(24, dtype=np.float64).reshape(2, 3, 2, 2)  # converted to float32
    with device_staging(batch.size * 4) as upload:
        ptr = upload(batch)
        staged = np.ctypeslib.as_array((ctypes.c_float * batch.size).from_address(ptr))
        np.testing.assert_array_equal(staged, batch.ravel().astype(np.float32))
        with pytest.raises(CalibrationError, match="batch of 48 bytes, buffer holds 96"):
            upload(batch[:1])
    assert events == [("device", 0), "sync", "buffer freed", "stream closed", "device closed"]
