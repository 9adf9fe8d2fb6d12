"""The tracker with the real default models on real footage: vtest.avi and MOT17 (mirror)."""

from __future__ import annotations

import pytest

from trt_pose_td.benchmarks import tracking as tb
from trt_pose_td.tracking import TrackerConfig


@pytest.fixture(scope="module")
def pipeline():
    """The packaged default pair (vtest.avi comes from the mirror or Debian's opencv-doc)."""
    from trt_pose_td.api import open_pipeline

    with open_pipeline(threads=2) as pipe:
        yield pipe


@pytest.mark.slow
def test_skip_frame_detection_agrees_with_every_frame_on_vtest(pipeline):
    from trt_pose_td.assets import vtest_path

    frames = tb.read_video(str(vtest_path()), 15)
    ref, _, ref_dets = tb.run_tracked(pipeline, frames, TrackerConfig(det_every=1))
    got, _, dets = tb.run_tracked(pipeline, frames, TrackerConfig(det_every=5))
    assert ref_dets == 15 and dets == 3
    a = tb.agreement(got, ref)
    assert a["reference_persons"] >= 30
    assert a["oks_median"] >= 0.9 and a["reported"] >= 0.85, a
    # walkers crossing the campus keep their ids: few tracks, none ended while still detected
    frag = tb.fragmentation(got, ref, 10.0)
    assert frag["tracks"] <= 8 and frag["fragmented"] <= 1, frag
    assert all(p.track_ids is not None for p in got)


@pytest.mark.slow
def test_no_identity_switch_on_mot17_frames(shared, pipeline):
    seq = shared / "crowd" / "MOT17" / "MOT17-09-FRCNN"
    if not (seq / "gt" / "gt.txt").is_file():
        pytest.skip("the mirror has no MOT17-09 ground truth")
    frames, gt = tb.read_mot_sequence(seq)
    poses, _, _ = tb.run_tracked(pipeline, frames, TrackerConfig())
    result = tb.mot_id_switches(poses, gt)
    assert result["matches"] >= 3 * len(frames) and result["id_switches"] == 0, result
