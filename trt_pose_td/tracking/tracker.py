"""PoseTracker: stable person IDs, skip-frame detection and keypoint smoothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from ..errors import ConfigError
from ..types import Frame, Poses
from .matching import assign, similarity
from .motion import MOTIONS, make_motion
from .skipframe import Detect, DetectionSchedule, Estimate, follow_tracks
from .smoothing import OneEuroFilter
from .state import KEYPOINT_MIN_SCORE, Track, box_height, pose_centre

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackerConfig:
    """Tracking options (defaults measured on vtest.avi, docs/tracking.md).

    det_every: run the detector every K-th frame (1 = every frame); high_score: detections at or
    above take part in the first association stage, the others only in the second (ByteTrack);
    new_track_score: an unmatched person starts a track only at or above this box score;
    min_similarity / low_min_similarity: least IoU+OKS similarity to match in stage 1 / 2;
    iou_weight: share of box IoU in the similarity (the rest is OKS); max_missed: frames a
    track survives unseen; motion: ``kalman``, ``ema`` or ``none``; max_predict_s: seconds
    of motion a track is predicted past its last sighting at most; collapse_score: between
    detections, a followed track whose mean keypoint score falls below this is dropped;
    smooth: one-euro filter on the output keypoints with min_cutoff (Hz), beta (per person
    height / s) and d_cutoff (Hz); default_fps: the clock when timestamps do not increase.
    """

    det_every: int = 1
    high_score: float = 0.5
    new_track_score: float = 0.5
    min_similarity: float = 0.2
    low_min_similarity: float = 0.4
    iou_weight: float = 0.5
    max_missed: int = 30
    motion: str = "kalman"
    max_predict_s: float = 0.5
    collapse_score: float = 0.3
    detect_when_empty: bool = True
    smooth: bool = False
    min_cutoff: float = 1.0
    beta: float = 0.5
    d_cutoff: float = 1.0
    default_fps: float = 30.0

    def __post_init__(self) -> None:
        if self.det_every < 1:
            raise ConfigError(f"det_every must be >= 1, not {self.det_every}")
        if self.max_predict_s < 0:
            raise ConfigError(f"max_predict_s must be >= 0, not {self.max_predict_s}")
        if self.max_missed < 0:
            raise ConfigError(f"max_missed must be >= 0, not {self.max_missed}")
        if self.motion not in MOTIONS:
            raise ConfigError(f"unknown motion model {self.motion!r}; expected one of {MOTIONS}")
        if not 0.0 <= self.iou_weight <= 1.0:
            raise ConfigError(f"iou_weight must be in [0, 1], not {self.iou_weight}")
        if self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0:
            raise ConfigError("one-euro parameters: min_cutoff, d_cutoff > 0 and beta >= 0")


class PoseTracker:
    """Gives every person an integer ``track_id`` that stays while the person is in view.

    ``step(frame, detect, estimate)`` runs one frame (detection or keypoint-only, as the
    schedule says) and returns its :class:`Poses` with ``track_ids``; ``update(poses, t)``
    associates persons a pipeline already found. IDs start at 1 and are never reused; a person
    no track takes (a low-score box left over, or an unmatched box below ``new_track_score``)
    is kept in the output with ``track_id`` -1.
    """

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self.tracks: List[Track] = []
        self.schedule = DetectionSchedule(config.det_every, config.detect_when_empty)
        self._next_id = 1
        self._t: Optional[float] = None
        self.detections_run = 0

    # -- time -------------------------------------------------------------------------------
    def _clock(self, timestamp: float) -> float:
        """Seconds of this frame: its timestamp, or last + 1/default_fps when not increasing."""
        t = float(timestamp)
        if self._t is not None and t <= self._t:
            t = self._t + 1.0 / self.config.default_fps
        self._t = t
        return t

    # -- one frame --------------------------------------------------------------------------
    def step(self, frame: Frame, detect: Detect, estimate: Estimate) -> Poses:
        """Track ``frame``: detect and associate, or follow active tracks by keypoints only."""
        if self.schedule.due(sum(tr.active for tr in self.tracks)):
            self.detections_run += 1
            detections = detect(frame)
            if len(detections):
                keypoints, scores = estimate(frame, detections.boxes)
                poses = Poses(keypoints, scores, detections.boxes, detections.scores)
            else:
                poses = Poses.empty()
            return self.update(poses, frame.timestamp)
        return self.follow(frame, estimate)

    def stream(self, frames: Iterable[Frame], detect: Detect, estimate: Estimate
               ) -> Iterator[Tuple[Frame, Poses]]:
        """``step`` over ``frames`` in order."""
        for frame in frames:
            yield frame, self.step(frame, detect, estimate)

    def update(self, poses: Poses, timestamp: float) -> Poses:
        """Associate a detection frame's persons with the tracks (two stages), start new tracks,
        age the others. Returns ``poses`` with ``track_ids`` (and smoothed keypoints)."""
        t = self._clock(timestamp)
        ids = np.full(len(poses), -1, np.int64)
        high = np.flatnonzero(poses.box_scores >= self.config.high_score)
        low = np.flatnonzero(poses.box_scores < self.config.high_score)
        pairs, left = self._match(list(range(len(self.tracks))), poses, high, t,
                                  self.config.min_similarity)
        active_left = [i for i in left if self.tracks[i].active]
        pairs2, _ = self._match(active_left, poses, low, t, self.config.low_min_similarity)
        seen = set()
        for ti, di in pairs + pairs2:
            track = self.tracks[ti]
            track.observe(poses.keypoints[di], poses.keypoint_scores[di], poses.boxes[di],
                          float(poses.box_scores[di]), t)
            ids[di] = track.track_id
            seen.add(track.track_id)
        for di in high.tolist():
            if ids[di] < 0 and poses.box_scores[di] >= self.config.new_track_score:
                track = self._new_track(poses[di], t)
                ids[di] = track.track_id
                seen.add(track.track_id)
        self._age(seen)
        return self._output(poses, ids)

    def follow(self, frame: Frame, estimate: Estimate) -> Poses:
        """A frame without detection: the keypoint model on each active track's pose-guided box
        (see :mod:`.skipframe`); collapsed tracks become lost."""
        t = self._clock(frame.timestamp)
        active = [tr for tr in self.tracks if tr.active]
        kept, keypoints, scores = follow_tracks(active, frame, t, estimate,
                                                self.config.collapse_score)
        boxes = np.zeros((len(kept), 4), np.float32)
        for row, i in enumerate(kept):
            track = active[i]
            centre = pose_centre(keypoints[row], scores[row], track.box)
            boxes[row] = track.box + np.tile(centre - track.centre, 2).astype(np.float32)
            track.observe(keypoints[row], scores[row], boxes[row], None, t)
        self._age({active[i].track_id for i in kept})
        followed = [active[i] for i in kept]
        poses = Poses(keypoints, scores, boxes,
                      np.array([tr.score for tr in followed], np.float32))
        return self._output(poses, np.array([tr.track_id for tr in followed], np.int64))

    # -- helpers ----------------------------------------------------------------------------
    def _match(self, track_idx: List[int], poses: Poses, persons: np.ndarray, t: float,
               min_similarity: float) -> Tuple[List[Tuple[int, int]], List[int]]:
        """Pairs (track index, person index) and the track indices left unmatched."""
        if not track_idx or len(persons) == 0:
            return [], list(track_idx)
        predicted = [self.tracks[i].predicted(t) for i in track_idx]
        sim = similarity(np.stack([b for b, _ in predicted]), np.stack([k for _, k in predicted]),
                         np.stack([self.tracks[i].scores for i in track_idx]),
                         poses.boxes[persons], poses.keypoints[persons], self.config.iou_weight,
                         KEYPOINT_MIN_SCORE)
        pairs, rows, _ = assign(sim, min_similarity)
        return ([(track_idx[r], int(persons[c])) for r, c in pairs],
                [track_idx[r] for r in rows])

    def _new_track(self, person: Poses, t: float) -> Track:
        kp, sc, box = person.keypoints[0], person.keypoint_scores[0], person.boxes[0]
        centre = pose_centre(kp, sc, box)
        cfg = self.config
        smoother = (OneEuroFilter(cfg.min_cutoff, cfg.beta, cfg.d_cutoff) if cfg.smooth
                    else None)
        track = Track(self._next_id, kp.copy(), sc.copy(), box.copy(),
                      float(person.box_scores[0]),
                      make_motion(cfg.motion, centre, t, box_height(box)), centre, smoother,
                      cfg.max_predict_s)
        if smoother is not None:
            track.smoothed = smoother(kp, t, box_height(box))
        self._next_id += 1
        self.tracks.append(track)
        return track

    def _age(self, seen: set) -> None:
        """Tracks not in ``seen`` miss a frame; those missed too long are dropped for good."""
        for track in self.tracks:
            if track.track_id not in seen:
                track.missed += 1
        dropped = [tr.track_id for tr in self.tracks if tr.missed > self.config.max_missed]
        if dropped:
            log.debug("tracks ended: %s", dropped)
            self.tracks = [tr for tr in self.tracks if tr.missed <= self.config.max_missed]

    def _output(self, poses: Poses, ids: np.ndarray) -> Poses:
        if not self.config.smooth:
            return Poses(poses.keypoints, poses.keypoint_scores, poses.boxes, poses.box_scores,
                         ids)
        by_id: Dict[int, Track] = {tr.track_id: tr for tr in self.tracks}
        smoothed = poses.keypoints.copy()
        for row, tid in enumerate(ids):
            track = by_id.get(int(tid))
            if track is not None and track.smoothed is not None:
                smoothed[row] = track.smoothed
        return Poses(smoothed, poses.keypoint_scores, poses.boxes, poses.box_scores, ids,
                     poses.keypoints)
