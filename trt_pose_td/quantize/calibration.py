"""INT8 calibration tensors made by the real preprocessing, cached on disk.

Detector: every calibration image letterboxed exactly as at run time -> (N, 3, H, W) float32.
Keypoint model: person crops (the run-time crop: box -> centre/size, aspect fix, padding) of the
annotated persons of the calibration images -> (M, 3, H, W) float32.

Both the Q/DQ quantizer (ONNX Runtime) and TensorRT's implicit calibrator read these arrays, so the
two INT8 paths calibrate on identical data. Cache files are named by what determines their content:
``<model>-<onnx sha256[:12]>-<preprocessing hash>-<image-set hash>.npy``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .. import geometry
from ..errors import CalibrationError
from ..io.sources import IMAGE_EXTS, read_image
from ..models import ModelSpec
from ..preprocess import CpuPreprocessor, warp_with
from ..progress import track

log = logging.getLogger(__name__)

#: Smallest person box side (pixels) used for keypoint calibration crops.
MIN_PERSON_SIDE = 16


def calibration_images(folder: Path) -> List[Path]:
    """Sorted image files of ``folder``; :class:`CalibrationError` when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"calibration folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not paths:
        raise CalibrationError(f"calibration folder {folder} holds no images "
                               f"({', '.join(IMAGE_EXTS)})")
    return paths


def person_boxes(annotations: Path) -> dict:
    """file name -> (K, 4) x1y1x2y2 boxes of non-crowd persons from a COCO annotation file."""
    doc = json.loads(Path(annotations).read_text())
    names = {im["id"]: im["file_name"] for im in doc["images"]}
    out: dict = {}
    for a in doc["annotations"]:
        if a.get("iscrowd") or a.get("category_id", 1) != 1:
            continue
        x, y, w, h = a["bbox"]
        if min(w, h) < MIN_PERSON_SIDE:
            continue
        out.setdefault(names[a["image_id"]], []).append([x, y, x + w, y + h])
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def calibration_key(spec: ModelSpec, onnx_sha256: str, images: Sequence[Path],
                    extra: str = "") -> str:
    """Cache key: model name, ONNX hash, preprocessing contract, image set (+ ``extra``)."""
    pre = hashlib.sha256(json.dumps(asdict(spec.preprocess), sort_keys=True).encode())
    imgs = hashlib.sha256("\n".join(p.name for p in images).encode() + extra.encode())
    return f"{spec.name}-{onnx_sha256[:12]}-{pre.hexdigest()[:8]}-{imgs.hexdigest()[:8]}"


def detector_tensors(spec: ModelSpec, images: Sequence[Path], quiet: bool = False
                     ) -> np.ndarray:
    """(N, 3, H, W) float32: each image letterboxed as the run-time detector input."""
    pre = CpuPreprocessor()
    p = spec.preprocess
    out = np.empty((len(images), 3, p.input_size[1], p.input_size[0]), np.float32)
    for i, path in enumerate(track(images, f"calib {spec.name}", "img", quiet)):
        image = read_image(str(path))
        m = geometry.resize_affine((image.shape[1], image.shape[0]), p.input_size, p.resize)
        out[i] = warp_with(pre, image, m[None], p)[0]
    return out


def pose_tensors(spec: ModelSpec, images: Sequence[Path], boxes: dict,
                 quiet: bool = False) -> np.ndarray:
    """(M, 3, H, W) float32: run-time person crops of every annotated person in ``images``."""
    pre = CpuPreprocessor()
    p = spec.preprocess
    chunks = []
    for path in track(images, f"calib {spec.name}", "img", quiet):
        b = boxes.get(path.name)
        if b is None or not len(b):
            continue
        image = read_image(str(path))
        centers, sizes = geometry.box_to_center_size(b, p.aspect, p.padding)
        chunks.append(warp_with(pre, image, geometry.crop_affines(centers, sizes, p.input_size),
                                p))
    if not chunks:
        raise CalibrationError("no annotated persons in the calibration images: the keypoint "
                               "model needs person crops (a COCO person_keypoints file)")
    return np.concatenate(chunks)


def load_or_make(spec: ModelSpec, onnx_sha256: str, images_dir: Path,
                 annotations: Optional[Path] = None, cache_dir: Optional[Path] = None,
                 quiet: bool = False) -> Tuple[np.ndarray, Path]:
    """Calibration tensors for ``spec`` from ``images_dir`` (cached), and the cache path.

    Detectors use the images alone; keypoint models need ``annotations`` (COCO person boxes).
    """
    from ..assets import cache_dir as default_cache

    images = calibration_images(images_dir)
    if spec.task == "pose" and annotations is None:
        raise CalibrationError(f"{spec.name} is a keypoint model: calibration needs the person "
                               "annotations of the calibration images (--calib-annotations)")
    extra = hashlib.sha256(Path(annotations).read_bytes()).hexdigest()[:8] if annotations else ""
    key = calibration_key(spec, onnx_sha256, images, extra)
    path = Path(cache_dir or default_cache() / "calib") / f"{key}.npy"
    if path.is_file():
        return np.load(path), path
    if spec.task == "detector":
        data = detector_tensors(spec, images, quiet)
    else:
        data = pose_tensors(spec, images, person_boxes(Path(annotations or "")), quiet)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, data)
    tmp.replace(path)
    log.info("calibration tensors %s: %s", path.name, data.shape)
    return data, path


def batches(data: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive (B, 3, H, W) float32 contiguous batches; the last may be short."""
    if len(data) == 0:
        raise CalibrationError("calibration set is empty")
    for start in range(0, len(data), batch_size):
        yield np.ascontiguousarray(data[start:start + batch_size], np.float32)


def manifest(images_dir: Path, annotations: Optional[Path] = None, how: str = "") -> dict:
    """The calibration set as data: every image's name, COCO id, sha256 and person count, the
    annotation file's sha256, and ``how`` the images were chosen (``calib/*.json``)."""
    from ..assets import sha256_file

    images = calibration_images(images_dir)
    ids = {}
    if annotations is not None:
        doc = json.loads(Path(annotations).read_text())
        ids = {im["file_name"]: im["id"] for im in doc["images"]}
    boxes = person_boxes(Path(annotations)) if annotations is not None else {}
    return {
        "how_chosen": how,
        "annotations": None if annotations is None else {
            "file": Path(annotations).name, "sha256": sha256_file(Path(annotations))},
        "min_person_side": MIN_PERSON_SIDE,
        "images": [{"file": p.name, "id": ids.get(p.name), "sha256": sha256_file(p),
                    "persons": int(len(boxes.get(p.name, ())))} for p in images],
    }
