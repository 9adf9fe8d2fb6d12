"""Fixtures of the engine-builder tests: a small real calibration set, build environments."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from trt_pose_td.build.env import BuildEnv
from trt_pose_td.engines.trt_api import TrtFeatures

CALIB_ANN = "person_keypoints_train2017_calib_subset.json"


def make_env(version: str = "10.3.0", gpu: str = "Orin", cc: str = "8.7",
             dla: int = 2) -> BuildEnv:
    """A build machine as :func:`trt_pose_td.build.env.detect_env` would report it."""
    return BuildEnv(TrtFeatures.parse(version), gpu, cc, dla)


@pytest.fixture(scope="session")
def calib_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real calibration set with person annotations: 12 images of the mirror's COCO
    train2017 calibration set (their real boxes); without a mirror, 6 variants of the packaged
    photo (flips and crops) with the packaged detector's confident boxes as the persons."""
    from tests.conftest import mirror_path

    out = tmp_path_factory.mktemp("calib") / "calib_train2017"
    out.mkdir()
    shared = mirror_path()
    if shared is None:
        return _calib_from_package(out)
    src = shared / "coco" / "calib_train2017"
    doc = json.loads((src / CALIB_ANN).read_text())
    with_people = {a["image_id"] for a in doc["annotations"] if not a.get("iscrowd")}
    images = [im for im in doc["images"] if im["id"] in with_people][:12]
    for im in images:
        shutil.copyfile(src / im["file_name"], out / im["file_name"])
    keep = {im["id"] for im in images}
    doc["images"] = images
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in keep]
    (out / CALIB_ANN).write_text(json.dumps(doc))
    return out


def _calib_from_package(out: Path) -> Path:
    cv2 = pytest.importorskip("cv2")
    from trt_pose_td.api import open_pipeline, sample_image

    photo = cv2.imread(str(sample_image()))
    h, w = photo.shape[:2]
    with open_pipeline() as pipeline:
        found = pipeline(photo).poses
    boxes = found.boxes[found.box_scores >= 0.5]
    variants = []  # (image, x offset, mirrored)
    for x0 in (0, 80, 160):
        crop = photo[:, x0:x0 + w - 160]
        variants += [(crop, x0, False), (crop[:, ::-1].copy(), x0, True)]
    doc: dict = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    for i, (image, x0, mirrored) in enumerate(variants, 1):
        name = f"sample_{i:02d}.jpg"
        cv2.imwrite(str(out / name), image)
        cw = image.shape[1]
        doc["images"].append({"id": i, "file_name": name, "width": cw, "height": h})
        for x1, y1, x2, y2 in boxes - np.float32([x0, 0, x0, 0]):
            x1, x2 = max(0.0, float(x1)), min(float(cw), float(x2))
            if x2 - x1 < 16:
                continue
            if mirrored:
                x1, x2 = cw - x2, cw - x1
            doc["annotations"].append({
                "id": len(doc["annotations"]) + 1, "image_id": i, "category_id": 1, "iscrowd": 0,
                "bbox": [x1, float(y1), x2 - x1, float(y2 - y1)],
                "area": (x2 - x1) * float(y2 - y1), "keypoints": [0] * 51, "num_keypoints": 0})
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
