"""Turn raw network outputs into boxes and keypoints (pure numpy + cv2).

Detector decoders return boxes in *network-input* pixels (x1y1x2y2) and scores; the pipeline maps
them to the frame. Keypoint decoders return coordinates in *network-input* pixels of each crop; the
pipeline maps them through the inverse crop affine. All coordinates follow :mod:`.geometry`'s
convention (pixel ``i`` covers ``[i, i+1)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Sequence, Tuple

import numpy as np

from .refine import REFINEMENTS, dark_kernel_size, dark_offsets, heatmap_argmax, quarter_offsets

Outputs = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class DetectorParams:
    """Thresholds shared by the detector decoders.

    score_threshold: drop boxes below it; iou_threshold: NMS overlap; max_detections: keep at
    most this many (highest scores); pre_nms_top_k: candidates considered by NMS.
    """

    score_threshold: float = 0.3
    iou_threshold: float = 0.6
    max_detections: int = 100
    pre_nms_top_k: int = 1000
    person_class: int = 0


# --------------------------------------------------------------------------------------------
# NMS
def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_out: int = 0
        ) -> np.ndarray:
    """Greedy non-maximum suppression.

    boxes: (N, 4) x1y1x2y2; scores: (N,). Returns (K,) int64 indices into ``boxes``, by
    descending score; ``max_out`` > 0 stops after that many.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float32), kind="stable")
    areas = (np.clip(boxes[:, 2] - boxes[:, 0], 0, None) *
             np.clip(boxes[:, 3] - boxes[:, 1], 0, None))
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if max_out and len(keep) >= max_out:
            break
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def _threshold_topk_nms(boxes: np.ndarray, scores: np.ndarray, p: DetectorParams
                        ) -> Tuple[np.ndarray, np.ndarray]:
    mask = scores >= p.score_threshold
    boxes, scores = boxes[mask], scores[mask]
    if len(scores) > p.pre_nms_top_k:
        top = np.argpartition(-scores, p.pre_nms_top_k)[: p.pre_nms_top_k]
        boxes, scores = boxes[top], scores[top]
    keep = nms(boxes, scores, p.iou_threshold, p.max_detections)
    return boxes[keep].astype(np.float32), scores[keep].astype(np.float32)


# --------------------------------------------------------------------------------------------
# Detector decoders: (outputs of batch item 0, input (W, H), params) -> boxes, scores
def decode_nms_in_graph(outputs: Outputs, input_size: Tuple[int, int], p: DetectorParams
                        ) -> Tuple[np.ndarray, np.ndarray]:
    """mmdeploy-style ``dets`` [B, N, 5] (x1, y1, x2, y2, score) + ``labels`` [B, N]."""
    dets = np.asarray(outputs["dets"])[0].reshape(-1, 5)
    labels = np.asarray(outputs["labels"])[0].reshape(-1) if "labels" in outputs else \
        np.zeros(len(dets), np.int64)
    keep = (labels == p.person_class) & (dets[:, 4] >= p.score_threshold)
    dets = dets[keep]
    dets = dets[np.argsort(-dets[:, 4], kind="stable")][: p.max_detections]
    return dets[:, :4].astype(np.float32), dets[:, 4].astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def decode_rtmdet_raw(outputs: Outputs, input_size: Tuple[int, int], p: DetectorParams,
                      strides: Sequence[int] = (8, 16, 32)) -> Tuple[np.ndarray, np.ndarray]:
    """RTMDet raw head: ``cls_s{8,16,32}`` [B,1,h,w] logits, ``reg_s*`` [B,4,h,w] distances.

    Anchor points sit at ``(col * stride, row * stride)``; a box is ``point -+ (l, t, r, b)``.
    """
    all_boxes, all_scores = [], []
    for s in strides:
        cls = np.asarray(outputs[f"cls_s{s}"])[0, 0]
        reg = np.asarray(outputs[f"reg_s{s}"])[0]
        scores = _sigmoid(cls).reshape(-1)
        h, w = cls.shape
        ys, xs = np.mgrid[0:h, 0:w]
        px = (xs * s).reshape(-1).astype(np.float32)
        py = (ys * s).reshape(-1).astype(np.float32)
        d = reg.reshape(4, -1)
        all_boxes.append(np.stack([px - d[0], py - d[1], px + d[2], py + d[3]], 1))
        all_scores.append(scores)
    return _threshold_topk_nms(np.concatenate(all_boxes), np.concatenate(all_scores), p)


