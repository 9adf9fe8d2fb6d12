"""Shared fixtures: the data mirror (../shared or $TRT_POSE_TD_MIRROR), a private asset cache,
and the tiny ONNX stand-ins."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def mirror_path() -> Path | None:
    value = os.environ.get("TRT_POSE_TD_MIRROR")
    path = Path(value) if value else REPO.parent / "shared"
    return path if (path / "models").is_dir() else None


@pytest.fixture(scope="session")
def shared() -> Path:
    """The data mirror; tests needing real models or COCO images skip without it."""
    path = mirror_path()
    if path is None:
        pytest.skip("no data mirror: set TRT_POSE_TD_MIRROR to a folder laid out like "
                    "../shared (models/, coco/, crowd/)")
    return path


@pytest.fixture(scope="session")
def sample_photo() -> Path:
    """The CC BY sample photo shipped inside the package (640x480, a group of about 14 people):
    needs no mirror."""
    from trt_pose_td.assets import sample_paths

    return sample_paths("sample", progress=False)[0]


def panning_clip(image, path: Path, frames: int, size: tuple, scale: float, step: float,
                 min_bytes: int) -> Path:
    """A real MP4 (10 fps) of ``image`` scaled by ``scale`` into ``size`` (W, H), panning
    ``step`` px a frame (edges replicated)."""
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    for i in range(frames):
        shift = np.float32([[scale, 0, step * (i - frames // 2)], [0, scale, 0]])
        writer.write(cv2.warpAffine(image, shift, size, borderMode=cv2.BORDER_REPLICATE))
    writer.release()
    assert path.stat().st_size > min_bytes, "OpenCV wrote no video"
    return path


@pytest.fixture(scope="session")
def sample_clip(sample_photo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real MP4 file (8 frames, 640x480, 10 fps) made from the packaged photo panning 6 px a
    frame: a video for tests that need one but not a particular one (no mirror needed)."""
    cv2 = pytest.importorskip("cv2")
    image = cv2.imread(str(sample_photo))
    path = tmp_path_factory.mktemp("clip") / "sample_clip.mp4"
    return panning_clip(image, path, 8, (image.shape[1], image.shape[0]), 1.0, 6, 10_000)


@pytest.fixture(scope="session")
def service_clip(sample_photo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real MP4 for the service tests (10 frames, 320x240, 10 fps): the left part of the
    packaged photo (x 0-427, y 100-420: four children) at 3/4 scale, panning 3 px a frame;
    cheap enough to loop."""
    cv2 = pytest.importorskip("cv2")
    image = cv2.imread(str(sample_photo))[100:420, :427]
    path = tmp_path_factory.mktemp("service_clip") / "service_clip.mp4"
    return panning_clip(image, path, 10, (320, 240), 0.75, 3, 5_000)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test session fetches into its own cache, from the mirror (never the network)."""
    os.environ["TRT_POSE_TD_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    path = mirror_path()
    if path is not None:
        os.environ["TRT_POSE_TD_MIRROR"] = str(path)


@pytest.fixture(scope="session")
def standins(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Paths of the tiny ONNX stand-ins (see tests/models/fixtures.py)."""
    import numpy as np

    from tests.models import fixtures

    d = tmp_path_factory.mktemp("standins")
    return {
        "heatmap": fixtures.heatmap_pose_model(d / "heatmap.onnx"),
        "heatmap_128": fixtures.heatmap_pose_model(d / "heatmap128.onnx", (128, 96)),
        "simcc": fixtures.simcc_pose_model(d / "simcc.onnx"),
        "detector": fixtures.nms_detector_model(
            d / "detector.onnx", np.array([[40, 60, 120, 300, 0.9], [200, 20, 260, 100, 0.8],
                                           [10, 10, 20, 20, 0.1]], np.float32)),
    }


@pytest.fixture(scope="session")
def cuda_device():
    """GPU 0 (primary context retained); the ``gpu`` tests skip, saying why, without one."""
    from trt_pose_td.errors import TrtPoseError

    try:
        from trt_pose_td.cuda.driver import Device

        device = Device(0)
    except (ImportError, TrtPoseError) as exc:
        pytest.skip(f"no usable CUDA GPU: {exc}")
    yield device
    device.close()


@pytest.fixture(scope="session")
def trt(cuda_device):
    """The tensorrt module on a GPU machine (the ``trt`` tests skip without either)."""
    return pytest.importorskip("tensorrt", reason="TensorRT is not installed")
