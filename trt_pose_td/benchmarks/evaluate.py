"""COCO keypoint AP and person-box AP of the pipeline, measured with pycocotools.

Conventions (``docs/accuracy.md``):

* boxes: ``own`` (the pipeline's detector, the number users get), ``gt`` (every non-crowd ground
  truth person with at least one labelled keypoint, score 1) or a COCO detection-results file
  (``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``, category 1 only; the
  pipeline's ``score_threshold`` applies to it as to its own boxes).
* instance score (ranks the persons for AP): ``box_kpt`` = box score x mean score of the
  keypoints above ``visible_threshold`` (HRNet / mmpose rescoring), ``box`` or ``kpt`` alone.
* OKS-NMS between the persons of an image: off unless ``oks_nms`` > 0 (HRNet uses 0.9).
* flip test-time augmentation: a pipeline option (``PipelineConfig.flip``), off by default.

Coordinates written to the results are this package's (pixel ``(i, j)`` covers ``[i, i+1)``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..coco_json import read_annotations, read_detections, uncovered
from ..errors import ConfigError, require
from ..io.sources import read_image
from ..oks import oks
from ..pipelines.base import Pipeline
from ..progress import progress_bar
from ..types import Detections, Frame, FrameResult, Poses, StageTimes

log = logging.getLogger(__name__)

KEYPOINT_METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
BBOX_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
                "ARl")
INSTANCE_SCORES = ("box_kpt", "box", "kpt")
PERSON = 1


@dataclass(frozen=True)
class EvalOptions:
    """How an evaluation run is scored (see the module docstring)."""

    boxes: str = "own"
    instance_score: str = "box_kpt"
    visible_threshold: float = 0.2
    oks_nms: float = 0.0
    max_images: int = 0
    people_only: bool = False

    def __post_init__(self) -> None:
        if self.instance_score not in INSTANCE_SCORES:
            raise ConfigError(f"instance score must be one of {INSTANCE_SCORES}, not "
                              f"{self.instance_score!r}")
        if not 0.0 <= self.visible_threshold <= 1.0:
            raise ConfigError(f"visible threshold must be in [0, 1], not {self.visible_threshold}")
        if not 0.0 <= self.oks_nms <= 1.0:
            raise ConfigError(f"OKS-NMS threshold must be in [0, 1], not {self.oks_nms}")
        if self.max_images < 0:
            raise ConfigError(f"max images must be >= 0, not {self.max_images}")


@dataclass
class EvalResult:
    """Metrics (0..1, pycocotools' stats), the printed tables and the raw results."""

    keypoints: Dict[str, float]
    bbox: Optional[Dict[str, float]]
    tables: Dict[str, str]
    keypoint_results: List[dict]
    box_results: List[dict]
    images: int
    persons: int
    times: List[StageTimes] = field(default_factory=list)


def load_coco(annotations: Path) -> Any:
    """A ``pycocotools.coco.COCO`` of a person-keypoints file (its loading chatter silenced)."""
    coco_mod = require("pycocotools.coco", "eval", "pycocotools")
    doc = read_annotations(Path(annotations))  # one ConfigError line when malformed
    with contextlib.redirect_stdout(io.StringIO()):
        coco = coco_mod.COCO()
        coco.dataset = doc
        coco.createIndex()
    return coco


def select_images(coco: Any, max_images: int = 0, people_only: bool = False) -> List[int]:
    """Image ids in ascending order; ``people_only`` keeps those with a non-crowd person;
    ``max_images`` > 0 keeps the first N."""
    ids = sorted(coco.getImgIds())
    if people_only:
        ids = [i for i in ids if any(not a.get("iscrowd") for a in
                                     coco.loadAnns(coco.getAnnIds(imgIds=[i], catIds=[PERSON])))]
    return ids[:max_images] if max_images else ids


def gt_detections(coco: Any, image_id: int) -> Detections:
    """Ground-truth person boxes (non-crowd, >= 1 labelled keypoint) as detections, score 1."""
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=[PERSON], iscrowd=False))
    boxes = [_xywh_to_xyxy(a["bbox"]) for a in anns
             if a.get("num_keypoints", 1) > 0 and a["bbox"][2] > 0 and a["bbox"][3] > 0]
    if not boxes:
        return Detections.empty()
    return Detections(np.asarray(boxes, np.float32), np.ones(len(boxes), np.float32))


def load_box_file(path: Path, image_ids: Sequence[int], score_threshold: float = 0.0
                  ) -> Dict[int, Detections]:
    """COCO detection results (category 1, score >= threshold) -> image id -> detections.

    Warns with the number of ``image_ids`` the file has no entry for (they are scored as images
    where nobody was found, which lowers AP)."""
    doc = read_detections(Path(path))
    missing = uncovered(doc, image_ids)
    if missing:
        log.warning("%s covers %d of %d images: the other %d count as images with nobody in "
                    "them (first missing id: %d)", path, len(image_ids) - len(missing),
                    len(image_ids), len(missing), missing[0])
    wanted = set(image_ids)
    per: Dict[int, List[Tuple[List[float], float]]] = {}
    for d in doc:
        if d.get("category_id", PERSON) != PERSON or d["image_id"] not in wanted:
            continue
        if d["score"] >= score_threshold and d["bbox"][2] > 0 and d["bbox"][3] > 0:
            per.setdefault(d["image_id"], []).append((_xywh_to_xyxy(d["bbox"]), d["score"]))
    out = {}
    for image_id, items in per.items():
        items.sort(key=lambda t: -t[1])
        out[image_id] = Detections(np.asarray([b for b, _ in items], np.float32),
                                   np.asarray([s for _, s in items], np.float32))
    return out


