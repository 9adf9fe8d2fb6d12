"""The measurement functions behind `trt-pose-td bench --video`, on hand-made poses."""

from __future__ import annotations

import numpy as np
import pytest

from trt_pose_td.benchmarks import tracking as tb
from trt_pose_td.types import Poses

from .world import Person


def frame_poses(persons, i, ids, scores=None) -> Poses:
    n = len(persons)
    return Poses(np.stack([p.keypoints(i) for p in persons]) if n else np.zeros((0, 17, 2)),
                 np.full((n, 17), 0.9), np.stack([p.box(i) for p in persons]) if n else
                 np.zeros((0, 4)), np.full(n, 0.9) if scores is None else scores, ids)


A, B = Person((100, 200), (5, 0)), Person((400, 200), (-5, 0))


def test_agreement_counts_missing_and_displaced_persons():
    ref = [frame_poses([A, B], i, [1, 2]) for i in range(4)]
    assert tb.agreement(ref, ref) == pytest.approx(
        {"oks_median": 1.0, "oks_p10": 1.0, "reported": 1.0, "reference_persons": 8})
    got = [frame_poses([A], i, [1]) for i in range(4)]           # B never reported
    assert tb.agreement(got, ref)["reported"] == 0.5
    moved = [Poses(p.keypoints + 6.0, p.keypoint_scores, p.boxes, p.box_scores, p.track_ids)
             for p in ref]
    a = tb.agreement(moved, ref)
    assert 0.3 < a["oks_median"] < 0.95
    low = [frame_poses([A, B], i, [1, 2], np.array([0.9, 0.3])) for i in range(4)]
    assert tb.agreement(low, low)["reference_persons"] == 4      # score < 0.5 not counted


def test_fragmentation_and_id_switches():
    ref = [frame_poses([A, B], i, [1, 2]) for i in range(6)]
    # A's track ends at frame 2 and comes back as 3 while A is still detected: one fragment
    broken = [frame_poses([A, B], i, [1 if i <= 2 else 3, 2]) for i in range(6)]
    assert tb.fragmentation(broken, ref, 10.0) == pytest.approx(
        {"tracks": 3, "fragmented": 1, "tracks_per_minute": 3 / (0.6 / 60)})
    assert tb.fragmentation(ref, ref, 10.0)["fragmented"] == 0
    gt = [{7: A.box(i), 8: B.box(i)} for i in range(6)]
    assert tb.mot_id_switches(ref, gt) == {"id_switches": 0, "matches": 12, "gt_boxes": 12}
    swapped = [frame_poses([A, B], i, [1, 2] if i < 3 else [2, 1]) for i in range(6)]
    assert tb.mot_id_switches(swapped, gt)["id_switches"] == 2


def test_jitter_is_the_median_second_difference():
    still = Person((200, 200), (0, 0))
    poses = [frame_poses([still], i, [1]) for i in range(5)]
    assert tb.jitter(poses) == 0.0
    shaky = [Poses(p.keypoints + (i % 2) * 2.0, p.keypoint_scores, p.boxes, p.box_scores,
                   p.track_ids) for i, p in enumerate(poses)]
    assert tb.jitter(shaky) == pytest.approx(4.0 * np.sqrt(2))
    smoothed = tb.smooth_offline(shaky, [i / 10 for i in range(5)], 1.0, 0.5)
    assert tb.jitter(smoothed) < tb.jitter(shaky) and tb.jitter(smoothed, raw=True) == \
        pytest.approx(tb.jitter(shaky))
