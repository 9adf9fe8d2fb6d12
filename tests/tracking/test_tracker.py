"""PoseTracker on synthetic scenes: identity through crossings, gaps and exits; skip-frame
detection; no ID reuse."""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import pytest

from trt_pose_td.errors import ConfigError
from trt_pose_td.tracking import PoseTracker, TrackerConfig
from trt_pose_td.types import Poses

from .world import Person, World


def run(world: World, n: int, config: TrackerConfig) -> List[Poses]:
    tracker = PoseTracker(config)
    return [p for _, p in tracker.stream(world.frames(n), world.detect, world.estimate)]


def identities(world: World, out: List[Poses]) -> Dict[int, set]:
    """true person index -> the set of track ids it was reported under."""
    ids: Dict[int, set] = {}
    for i, poses in enumerate(out):
        assert poses.track_ids is not None
        for kp, tid in zip(poses.keypoints, poses.track_ids):
            ids.setdefault(world.who(i, kp), set()).add(int(tid))
    return ids


@pytest.mark.parametrize("det_every", [1, 3])
@pytest.mark.parametrize("motion", ["kalman", "ema"])
def test_ids_stable_across_a_crossing(det_every, motion):
    # two people walk through each other (boxes overlap fully at frame 10), one nearer
    world = World([Person((100, 240), (22, 0), 70, 180), Person((540, 260), (-22, 0), 60, 160)],
                  noise=1.0)
    out = run(world, 21, TrackerConfig(det_every=det_every, motion=motion))
    ids = identities(world, out)
    assert ids[0] != ids[1] and len(ids[0]) == 1 and len(ids[1]) == 1, ids
    assert all(len(p) == 2 for p in out)


@pytest.mark.parametrize("det_every", [1, 3])
@pytest.mark.parametrize("motion", ["kalman", "ema"])
def test_motion_carries_ids_through_a_head_on_crossing(det_every, motion):
    # same size, same height: at frame 10 the two are indistinguishable; only motion tells
    # who is who afterwards (the crossing frame itself is left out of the check)
    def crossing(motion: str, det_every: int) -> Dict[int, set]:
        world = World([Person((100, 240), (22, 0)), Person((540, 240), (-22, 0))], noise=1.0)
        out = run(world, 21, TrackerConfig(det_every=det_every, motion=motion))
        out[10] = out[10][0:0]
        return identities(world, out)

    ids = crossing(motion, det_every)
    assert ids[0] != ids[1] and len(ids[0]) == 1 and len(ids[1]) == 1, ids
    # without a motion model the same scene swaps identities
    assert crossing("none", 1)[0] == {1, 2}


def test_recovery_after_missed_detections():
    person = Person((100, 240), (15, 0), undetected={5, 6, 7})
    world = World([person, Person((500, 240), (0, 0))])
    out = run(world, 15, TrackerConfig(max_missed=5))
    assert len(out[6]) == 1                     # the missed person is not reported meanwhile
    ids = identities(world, out)
    assert len(ids[0]) == 1 and len(ids[1]) == 1 and ids[0] != ids[1]


def test_ids_never_reused():
    # A is lost for longer than max_missed; B appears where A was; A comes back: all new ids
    a = Person((200, 240), (0, 0), undetected=set(range(4, 12)))
    b = Person((200, 240), (0, 0), first=13, last=20)
    world = World([a])
    tracker = PoseTracker(TrackerConfig(max_missed=3))
    seen = []
    for frame in world.frames(12):
        seen.extend(tracker.step(frame, world.detect, world.estimate).track_ids.tolist())
    assert set(seen) == {1} and tracker.tracks == []
    world.persons = [b]
    for frame in World([b]).frames(16)[12:]:
        seen.extend(tracker.step(frame, world.detect, world.estimate).track_ids.tolist())
    assert set(seen) == {1, 2}


def test_unconfident_persons_get_no_track():
    world = World([Person((200, 240), (0, 0))])
    tracker = PoseTracker(TrackerConfig(new_track_score=0.95))
    poses = tracker.step(world.frames(1)[0], world.detect, world.estimate)
    assert poses.track_ids.tolist() == [-1] and tracker.tracks == []


def test_det_every_longer_than_the_video():
    world = World([Person((100, 200), (8, 0)), Person((500, 300), (-6, 2))])
    out = run(world, 20, TrackerConfig(det_every=1000))
    assert world.detect_calls == 1 and world.estimate_calls == 20
    ids = identities(world, out)
    assert all(len(p) == 2 for p in out) and len(ids[0]) == len(ids[1]) == 1
    # the keypoint model followed each person (keypoints on the true ones at the last frame)
    last = out[-1]
    for kp in last.keypoints:
        assert np.abs(kp - world.persons[world.who(19, kp)].keypoints(19)).max() < 1e-3


def test_new_people_appear_at_the_next_detection():
    world = World([Person((100, 200), (0, 0)), Person((400, 200), (0, 0), first=2)])
    out = run(world, 10, TrackerConfig(det_every=5))
    assert [len(p) for p in out] == [1, 1, 1, 1, 1, 2, 2, 2, 2, 2]


@pytest.mark.parametrize("det_every", [1, 4])
def test_a_track_leaving_the_frame(det_every):
    world = World([Person((500, 240), (30, 0)), Person((100, 240), (0, 0))])
    tracker = PoseTracker(TrackerConfig(det_every=det_every, max_missed=3))
    out = [p for _, p in tracker.stream(world.frames(20), world.detect, world.estimate)]
    gone = min(i for i in range(20) if 0 not in world.visible(i))
    # reported no longer than it is visible (its box, moved on, finds no keypoints), forgotten
    # for good max_missed frames later; the other person keeps its id throughout
    assert all(len(p) == 1 for p in out[gone + 1:])
    assert [tr.track_id for tr in tracker.tracks] == [out[0].track_ids[1]]
    assert len(identities(world, out)[1]) == 1


def test_empty_scene_detects_every_frame_until_someone_appears():
    world = World([Person((300, 200), (0, 0), first=3)])
    out = run(world, 8, TrackerConfig(det_every=10))
    assert world.detect_calls == 4 and [len(p) for p in out] == [0, 0, 0, 1, 1, 1, 1, 1]


def test_timestamps_that_do_not_increase_still_track():
    world = World([Person((100, 240), (10, 0))])
    tracker = PoseTracker(TrackerConfig(smooth=True))
    frames = [f.__class__(f.image, f.index, 0.0, "") for f in world.frames(6)]
    ids = {int(t) for f in frames for t in tracker.step(f, world.detect, world.estimate).track_ids}
    assert ids == {1}


@pytest.mark.parametrize("bad", [dict(det_every=0), dict(motion="magic"), dict(iou_weight=2.0),
                                 dict(min_cutoff=0.0), dict(max_missed=-1)])
def test_config_is_validated(bad):
    with pytest.raises(ConfigError):
        TrackerConfig(**bad)
