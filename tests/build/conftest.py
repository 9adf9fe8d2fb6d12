"""Fixtures of the engine-builder tests: a small real calibration set, build environments."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from trt_pose_td.build.env import BuildEnv
from trt_pose_td.trt_api import TrtFeatures

CALIB_ANN = "person_keypoints_train2017_calib_subset.json"


def make_env(version: str = "10.3.0", gpu: str = "Orin", cc: str = "8.7",
             dla: int = 2) -> BuildEnv:
    """A build machine as :func:`trt_pose_td.build.env.detect_env` would report it."""
    return BuildEnv(TrtFeatures.parse(version), gpu, cc, dla)


@pytest.fixture(scope="session")
def calib_subset(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 images of the mirror's COCO train2017 calibration set with their annotations (the
    real images and boxes, fewer of them so the tests stay fast)."""
    src = shared / "coco" / "calib_train2017"
    doc = json.loads((src / CALIB_ANN).read_text())
    with_people = {a["image_id"] for a in doc["annotations"] if not a.get("iscrowd")}
    images = [im for im in doc["images"] if im["id"] in with_people][:12]
    out = tmp_path_factory.mktemp("calib") / "calib_train2017"
    out.mkdir()
    for im in images:
        shutil.copyfile(src / im["file_name"], out / im["file_name"])
    keep = {im["id"] for im in images}
    doc["images"] = images
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in keep]
    (out / CALIB_ANN).write_text(json.dumps(doc))
    return out


@pytest.fixture(scope="session")
def qdq_standin(standins: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The heatmap stand-in quantized to a Q/DQ ONNX by ONNX Runtime's static quantizer."""
    ort_quant = pytest.importorskip("onnxruntime.quantization")

    class Reader(ort_quant.CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.items = iter([{"image": rng.random((1, 3, 256, 192), np.float32)}
                               for _ in range(2)])

        def get_next(self):
            return next(self.items, None)

    out = tmp_path_factory.mktemp("qdq") / "heatmap.qdq.onnx"
    ort_quant.quantize_static(str(standins["heatmap"]), str(out), Reader(),
                              quant_format=ort_quant.QuantFormat.QDQ)
    return out
