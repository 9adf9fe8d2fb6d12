"""One-euro smoothing: less jitter, same mean position, bounded lag, timestamp-driven."""

from __future__ import annotations

import numpy as np

from trt_pose_td.tracking import PoseTracker, TrackerConfig
from trt_pose_td.tracking.smoothing import OneEuroFilter

from .world import Person, World


def second_difference(track: np.ndarray) -> float:
    """Median |x[t+1] - 2 x[t] + x[t-1]| over frames and keypoints of (T, 17, 2)."""
    return float(np.median(np.linalg.norm(track[2:] - 2 * track[1:-1] + track[:-2], axis=-1)))


def tracked(smooth: bool, velocity=(0.0, 0.0), n: int = 60, beta: float = 0.5):
    world = World([Person((200, 240), velocity)], noise=2.0, seed=3)
    tracker = PoseTracker(TrackerConfig(smooth=smooth, beta=beta))
    out = [p for _, p in tracker.stream(world.frames(n), world.detect, world.estimate)]
    assert all(p.track_ids.tolist() == [1] for p in out)
    truth = np.stack([world.persons[0].keypoints(i) for i in range(n)])
    return out, truth


def test_smoothing_reduces_jitter_and_keeps_the_mean():
    out, _ = tracked(True)
    smooth = np.stack([p.keypoints[0] for p in out])
    raw = np.stack([p.keypoints_raw[0] for p in out])
    assert second_difference(smooth) < 0.5 * second_difference(raw)
    # same person, same place on average (a still person: no lag to excuse)
    assert np.abs(smooth[10:].mean(axis=0) - raw[10:].mean(axis=0)).max() < 1.0
    plain, _ = tracked(False)
    assert plain[0].keypoints_raw is None


def test_smoothing_follows_a_walking_person():
    def run(beta: float):
        out, truth = tracked(True, velocity=(8.0, 0.0), n=40, beta=beta)  # 80 px/s, 160 px tall
        smooth = np.stack([p.keypoints[0] for p in out])
        raw = np.stack([p.keypoints_raw[0] for p in out])
        return smooth, raw, np.abs(smooth[20:] - truth[20:]).mean(axis=(0, 1))[0]

    smooth, raw, lag = run(0.5)
    assert second_difference(smooth) < 0.6 * second_difference(raw)
    # about one frame's motion behind (8 px), and well ahead of the same filter without its
    # speed term (a plain 1 Hz low-pass)
    assert lag < 10.0 and lag < 0.7 * run(0.0)[2]


def test_filter_is_driven_by_timestamps():
    # the same motion sampled at 10 and 30 fps ends at the same lag (time, not frame count)
    def lag(fps: float) -> float:
        f = OneEuroFilter(1.0, 0.5)
        out = None
        for i in range(int(3 * fps)):
            t = i / fps
            out = f(np.array([[50.0 * t, 0.0]]), t, 100.0)
        return float(50.0 * (int(3 * fps) - 1) / fps - out[0, 0])
    assert abs(lag(10.0) - lag(30.0)) < 0.25 * lag(10.0)
