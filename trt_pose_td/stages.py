"""The two stages of the top-down loop on the host: the person detector and the keypoint model on
a batch of person crops (one batched warp, the model in chunks, decoding by registry data).

Both take any :class:`~.engines.Engine` and a :class:`~.preprocess.Preprocessor`; the CPU
pipeline (:mod:`.pipeline`) runs them end to end, the GPU pipeline (:mod:`.gpu_pipeline`) reuses
their host-side parts (crop affines, detector decoding) around its kernels.
"""

from __future__ import annotations

import time
from typing import Dict, Optional, Tuple

import numpy as np

from . import decode, geometry
from .config import PREPROCESSORS
from .decode import KEYPOINT_DECODERS, DetectorParams
from .engines import Engine, check_contract
from .errors import ConfigError
from .models import ModelSpec
from .preprocess import CpuPreprocessor, Preprocessor, warp_with
from .skeleton import flip_permutation
from .types import Detections, Frame, Poses, StageTimes


class Timer:
    """``with timer("stage"):`` adds the elapsed milliseconds to ``times``."""

    def __init__(self, times: Optional[StageTimes]) -> None:
        self.times = times

    def __call__(self, stage: str) -> Timer:
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
        timer = Timer(times)
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
        if spec.decoder not in KEYPOINT_DECODERS:
            raise ConfigError(f"{spec.name} is not a keypoint model (decoder {spec.decoder!r})")
        if refine not in decode.REFINEMENTS:
            raise ConfigError(f"unknown refinement {refine!r}; expected {decode.REFINEMENTS}")
        if max_batch < 1:
            raise ConfigError(f"max batch must be >= 1, not {max_batch}")
        check_contract(engine, spec)
        self.engine, self.spec, self.refine, self.flip = engine, spec, refine, flip
        self.recrop = recrop
        self.decoder = KEYPOINT_DECODERS[spec.decoder]
        self.pre = preprocessor or CpuPreprocessor()
        limit = engine.max_batch
        self.max_batch = min(max_batch, limit) if limit else max_batch
        self._dtype = engine.inputs[spec.input_name].dtype

    def crop_affines(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 2, 3) frame -> crop maps for person boxes (N, 4)."""
        p = self.spec.preprocess
        centers, sizes = geometry.box_to_center_size(boxes, p.aspect, p.padding)
        return geometry.crop_affines(centers, sizes, p.input_size)

    def _decode_roles(self, named: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        return self.decoder.decode(named, self.spec.preprocess.input_size, self.refine,
                                   self.spec.decoder_options)

    def _infer_roles(self, crops: np.ndarray) -> Dict[str, np.ndarray]:
        out = self.engine.infer({self.spec.input_name: crops})
        return {role: out[name] for role, name in self.spec.outputs.items()}

    def _flip_averaged(self, named: Dict[str, np.ndarray], flipped: Dict[str, np.ndarray]
                       ) -> Dict[str, np.ndarray]:
        back = self.decoder.flip_back(flipped, flip_permutation())
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
        timer = Timer(times)
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


def make_preprocessor(name: str) -> Preprocessor:
    """``cv2``: :class:`CpuPreprocessor`; ``twin``: the numpy twin of the GPU crop kernel."""
    if name == "cv2":
        return CpuPreprocessor()
    if name == "twin":
        from .cuda.twins import TwinPreprocessor

        return TwinPreprocessor()
    raise ConfigError(f"unknown preprocessor {name!r}; expected one of {PREPROCESSORS}")