def decode_yolox(outputs: Outputs, input_size: Tuple[int, int], p: DetectorParams,
                 strides: Sequence[int] = (8, 16, 32)) -> Tuple[np.ndarray, np.ndarray]:
    """YOLOX ``output`` [B, A, 5 + C]: grid-relative xy, log wh, objectness and class scores
    (sigmoid already applied). Person score = objectness x class score."""
    out = np.asarray(next(iter(outputs.values())) if "output" not in outputs
                     else outputs["output"])[0]
    w_in, h_in = input_size
    grids, stride_col = [], []
    for s in strides:
        hs, ws = h_in // s, w_in // s
        ys, xs = np.mgrid[0:hs, 0:ws]
        grids.append(np.stack([xs.reshape(-1), ys.reshape(-1)], 1))
        stride_col.append(np.full((hs * ws, 1), s, np.float32))
    grid = np.concatenate(grids).astype(np.float32)
    stride = np.concatenate(stride_col)
    if len(grid) != len(out):
        raise ValueError(f"YOLOX output has {len(out)} anchors but input {w_in}x{h_in} "
                         f"implies {len(grid)}")
    xy = (out[:, :2] + grid) * stride
    wh = np.exp(np.clip(out[:, 2:4], -20, 20)) * stride
    scores = out[:, 4] * out[:, 5 + p.person_class]
    boxes = np.concatenate([xy - wh * 0.5, xy + wh * 0.5], 1)
    return _threshold_topk_nms(boxes, scores, p)


def decode_boxes_scores(outputs: Outputs, input_size: Tuple[int, int], p: DetectorParams,
                        boxes_name: str = "boxes", scores_name: str = "scores"
                        ) -> Tuple[np.ndarray, np.ndarray]:
    """Separate score [B, C, A] and box [B, A, 4] (x1y1x2y2) outputs, NMS outside (PicoDet)."""
    boxes = np.asarray(outputs[boxes_name])[0].reshape(-1, 4)
    scores = np.asarray(outputs[scores_name])[0]
    scores = scores[min(p.person_class, scores.shape[0] - 1)].reshape(-1)
    return _threshold_topk_nms(boxes, scores, p)


DetectorDecoder = Callable[..., Tuple[np.ndarray, np.ndarray]]

DETECTOR_DECODERS: Dict[str, DetectorDecoder] = {
    "nms_in_graph": decode_nms_in_graph,
    "rtmdet_raw": decode_rtmdet_raw,
    "yolox": decode_yolox,
    "boxes_scores": decode_boxes_scores,
}


# --------------------------------------------------------------------------------------------
# Keypoint decoders
def _dark_offsets(heatmaps: np.ndarray, idx: np.ndarray, kernel: int) -> np.ndarray:
    """:func:`~.refine.dark_offsets` of (N, K, h, w) heatmaps at their argmax ``idx`` (N, K, 2)
    (col, row) -> (N, K, 2) float32."""
    n, k, h, w = heatmaps.shape
    flat = idx.reshape(-1, 2)
    return dark_offsets(heatmaps.reshape(-1, h, w), flat[:, 0], flat[:, 1],
                        kernel).reshape(n, k, 2)


