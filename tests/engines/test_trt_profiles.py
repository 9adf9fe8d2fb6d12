"""Optimisation-profile choice and the input-size check (pure)."""

from __future__ import annotations

import pytest

from trt_pose_td.engines.trt_profiles import ProfileSet, rebuild_at, size_mismatch
from trt_pose_td.errors import EngineError


def _set(*ranges):
    return ProfileSet("x.engine", tuple({"image": (lo, hi)} for lo, hi in ranges))


def test_tightest_covering_profile_wins_and_ties_go_to_the_first():
    ps = _set(((1, 3, 256, 192), (32, 3, 256, 192)), ((1, 3, 256, 192), (4, 3, 256, 192)),
              ((1, 3, 256, 192), (4, 3, 256, 192)))
    assert [ps.select({"image": (n, 3, 256, 192)}) for n in (1, 4, 5, 32)] == [1, 1, 0, 0]
    assert ps.covering({"image": (33, 3, 256, 192)}) == ()
    assert ps.max_batch == 32
    with pytest.raises(EngineError, match="outside the engine's profiles"):
        ps.select({"image": (2, 3, 128, 96)})
    with pytest.raises(EngineError, match="outside"):
        ps.select({"image": (2, 3, 256)})  # wrong rank


def test_size_mismatch_names_the_rebuild_command():
    det = _set(((1, 3, 320, 320), (1, 3, 320, 320)))
    assert size_mismatch(det, "image", (320, 320), "rtmdet", "detector", "cmd") is None
    msg = size_mismatch(det, "image", (416, 416), "rtmdet", "detector",
                        "trt-pose-td build --only detector --det-size=320x320 -o '/my dir'")
    assert msg == ("x.engine: the engine takes rtmdet input image at 320x320, the pipeline runs "
                   "it at 416x416; rebuild it: trt-pose-td build --only detector -o '/my dir' "
                   "--det-size 416x416 (or run with --det-size 320x320)")
    pose = _set(((1, 3, 128, 96), (8, 3, 128, 96)))
    msg = size_mismatch(pose, "image", (192, 256), "tinypose", "pose", "trt-pose-td build x")
    assert msg is not None and msg.endswith("at 192x256; rebuild it: trt-pose-td build x")
    dynamic = _set(((1, 3, 320, 320), (1, 3, 640, 640)))
    assert size_mismatch(dynamic, "image", (416, 416), "rtmdet", "detector", "c") is None
    assert "at 320x320..640x640," in size_mismatch(dynamic, "image", (672, 672), "rtmdet",
                                                    "detector", "c")


def test_rebuild_at_keeps_foreign_commands():
    cmd = "tests/engines/trt_build.py model.onnx (test fixture)"
    assert rebuild_at(cmd, "detector", (416, 416)) == cmd
    assert rebuild_at("trt-pose-td build --only detector --det-size 320", "detector",
                      (640, 480)) == "trt-pose-td build --only detector --det-size 640x480"


def test_size_check_ignores_the_batch_range():
    """A keypoint engine whose profiles start at batch 4 still takes 256x192 crops."""
    pose = _set(((4, 3, 256, 192), (16, 3, 256, 192)))
    assert size_mismatch(pose, "image", (192, 256), "tinypose", "pose", "c") is None
