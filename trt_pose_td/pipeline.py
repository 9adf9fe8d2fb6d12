"""The top-down loop: detect persons, crop them all in one warp, run the keypoint model once.

CPU path here (any :class:`~.engines.Engine` + a :class:`~.preprocess.Preprocessor`); the GPU path
(:mod:`trt_pose_td.gpu_pipeline`) implements the same ``__call__(frame) -> FrameResult``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from . import decode, geometry
from .config_checks import PREPROCESSORS, check_pipeline_config, expected_models
from .decode import DetectorParams
from .engines import Engine, check_contract, load_engine
from .engines.base import check_pair
from .errors import ConfigError
from .models import (
    DEFAULT_DETECTOR,
    DEFAULT_POSE,
    ModelSpec,
    get_spec,
    is_model_path,
    spec_for_file,
)
from .preprocess import CpuPreprocessor, Preprocessor, warp_with
from .skeleton import flip_permutation
from .types import Detections, Frame, FrameResult, Poses, StageTimes

log = logging.getLogger(__name__)


class _Timer:
    """``with timer("stage"):`` adds the elapsed milliseconds to ``times``."""

    def __init__(self, times: Optional[StageTimes]) -> None:
        self.times = times

    def __call__(self, stage: str) -> _Timer:
        self.stage = stage
        return self

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if self.times is not None:
            self.times.add(self.stage, (time.perf_counter() - self.t0) * 1e3)


class Detector:
    """Person detector: letterbox warp -> engine -> decoder -> boxes in frame pixels."""

    def __init__(self, engine: Engine, spec: ModelSpec, params: DetectorParams = DetectorParams(),
                 preprocessor: Optional[Preprocessor] = None) -> None:
        if spec.decoder not in decode.DETECTOR_DECODERS:
            raise ConfigError(f"{spec.name} is not a detector (decoder {spec.decoder!r})")
        check_contract(engine, spec)
        self.engine, self.spec, self.params = engine, spec, params
        self.pre = preprocessor or CpuPreprocessor()
        self._decode = decode.DETECTOR_DECODERS[spec.decoder]
        self._dtype = engine.inputs[spec.input_name].dtype

    def input_affine(self, frame: Frame) -> np.ndarray:
        """(2, 3) frame -> detector input map."""
        p = self.spec.preprocess
        return geometry.resize_affine((frame.width, frame.height), p.input_size, p.resize)

    def __call__(self, frame: Frame, times: Optional[StageTimes] = None) -> Detections:
        timer = _Timer(times)
        with timer("det_pre"):
            m = self.input_affine(frame)
            blob = warp_with(self.pre, frame.image, m[None], self.spec.preprocess)
        with timer("det_infer"):
            out = self.engine.infer({self.spec.input_name: blob.astype(self._dtype, copy=False)})
        with timer("det_post"):
            return self.postprocess(out, m, frame)

    def postprocess(self, outputs: Dict[str, np.ndarray], m: np.ndarray, frame: Frame
                    ) -> Detections:
        """Engine outputs (by graph name) + the input affine ``m`` -> boxes in frame pixels."""
        named = {role: outputs[name] for role, name in self.spec.outputs.items()}
        boxes, scores = self._decode(named, self.spec.preprocess.input_size, self.params)
        boxes = geometry.map_boxes(boxes, geometry.invert_affines(m))
        boxes = geometry.clip_boxes(boxes, (frame.width, frame.height))
        keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        return Detections(boxes[keep], scores[keep])


class PoseEstimator:
    """Keypoint model on a batch of person crops (chunked by ``max_batch``; static graphs loop).

    refine: heatmap sub-pixel refinement (:data:`.decode.REFINEMENTS`); flip: also run the
    mirrored crops and average the flipped-back outputs (test-time augmentation, 2x the model
    cost); recrop: pose-guided re-crop, a second pass on the box around each person's confident
    keypoints (about 1.5x the model cost; +2 AP measured, docs/accuracy.md). The heatmap cell
    -> pixel offset is registry data (``decoder_options["cell_offset"]``).
    """

    def __init__(self, engine: Engine, spec: ModelSpec, max_batch: int = 8,
                 refine: str = "dark", preprocessor: Optional[Preprocessor] = None,
                 flip: bool = False, recrop: bool = False) -> None:
        if spec.decoder not in ("heatmap", "simcc"):
            raise ConfigError(f"{spec.name} is not a keypoint model (decoder {spec.decoder!r})")
        if refine not in decode.REFINEMENTS:
            raise ConfigError(f"unknown refinement {refine!r}; expected {decode.REFINEMENTS}")
        if max_batch < 1:
            raise ConfigError(f"max batch must be >= 1, not {max_batch}")
        check_contract(engine, spec)
        self.engine, self.spec, self.refine, self.flip = engine, spec, refine, flip
        self.recrop = recrop
        self.pre = preprocessor or CpuPreprocessor()
        limit = engine.max_batch
        self.max_batch = min(max_batch, limit) if limit else max_batch
        self._dtype = engine.inputs[spec.input_name].dtype

    def crop_affines(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 2, 3) frame -> crop maps for person boxes (N, 4)."""
        p = self.spec.preprocess
        centers, sizes = geometry.box_to_center_size(boxes, p.aspect, p.padding)
        return geometry.crop_affines(centers, sizes, p.input_size)

    def decode(self, outputs: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """Network outputs of a batch -> keypoints (N, 17, 2) in crop-input pixels, scores."""
        return self._decode_roles({role: outputs[name]
                                   for role, name in self.spec.outputs.items()})

    def _decode_roles(self, named: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        opts = self.spec.decoder_options
        if self.spec.decoder == "heatmap":
            return decode.decode_heatmaps(named["heatmaps"], self.spec.preprocess.input_size,
                                          self.refine, float(opts.get("cell_offset", 0.5)))
        ratio = float(opts.get("split_ratio", 2.0))
        return decode.decode_simcc(named["simcc_x"], named["simcc_y"], ratio)

    def _infer_roles(self, crops: np.ndarray) -> Dict[str, np.ndarray]:
        out = self.engine.infer({self.spec.input_name: crops})
        return {role: out[name] for role, name in self.spec.outputs.items()}

    def _flip_averaged(self, named: Dict[str, np.ndarray], flipped: Dict[str, np.ndarray]
                       ) -> Dict[str, np.ndarray]:
        perm = flip_permutation()
        if self.spec.decoder == "heatmap":
            back = {"heatmaps": decode.flip_back_heatmaps(flipped["heatmaps"], perm)}
        else:
            bx, by = decode.flip_back_simcc(flipped["simcc_x"], flipped["simcc_y"], perm)
            back = {"simcc_x": bx, "simcc_y": by}
        return {role: (named[role] + back[role]) * np.float32(0.5) for role in back}

    def __call__(self, frame: Frame, detections: Detections,
                 times: Optional[StageTimes] = None) -> Poses:
        if len(detections) == 0:
            return Poses.empty()
        keypoints, scores = self.estimate(frame, detections.boxes, times)
        if self.recrop:
            self._recrop(frame, detections.boxes, keypoints, scores, times)
        return Poses(keypoints, scores, detections.boxes, detections.scores)

    def _recrop(self, frame: Frame, boxes: np.ndarray, keypoints: np.ndarray,
                scores: np.ndarray, times: Optional[StageTimes]) -> None:
        """Pose-guided re-crop, in place: every person with enough confident keypoints runs again
        on the box around them (:func:`.geometry.keypoint_boxes`), which frames the body better
        than a nano detector's box; the second pass replaces the first."""
        kboxes, usable = geometry.keypoint_boxes(keypoints, scores)
        # a pose squeezed into a corner of its box (< 1/5 of its size) is no better framing
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        kside = np.maximum(kboxes[:, 2] - kboxes[:, 0], kboxes[:, 3] - kboxes[:, 1])
        redo = np.flatnonzero(usable & (kside >= 0.2 * side))
        if len(redo):
            keypoints[redo], scores[redo] = self.estimate(frame, kboxes[redo], times)

    def estimate(self, frame: Frame, boxes: np.ndarray, times: Optional[StageTimes] = None
                 ) -> Tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, 17, 2) float32 (pixels, original frame) and scores (N, 17) for person
        boxes (N, 4): one batched warp, the model in chunks of ``max_batch``, decoding."""
        timer = _Timer(times)
        with timer("crop"):
            affines = self.crop_affines(boxes)
            crops = warp_with(self.pre, frame.image, affines, self.spec.preprocess)
            crops = crops.astype(self._dtype, copy=False)
            if self.flip:
                mirrored = warp_with(self.pre, frame.image,
                                     geometry.mirror_affines(affines, self.spec.preprocess
                                                             .input_size[0]),
                                     self.spec.preprocess).astype(self._dtype, copy=False)
        kpts, scores = [], []
        for start in range(0, len(crops), self.max_batch):
            chunk = slice(start, start + self.max_batch)
            with timer("pose_infer"):
                named = self._infer_roles(crops[chunk])
                if self.flip:
                    named = self._flip_averaged(named, self._infer_roles(mirrored[chunk]))
            with timer("pose_post"):
                k, s = self._decode_roles(named)
            kpts.append(k)
            scores.append(s)
        with timer("pose_post"):
            keypoints = geometry.apply_affines(np.concatenate(kpts),
                                               geometry.invert_affines(affines))
        return keypoints, np.concatenate(scores)


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that selects and tunes the pipeline (CLI flags and TOML map onto it).

    detector / pose: registry names or ONNX paths (a path needs ``*_like`` naming the registry
    model whose contract it follows); detector_input: (W, H) or None for the model's default
    (RTMDet: 416; that and the 0.2 score threshold were measured: docs/accuracy.md);
    pose_max_batch: persons per keypoint-model call; threads: ONNX Runtime intra-op threads;
    flip: flip test-time augmentation of the keypoint model; recrop: pose-guided re-crop (see
    :class:`PoseEstimator`) (both CPU pipeline only).

    backend: ``onnxruntime``, ``tensorrt`` (the GPU pipeline) or ``auto`` (TensorRT when it, a GPU
    and both engines are present); preprocessor: the CPU warp, ``cv2`` or ``twin`` (the numpy twin
    of the GPU crop kernel); engine_dir: folder of the TensorRT engines (default
    ``<cache>/engines``); precision: ``fp32``, ``fp16`` or ``int8`` (None = fp32 on ONNX Runtime,
    fp16 on TensorRT); on ONNX Runtime ``int8`` resolves registry models to their Q/DQ files made by
    ``trt-pose-td quantize`` (:func:`trt_pose_td.quantize.quantized_path`), on TensorRT to the
    ``int8-<int8_mode>`` engines.
    """

    detector: str = DEFAULT_DETECTOR
    pose: str = DEFAULT_POSE
    detector_like: str = DEFAULT_DETECTOR
    pose_like: str = DEFAULT_POSE
    detector_input: Optional[Tuple[int, int]] = None
    score_threshold: float = 0.2
    iou_threshold: float = 0.6
    max_persons: int = 100
    pose_max_batch: int = 8
    refine: str = "dark"
    box_padding: float = 1.25
    flip: bool = False
    recrop: bool = False
    backend: str = "onnxruntime"
    threads: Optional[int] = None
    preprocessor: str = "cv2"
    engine_dir: Optional[str] = None
    precision: Optional[str] = None
    int8_mode: Optional[str] = None

    def __post_init__(self) -> None:
        check_pipeline_config(self)  # ConfigError naming the field and its flag

    def as_dict(self) -> dict:
        return asdict(self)


#: Precisions on ONNX Runtime (``int8``: the Q/DQ ONNX files; fp16 needs TensorRT).
CPU_PRECISIONS = ("fp32", "int8")


def cpu_config(cfg: PipelineConfig) -> PipelineConfig:
    """``cfg`` for the ONNX Runtime pipeline: precision checked, int8 mapped to Q/DQ files."""
    precision = cfg.precision or "fp32"
    if precision not in CPU_PRECISIONS:
        raise ConfigError(f"precision {precision} needs TensorRT (--backend tensorrt); ONNX "
                          f"Runtime runs {' or '.join(CPU_PRECISIONS)}")
    if precision == "int8":
        from .quantize import int8_config

        return int8_config(cfg)
    return cfg


def resolve_spec(name_or_path: str, task: str, like: str) -> ModelSpec:
    """A registry spec by name, or a spec for an ONNX path following registry model ``like``."""
    if is_model_path(name_or_path):
        return spec_for_file(name_or_path, like)
    return get_spec(name_or_path, task)


def int8_model(name_or_path: str, like: str) -> Tuple[str, str]:
    """(model, like) that serve ``name_or_path`` as an explicit-INT8 (Q/DQ) model: a registry
    model whose in-graph NMS stays out of INT8 is replaced by its twin (RTMDet-nano NMS ->
    raw head + our NMS); paths are kept."""
    if is_model_path(name_or_path):
        return name_or_path, like
    from .quantize import int8_source

    twin = int8_source(name_or_path)
    return twin, twin


def resolve_specs(cfg: PipelineConfig) -> Tuple[ModelSpec, ModelSpec, DetectorParams]:
    """The detector and keypoint specs ``cfg`` selects (input size, box padding applied) and the
    detector thresholds. Explicit INT8 (precision int8, Q/DQ) selects the registry's INT8 twins."""
    from dataclasses import replace

    detector, detector_like = cfg.detector, cfg.detector_like
    if cfg.precision == "int8" and (cfg.int8_mode or "qdq") == "qdq":
        detector, detector_like = int8_model(detector, detector_like)
    det_spec = resolve_spec(detector, "detector", detector_like)
    det_spec = det_spec.with_input_size(cfg.detector_input)
    pose_spec = resolve_spec(cfg.pose, "pose", cfg.pose_like)
    if cfg.box_padding != pose_spec.preprocess.padding:
        pose_spec = replace(pose_spec, preprocess=replace(pose_spec.preprocess,
                                                          padding=cfg.box_padding))
    return det_spec, pose_spec, DetectorParams(cfg.score_threshold, cfg.iou_threshold,
                                               cfg.max_persons)


def make_preprocessor(name: str) -> Preprocessor:
    """``cv2``: :class:`CpuPreprocessor`; ``twin``: the numpy twin of the GPU crop kernel."""
    if name == "cv2":
        return CpuPreprocessor()
    if name == "twin":
        from .cuda.twins import TwinPreprocessor

        return TwinPreprocessor()
    raise ConfigError(f"unknown preprocessor {name!r}; expected one of {PREPROCESSORS}")


class TopDownPipeline:
    """Detector + keypoint model. ``pipeline(frame) -> FrameResult``; close() releases both."""

    def __init__(self, detector: Detector, pose: PoseEstimator) -> None:
        self.detector, self.pose = detector, pose

    @classmethod
    def from_config(cls, cfg: PipelineConfig, progress: bool = True) -> TopDownPipeline:
        """Fetch (if needed) and load both models as ``cfg`` says.

        ``backend`` tensorrt (or auto, where TensorRT, a GPU and the engines are present) returns
        the GPU pipeline (:class:`trt_pose_td.gpu_pipeline.GpuPipeline`, a subclass).
        """
        from .assets import model_path

        if cls is TopDownPipeline:
            from .backend import resolve_backend

            if resolve_backend(cfg) == "tensorrt":
                from .gpu_pipeline import GpuPipeline

                return GpuPipeline.from_config(cfg, progress)
        cfg = cpu_config(cfg)
        det_spec, pose_spec, params = resolve_specs(cfg)
        pre = make_preprocessor(cfg.preprocessor)
        det_engine = load_engine(model_path(det_spec, progress), "onnxruntime", cfg.threads)
        try:
            pose_engine = load_engine(model_path(pose_spec, progress), "onnxruntime", cfg.threads)
        except BaseException:
            det_engine.close()
            raise
        try:
            check_pair(det_engine, det_spec, pose_engine, pose_spec, expected_models(cfg))
            return cls(Detector(det_engine, det_spec, params, pre),
                       PoseEstimator(pose_engine, pose_spec, cfg.pose_max_batch, cfg.refine, pre,
                                     flip=cfg.flip, recrop=cfg.recrop))
        except BaseException:
            det_engine.close()
            pose_engine.close()
            raise

    def __call__(self, frame: Frame) -> FrameResult:
        times = StageTimes()
        t0 = time.perf_counter()
        detections = self.detector(frame, times)
        poses = self.pose(frame, detections, times)
        times["total"] = (time.perf_counter() - t0) * 1e3
        return FrameResult(frame, poses, times)

    def run(self, frames: Iterator[Frame]) -> Iterator[FrameResult]:
        for frame in frames:
            yield self(frame)

    def close(self) -> None:
        self.detector.engine.close()
        self.pose.engine.close()

    def __enter__(self) -> TopDownPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def summarize_times(all_times: List[StageTimes]) -> Dict[str, Dict[str, float]]:
    """Per stage: mean, median and p90 milliseconds over frames (stages in first-seen order)."""
    stages: List[str] = []
    for t in all_times:
        stages.extend(s for s in t if s not in stages)
    out: Dict[str, Dict[str, float]] = {}
    for s in stages:
        v = np.array([t.get(s, 0.0) for t in all_times], np.float64)
        out[s] = {"mean": float(v.mean()), "median": float(np.median(v)),
                  "p90": float(np.percentile(v, 90)), "n": int(len(v))}
    return out