def decode_heatmaps(heatmaps: np.ndarray, input_size: Tuple[int, int], refine: str = "dark",
                    cell_offset: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Heatmaps (N, K, h, w) -> keypoints (N, K, 2) in input pixels and scores (N, K).

    ``refine`` (:mod:`.refine`): ``none`` (plain argmax), ``quarter`` (HRNet +-0.25 shift) or
    ``dark``. Heatmap cell ``j`` spans input pixels ``[j * stride, (j + 1) * stride)``; (refined)
    cell coordinate ``c`` maps to input pixel ``(c + cell_offset) * stride``: 0.5 is the cell
    centre (unbiased), 0.0 the cell corner (what HRNet-style training targets imply, see
    ``docs/accuracy.md``).
    """
    if refine not in REFINEMENTS:
        raise ValueError(f"unknown refinement {refine!r}; expected one of {REFINEMENTS}")
    heatmaps = np.asarray(heatmaps, np.float32)
    n, k, h, w = heatmaps.shape
    idx, scores = heatmap_argmax(heatmaps)
    coords = idx.astype(np.float32)
    if refine == "quarter":
        coords += quarter_offsets(heatmaps, idx)
    elif refine == "dark":
        coords += _dark_offsets(heatmaps, idx, dark_kernel_size(w))
    stride = np.array([input_size[0] / w, input_size[1] / h], np.float32)
    return ((coords + np.float32(cell_offset)) * stride).astype(np.float32), scores


def flip_back_heatmaps(heatmaps: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Heatmaps of mirrored crops (N, K, h, w) -> heatmaps of the unmirrored crops.

    Mirroring the crop exactly (input x -> W - x) maps heatmap column ``j`` to ``w - 1 - j``, so
    no one-cell shift is needed in this package's pixel convention; ``perm`` swaps left/right.
    """
    return np.ascontiguousarray(np.asarray(heatmaps)[:, perm, :, ::-1])


def flip_back_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, perm: np.ndarray
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """SimCC vectors of mirrored crops -> those of the unmirrored crops (x reversed, pairs swapped).
    """
    return (np.ascontiguousarray(np.asarray(simcc_x)[:, perm, ::-1]),
            np.ascontiguousarray(np.asarray(simcc_y)[:, perm]))


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = 2.0
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """SimCC 1-D classifications -> keypoints (N, K, 2) in input pixels and scores (N, K).

    simcc_x: (N, K, W * split_ratio); simcc_y: (N, K, H * split_ratio). Bin ``i`` is the input
    pixel centre ``i / split_ratio + 0.5`` in this package's convention (mmpose puts pixel
    centres on integers). Score = the smaller of the two maxima (mmpose's convention).
    """
    sx = np.asarray(simcc_x, np.float32)
    sy = np.asarray(simcc_y, np.float32)
    ix, iy = np.argmax(sx, axis=2), np.argmax(sy, axis=2)
    vx = np.take_along_axis(sx, ix[..., None], 2)[..., 0]
    vy = np.take_along_axis(sy, iy[..., None], 2)[..., 0]
    coords = np.stack([ix, iy], -1).astype(np.float32) / np.float32(split_ratio) + 0.5
    return coords, np.minimum(vx, vy).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Keypoint decoders as data: a registry model's ``decoder`` names one of these; the CPU and GPU
# pipelines look its functions up here instead of branching on the name.
Named = Dict[str, np.ndarray]
#: (device pointer, shape) of one engine output, by role.
DeviceOutputs = Mapping[str, Tuple[int, Tuple[int, ...]]]


@dataclass(frozen=True)
class KeypointDecoder:
    """How one family of keypoint models is read.

    roles: the output roles a registry spec maps to graph names; decode(named, input_size,
    refine, options) -> keypoints (N, K, 2) float32 in crop-input pixels and scores (N, K);
    flip_back(named of mirrored crops, perm) -> named of the unmirrored crops; gpu_decode(kernels,
    stream, outputs, maps, input_size, refine, options, out_ptr, out_capacity) enqueues the GPU
    kernel that writes (maps, 3) float32 (x, y, score) at ``out_ptr`` (at most ``out_capacity``
    bytes, checked before the launch) (``kernels`` is a
    :class:`trt_pose_td.cuda` kernel set: duck-typed here so this module stays pure).
    """

    name: str
    roles: Tuple[str, ...]
    decode: Callable[[Named, Tuple[int, int], str, Mapping[str, float]],
                     Tuple[np.ndarray, np.ndarray]]
    flip_back: Callable[[Named, np.ndarray], Named]
    gpu_decode: Callable[..., None]


def _heatmap_decode(named: Named, input_size: Tuple[int, int], refine: str,
                    options: Mapping[str, float]) -> Tuple[np.ndarray, np.ndarray]:
    return decode_heatmaps(named["heatmaps"], input_size, refine,
                           float(options.get("cell_offset", 0.5)))


def _heatmap_gpu(kernels: object, stream: object, outputs: DeviceOutputs, maps: int,
                 input_size: Tuple[int, int], refine: str, options: Mapping[str, float],
                 out_ptr: int, out_capacity: int) -> None:
    ptr, shape = outputs["heatmaps"]
    kernels.decode_heatmaps(stream, ptr, maps, (shape[2], shape[3]),  # type: ignore[attr-defined]
                            input_size, refine, out_ptr, float(options.get("cell_offset", 0.5)),
                            out_capacity)


def _simcc_decode(named: Named, input_size: Tuple[int, int], refine: str,
                  options: Mapping[str, float]) -> Tuple[np.ndarray, np.ndarray]:
    return decode_simcc(named["simcc_x"], named["simcc_y"], float(options.get("split_ratio", 2.0)))


def _simcc_flip_back(named: Named, perm: np.ndarray) -> Named:
    x, y = flip_back_simcc(named["simcc_x"], named["simcc_y"], perm)
    return {"simcc_x": x, "simcc_y": y}


def _simcc_gpu(kernels: object, stream: object, outputs: DeviceOutputs, maps: int,
               input_size: Tuple[int, int], refine: str, options: Mapping[str, float],
               out_ptr: int, out_capacity: int) -> None:
    (xp, xs), (yp, ys) = outputs["simcc_x"], outputs["simcc_y"]
    kernels.decode_simcc(stream, xp, xs[2], yp, ys[2], maps,  # type: ignore[attr-defined]
                         float(options.get("split_ratio", 2.0)), out_ptr, out_capacity)


KEYPOINT_DECODERS: Dict[str, KeypointDecoder] = {
    "heatmap": KeypointDecoder(
        "heatmap", ("heatmaps",), _heatmap_decode,
        lambda named, perm: {"heatmaps": flip_back_heatmaps(named["heatmaps"], perm)},
        _heatmap_gpu),
    "simcc": KeypointDecoder("simcc", ("simcc_x", "simcc_y"), _simcc_decode, _simcc_flip_back,
                             _simcc_gpu),
}
