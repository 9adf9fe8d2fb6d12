"""The two stages of the top-down loop on the host: the person detector and the keypoint model on
a batch of person crops (one batched warp, the model in chunks, decoding by registry data).

Both take any :class:`~.engines.Engine` and a :class:`~.preprocess.Preprocessor`; the CPU
pipeline (:mod:`.cpu`) runs them end to end, the GPU pipeline (:mod:`.gpu`) reuses
their host-side parts (crop affines, detector decoding) around its kernels.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import decode, geometry
from ..config import PREPROCESSORS
from ..decode import KEYPOINT_DECODERS, DetectorParams
from ..engines import Engine, check_contract
from ..errors import ConfigError
from ..models import ModelSpec
from ..preprocess import CpuPreprocessor, Preprocessor, warp_with
from ..skeleton import NUM_KEYPOINTS, flip_permutation
from ..types import Detections, Frame, Poses, StageTimes


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
        return self.detect_many([frame], [times])[0]

    def detect_many(self, frames: Sequence[Frame], times: Sequence[Optional[StageTimes]],
                    calls: Optional[List[int]] = None) -> List[Detections]:
        """Boxes of each frame: every frame letterboxed to the one input size, the engine run
        on chunks of its batch limit (one run for a dynamic batch, one per frame for a static
        batch-1 graph), each item decoded on its own. ``times[i]`` gets frame i's own warp and
        decode and its share of each run; ``calls`` (if given) gets each run's batch size."""
        affines, blobs = [], []
        for frame, t in zip(frames, times):
            with Timer(t)("det_pre"):
                m = self.input_affine(frame)
                blobs.append(warp_with(self.pre, frame.image, m[None], self.spec.preprocess))
                affines.append(m)
        blob = np.concatenate(blobs).astype(self._dtype, copy=False)
        step = self.engine.max_batch or len(frames)
        found: List[Detections] = []
        for start in range(0, len(frames), step):
            stop = min(start + step, len(frames))
            t0 = time.perf_counter()
            out = self.engine.infer({self.spec.input_name: blob[start:stop]})
            share_times(times[start:stop], "det_infer", t0, [1] * (stop - start))
            if calls is not None:
                calls.append(stop - start)
            for i in range(start, stop):
                with Timer(times[i])("det_post"):
                    item = {name: value[i - start:i - start + 1] for name, value in out.items()}
                    found.append(self.postprocess(item, affines[i], frames[i]))
        return found

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
        return self.call_many([frame], [detections], [times])[0]

    def call_many(self, frames: Sequence[Frame], detections: Sequence[Detections],
                  times: Sequence[Optional[StageTimes]], calls: Optional[List[int]] = None
                  ) -> List[Poses]:
        """Poses of every frame from its boxes, every person of every frame in one keypoint
        batch (chunked by ``max_batch``); ``calls`` (if given) gets each run's batch size."""
        boxes = [d.boxes for d in detections]
        found = self.estimate_many(frames, boxes, times, calls)
        if self.recrop:
            self._recrop(frames, boxes, found, times, calls)
        return [Poses(k, s, d.boxes, d.scores) if len(d) else Poses.empty()
                for (k, s), d in zip(found, detections)]

    def _recrop(self, frames: Sequence[Frame], boxes: Sequence[np.ndarray],
                found: List[Tuple[np.ndarray, np.ndarray]],
                times: Sequence[Optional[StageTimes]], calls: Optional[List[int]]) -> None:
        """Pose-guided re-crop, in place: every person with enough confident keypoints runs again
        on the box around them (:func:`..geometry.keypoint_boxes`), which frames the body better
        than a nano detector's box; the second pass (one batch over all frames) replaces the
        first."""
        redo, kboxes = recrop_boxes(found, boxes)
        if any(len(r) for r in redo):
            apply_recrop(found, redo, self.estimate_many(frames, kboxes, times, calls))

    def estimate(self, frame: Frame, boxes: np.ndarray, times: Optional[StageTimes] = None
                 ) -> Tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, 17, 2) float32 (pixels, original frame) and scores (N, 17) for person
        boxes (N, 4): one batched warp, the model in chunks of ``max_batch``, decoding."""
        return self.estimate_many([frame], [boxes], [times])[0]

    def estimate_many(self, frames: Sequence[Frame], boxes: Sequence[np.ndarray],
                      times: Sequence[Optional[StageTimes]], calls: Optional[List[int]] = None
                      ) -> List[Tuple[np.ndarray, np.ndarray]]:
        """:meth:`estimate` for several frames at once: each frame's crops warped from its own
        image, then the crops of all frames run through the model as one batch in chunks of
        ``max_batch`` and split back. Per frame: keypoints (N_i, 17, 2) float32 (pixels, that
        frame) and scores (N_i, 17). ``times[i]`` gets frame i's warp and its share of each
        chunk (by persons); ``calls`` (if given) gets each chunk's size."""
        counts = [len(b) for b in boxes]
        affines, crops, mirrored = [], [], []
        for frame, b, t in zip(frames, boxes, times):
            if len(b):
                with Timer(t)("crop"):
                    affines.append(self.crop_affines(b))
                    crops.append(self._warp(frame, affines[-1]))
                    if self.flip:
                        mirrored.append(self._warp(frame, geometry.mirror_affines(
                            affines[-1], self.spec.preprocess.input_size[0])))
        if not crops:
            return [no_keypoints() for _ in frames]
        owner = np.repeat(np.arange(len(frames)), counts)
        batch = np.concatenate(crops)
        flipped = np.concatenate(mirrored) if self.flip else None
        kpts, scores = [], []
        for start in range(0, len(batch), self.max_batch):
            chunk = slice(start, start + self.max_batch)
            sizes = np.bincount(owner[chunk], minlength=len(frames))
            t0 = time.perf_counter()
            named = self._infer_roles(batch[chunk])
            if flipped is not None:
                named = self._flip_averaged(named, self._infer_roles(flipped[chunk]))
            share_times(times, "pose_infer", t0, sizes)
            if calls is not None:
                calls.append(len(batch[chunk]))
            t0 = time.perf_counter()
            k, s = self._decode_roles(named)
            share_times(times, "pose_post", t0, sizes)
            kpts.append(k)
            scores.append(s)
        return self._split(np.concatenate(kpts), np.concatenate(scores), counts, affines, times)

    def _warp(self, frame: Frame, affines: np.ndarray) -> np.ndarray:
        crops = warp_with(self.pre, frame.image, affines, self.spec.preprocess)
        return crops.astype(self._dtype, copy=False)

    @staticmethod
    def _split(kpts: np.ndarray, scores: np.ndarray, counts: Sequence[int],
               affines: List[np.ndarray], times: Sequence[Optional[StageTimes]]
               ) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Crop-frame keypoints of all frames -> per frame, mapped back to that frame."""
        out, start, used = [], 0, iter(affines)
        for n, t in zip(counts, times):
            if not n:
                out.append(no_keypoints())
                continue
            with Timer(t)("pose_post"):
                back = geometry.invert_affines(next(used))
                out.append((geometry.apply_affines(kpts[start:start + n], back),
                            scores[start:start + n]))
            start += n
        return out


def recrop_boxes(found: Sequence[Tuple[np.ndarray, np.ndarray]], boxes: Sequence[np.ndarray]
                 ) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """Who the pose-guided re-crop runs again, per frame: the indices of the persons with enough
    confident keypoints (:func:`..geometry.keypoint_boxes`) whose keypoint box is at least 1/5 of
    their box's size, and those keypoint boxes (M_i, 4) float32 (frame pixels). found: per frame
    keypoints (N_i, K, 2) and scores (N_i, K); boxes: per frame the boxes (N_i, 4) they came
    from. Both pipelines use it (:meth:`PoseEstimator._recrop`, the GPU pipeline)."""
    redo, kboxes = [], []
    for (keypoints, scores), b in zip(found, boxes):
        kb, usable = geometry.keypoint_boxes(keypoints, scores)
        # a pose squeezed into a corner of its box (< 1/5 of its size) is no better framing
        side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
        kside = np.maximum(kb[:, 2] - kb[:, 0], kb[:, 3] - kb[:, 1])
        redo.append(np.flatnonzero(usable & (kside >= 0.2 * side)))
        kboxes.append(kb[redo[-1]])
    return redo, kboxes


def apply_recrop(found: List[Tuple[np.ndarray, np.ndarray]], redo: Sequence[np.ndarray],
                 again: Sequence[Tuple[np.ndarray, np.ndarray]]) -> None:
    """The second pass replaces the first for the persons :func:`recrop_boxes` chose (in place)."""
    for (keypoints, scores), r, (k, s) in zip(found, redo, again):
        keypoints[r], scores[r] = k, s


def no_keypoints() -> Tuple[np.ndarray, np.ndarray]:
    return (np.zeros((0, NUM_KEYPOINTS, 2), np.float32),
            np.zeros((0, NUM_KEYPOINTS), np.float32))


def share_times(times: Sequence[Optional[StageTimes]], stage: str, t0: float,
                weights: Union[Sequence[int], np.ndarray]) -> None:
    """Split the milliseconds since ``t0`` (perf_counter) among ``times`` by ``weights`` (a
    frame's persons in a shared keypoint chunk, 1 each in a detector run), so the frames' stage
    times of one batch add up to its cost."""
    share_ms(times, stage, (time.perf_counter() - t0) * 1e3, weights)


def share_ms(times: Sequence[Optional[StageTimes]], stage: str, ms: float,
             weights: Union[Sequence[int], np.ndarray]) -> None:
    """Split ``ms`` among ``times`` by ``weights`` (see :func:`share_times`)."""
    total = float(sum(weights))
    for t, w in zip(times, weights):
        if t is not None and w:
            t.add(stage, float(ms * w / total))


def make_preprocessor(name: str) -> Preprocessor:
    """``cv2``: :class:`CpuPreprocessor`; ``twin``: the numpy twin of the GPU crop kernel."""
    if name == "cv2":
        return CpuPreprocessor()
    if name == "twin":
        from ..cuda.twins import TwinPreprocessor

        return TwinPreprocessor()
    raise ConfigError(f"unknown preprocessor {name!r}; expected one of {PREPROCESSORS}")