def _xywh_to_xyxy(b: Sequence[float]) -> List[float]:
    return [float(b[0]), float(b[1]), float(b[0] + b[2]), float(b[1] + b[3])]


def instance_scores(poses: Poses, mode: str = "box_kpt", visible_threshold: float = 0.2
                    ) -> np.ndarray:
    """(N,) float32 person scores for ranking (see the module docstring)."""
    ks = poses.keypoint_scores
    visible = ks > visible_threshold
    mean_visible = np.where(visible.any(1), (ks * visible).sum(1) / np.maximum(visible.sum(1), 1),
                            0.0)
    if mode == "box":
        return poses.box_scores.astype(np.float32)
    if mode == "kpt":
        return mean_visible.astype(np.float32)
    return (poses.box_scores * mean_visible).astype(np.float32)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, boxes: np.ndarray, threshold: float
            ) -> np.ndarray:
    """Greedy NMS on OKS between persons (N, 17, 2), areas from their boxes; kept indices."""
    order = np.argsort(-scores, kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0,
                                                                    None)
    as_gt = np.concatenate([keypoints, np.ones(keypoints.shape[:2] + (1,), np.float32)], -1)
    keep: List[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        if not rest.size:
            break
        sim = oks(keypoints[rest], as_gt[i:i + 1], areas[i:i + 1])[:, 0]
        order = rest[sim <= threshold]
    return np.asarray(keep, np.int64)


def pose_results(image_id: int, poses: Poses, opts: EvalOptions) -> List[dict]:
    """COCO keypoint results of one image (after rescoring and optional OKS-NMS)."""
    if not len(poses):
        return []
    scores = instance_scores(poses, opts.instance_score, opts.visible_threshold)
    keep = np.arange(len(poses))
    if opts.oks_nms > 0:
        keep = oks_nms(poses.keypoints, scores, poses.boxes, opts.oks_nms)
    out = []
    for i in keep:
        kp = np.concatenate([poses.keypoints[i], poses.keypoint_scores[i, :, None]], 1)
        out.append({"image_id": int(image_id), "category_id": PERSON,
                    "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
                    "score": round(float(scores[i]), 6)})
    return out


def box_results(image_id: int, dets: Detections) -> List[dict]:
    """COCO detection results (x, y, w, h) of one image's person boxes."""
    return [{"image_id": int(image_id), "category_id": PERSON,
             "bbox": [round(float(b[0]), 2), round(float(b[1]), 2), round(float(b[2] - b[0]), 2),
                      round(float(b[3] - b[1]), 2)], "score": round(float(s), 6)}
            for b, s in zip(dets.boxes, dets.scores)]


def coco_metrics(coco: Any, results: List[dict], iou_type: str, image_ids: Sequence[int]
                 ) -> Tuple[Dict[str, float], str]:
    """pycocotools' stats as a dict and its printed table, for ``keypoints`` or ``bbox``.

    No results at all score 0 everywhere (pycocotools itself would refuse an empty list).
    """
    cocoeval = require("pycocotools.cocoeval", "eval", "pycocotools")

    names = KEYPOINT_METRICS if iou_type == "keypoints" else BBOX_METRICS
    if not results:
        return {k: 0.0 for k in names}, f"no {iou_type} results: every metric is 0\n"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ev = cocoeval.COCOeval(coco, coco.loadRes(results), iou_type)
        ev.params.imgIds = list(image_ids)
        ev.params.catIds = [PERSON]
        ev.evaluate()
        ev.accumulate()
        table = io.StringIO()
        with contextlib.redirect_stdout(table):
            ev.summarize()
    return {k: float(v) for k, v in zip(names, ev.stats)}, table.getvalue()


def evaluate(pipeline: Pipeline, images_dir: Path, coco: Any, opts: EvalOptions,
             score_threshold: float = 0.0, quiet: bool = False) -> EvalResult:
    """Run ``pipeline`` (any :class:`~..pipelines.base.Pipeline`) over the images of ``coco``.

    ``score_threshold`` filters a detection file's boxes (own boxes are filtered by the
    pipeline). Returns keypoint AP (and person-box AP unless ``opts.boxes == "gt"``).
    """
    image_ids = select_images(coco, opts.max_images, opts.people_only)
    if not image_ids:
        raise ConfigError("no images to evaluate (empty annotation file or --max-images 0?)")
    absent = [coco.imgs[i]["file_name"] for i in image_ids
              if not (Path(images_dir) / coco.imgs[i]["file_name"]).is_file()]
    if absent:
        raise ConfigError(f"{len(absent)} of the {len(image_ids)} images to evaluate are not in "
                          f"{images_dir} (first: {absent[0]}): wrong --images folder?")
    files: Optional[Dict[int, Detections]] = None
    if opts.boxes not in ("own", "gt"):
        files = load_box_file(Path(opts.boxes), image_ids, score_threshold)
    kp_results: List[dict] = []
    bx_results: List[dict] = []
    times: List[StageTimes] = []
    persons = 0
    bar = progress_bar(len(image_ids), "eval", "img", quiet)
    try:
        for image_id, result in zip(image_ids, _results(pipeline, images_dir, coco, image_ids,
                                                        opts.boxes, files)):
            poses = result.poses
            kp_results += pose_results(image_id, poses, opts)
            bx_results += box_results(image_id, Detections(poses.boxes, poses.box_scores))
            persons += len(poses)
            times.append(result.times)
            bar.set_postfix(persons=persons, refresh=False)
            bar.update()
    finally:
        bar.close()
    kp, kp_table = coco_metrics(coco, kp_results, "keypoints", image_ids)
    tables = {"keypoints": kp_table}
    bbox = None
    if opts.boxes != "gt":
        bbox, tables["bbox"] = coco_metrics(coco, bx_results, "bbox", image_ids)
    return EvalResult(kp, bbox, tables, kp_results, bx_results, len(image_ids), persons, times)


def _results(pipeline: Pipeline, images_dir: Path, coco: Any, image_ids: Sequence[int], boxes: str,
             files: Optional[Dict[int, Detections]]) -> Iterator[FrameResult]:
    """The pipeline's results in image order: ``pipeline.stream`` with its own boxes (the
    product path, overlap included), ``pipeline(frame, detections)`` with given boxes (the same
    kernels, detector skipped)."""
    def frames() -> Iterator[Frame]:
        for n, image_id in enumerate(image_ids):
            path = Path(images_dir) / coco.loadImgs([image_id])[0]["file_name"]
            yield Frame(read_image(str(path)), n, source=str(path))

    if boxes == "own":
        yield from pipeline.stream(frames())
        return
    for image_id, frame in zip(image_ids, frames()):
        dets = gt_detections(coco, image_id) if files is None else \
            files.get(image_id, Detections.empty())
        yield pipeline(frame, detections=dets)


# --------------------------------------------------------------------------------------------
# summary.json and the --compare gate
def summary_doc(result: EvalResult, config: Dict[str, Any], opts: EvalOptions,
                annotations: Path, timing: Dict[str, Dict[str, float]]) -> Dict[str, Any]:
    """The ``summary.json`` object (metrics 0..1; config = pipeline config + eval options)."""
    return {"keypoints": result.keypoints, "bbox": result.bbox,
            "config": dict(config, eval=asdict(opts)),
            "annotations": str(annotations), "images": result.images,
            "persons": result.persons, "timing_ms": timing}


def write_outputs(out_dir: Path, summary: Dict[str, Any], result: EvalResult) -> Path:
    """DIR/summary.json, DIR/keypoint_results.json, DIR/detections.json; the summary path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "keypoint_results.json").write_text(json.dumps(result.keypoint_results))
    (out_dir / "detections.json").write_text(json.dumps(result.box_results))
    path = out_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=1, sort_keys=True))
    return path


def read_summary(path: Path) -> Dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read baseline summary {path}: {exc}") from exc
    if not isinstance(doc, dict) or "keypoints" not in doc:
        raise ConfigError(f"{path} is not an eval summary.json (no 'keypoints')")
    return doc


def compare(current: Dict[str, Any], baseline: Dict[str, Any], max_drop: float,
            metrics: Sequence[str] = ("keypoints.AP",)) -> Tuple[bool, List[str]]:
    """Check that no metric fell more than ``max_drop`` AP points (x100) below the baseline.

    metrics: ``section.name`` keys of the summaries (a missing section is skipped with a note).
    Returns (passed, one line per metric). Refuses summaries of different image sets.
    """
    if (Path(str(current.get("annotations"))).name != Path(str(baseline.get("annotations"))).name
            or current.get("images") != baseline.get("images")):
        raise ConfigError(f"baseline was measured on {baseline.get('images')} images of "
                          f"{baseline.get('annotations')}, this run on {current.get('images')} "
                          f"of {current.get('annotations')}: not comparable")
    ok, lines = True, []
    for key in metrics:
        section, _, name = key.partition(".")
        cur, base = (current.get(section) or {}).get(name), (baseline.get(section) or {}).get(name)
        if cur is None or base is None:
            lines.append(f"{key}: not in both summaries, skipped")
            continue
        drop = (base - cur) * 100
        good = drop <= max_drop
        ok &= good
        lines.append(f"{'ok  ' if good else 'FAIL'} {key}: {cur:.4f} vs baseline {base:.4f} "
                     f"({-drop:+.2f} AP points; budget -{max_drop:.2f})")
    return ok, lines
