"""Reading the COCO JSON files a user names (pure): annotations and detection results, checked
before any long run, each mistake one :class:`~trt_pose_td.errors.ConfigError` line.

Checked: the file exists and is JSON; annotations are an object with ``images`` (``id``,
``file_name``) and ``annotations`` (``id``, ``image_id`` of a listed image, ``bbox`` [x, y, w, h],
and for keypoint evaluation ``keypoints`` of 17 x 3 numbers and ``area``); detection results are
a list of ``{"image_id", "bbox", "score"}``.
"""

from __future__ import annotations

import json
from numbers import Real
from pathlib import Path
from typing import Any, Dict, List, Sequence

from .errors import ConfigError


def read_json(path: Path, what: str) -> Any:
    """The parsed file; :class:`ConfigError` naming ``what`` when missing, unreadable or not
    JSON."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ConfigError(f"{what} {path} is not JSON ({exc})") from None


def _numbers(value: Any, count: int) -> bool:
    return (isinstance(value, list) and len(value) == count
            and all(isinstance(v, Real) and not isinstance(v, bool) for v in value))


def _records(doc: Dict[str, Any], key: str, where: str) -> List[Dict[str, Any]]:
    items = doc.get(key)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigError(f"{where} is not a COCO annotation file: '{key}' must be a list of "
                          "objects")
    return items


def check_annotations(doc: Any, where: str, keypoints: bool = True) -> Dict[str, Any]:
    """``doc`` if it is a COCO (person-keypoints when ``keypoints``) annotation object."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{where} is not a COCO annotation file: expected a JSON object with "
                          f"'images' and 'annotations', got a {type(doc).__name__}")
    images = _records(doc, "images", where)
    ids = set()
    for im in images:
        if not isinstance(im.get("id"), int) or not isinstance(im.get("file_name"), str):
            raise ConfigError(f"{where}: every image needs an integer 'id' and a 'file_name' "
                              f"(first bad: {_short(im)})")
        ids.add(im["id"])
    wanted = ("id", "image_id", "bbox") + (("keypoints", "area") if keypoints else ())
    for ann in _records(doc, "annotations", where):
        missing = [k for k in wanted if k not in ann]
        bad = (missing or ann["image_id"] not in ids or not _numbers(ann["bbox"], 4)
               or (keypoints and not _numbers(ann["keypoints"], 51)))
        if bad:
            why = f"missing {', '.join(missing)}" if missing else (
                "image_id not among the images" if ann["image_id"] not in ids else
                "bbox must be [x, y, w, h]" + (" and keypoints 17 x [x, y, v]" if keypoints
                                               else ""))
            raise ConfigError(f"{where}: bad annotation ({why}): {_short(ann)}")
    if keypoints:
        doc.setdefault("categories", [{"id": 1, "name": "person"}])
    return doc


def read_annotations(path: Path, what: str = "annotation file", keypoints: bool = True
                     ) -> Dict[str, Any]:
    """A checked COCO annotation object from ``path`` (see :func:`check_annotations`)."""
    return check_annotations(read_json(path, what), f"{what} {path}", keypoints)


def read_detections(path: Path, what: str = "detection file") -> List[Dict[str, Any]]:
    """A checked COCO detection-results list from ``path``."""
    doc = read_json(path, what)
    where = f"{what} {path}"
    if not isinstance(doc, list):
        raise ConfigError(f"{where} is not a COCO detection-results list (got a "
                          f"{type(doc).__name__})")
    for d in doc:
        if not (isinstance(d, dict) and "image_id" in d and _numbers(d.get("bbox"), 4)
                and isinstance(d.get("score"), Real)):
            raise ConfigError(f"{where}: every result needs image_id, bbox [x, y, w, h] and "
                              f"score (first bad: {_short(d)})")
    return doc


def uncovered(detections: Sequence[Dict[str, Any]], image_ids: Sequence[int]) -> List[int]:
    """The ``image_ids`` with no entry at all in a detection-results list."""
    covered = {d["image_id"] for d in detections}
    return [i for i in image_ids if i not in covered]


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
