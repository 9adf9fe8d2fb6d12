"""The GPU pipeline against the CPU pipeline on real dev images (markers gpu + trt).

Engines are built here (fp32, TF32 off, tests/engines/trt_build.py) from the default models, each
at the input size the pipeline runs it at (the model's own: 416x416 for RTMDet), so the
comparison isolates the GPU runtime: upload, crop kernel, TensorRT, decode kernel, mapping back.
The detector is the raw-head RTMDet (+ our NMS), the one TensorRT 8.5 parses; the NMS-in-graph
export needs TensorRT >= 8.6 and is skipped, with the parser's reason, where it cannot be built.
Bound: median keypoint distance <= 1 px over persons both pipelines find.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from trt_pose_td import geometry
from trt_pose_td.api import open_pipeline
from trt_pose_td.config import PipelineConfig
from trt_pose_td.engine_meta import engine_filename
from trt_pose_td.errors import ConfigError, EngineError
from trt_pose_td.io.sources import read_image
from trt_pose_td.models import get_spec
from trt_pose_td.pipelines.plan import resolve
from trt_pose_td.types import Detections, Frame

pytestmark = [pytest.mark.gpu, pytest.mark.trt]
log = logging.getLogger(__name__)

DEV_IMAGES = (1000, 233771, 217285, 8690, 329323, 196141, 2299)
DETECTOR = "rtmdet_nano_person_raw"     # parsed by TensorRT 8.5
NMS_DETECTOR = "rtmdet_nano_person"     # NMS in the graph: TensorRT >= 8.6
STAGES = {"upload", "det_pre", "det_infer", "det_post", "crop", "pose_infer", "pose_post",
          "total"}


@pytest.fixture(scope="module")
def engine_dir(shared, trt, tmp_path_factory):
    from tests.engines.trt_build import build_engine

    d = tmp_path_factory.mktemp("engines")
    for det in (DETECTOR, NMS_DETECTOR):
        spec = get_spec(det)
        w, h = spec.preprocess.input_size  # what the pipeline runs: the engine must take it
        try:
            # the raw-head detector takes several cameras per run (batch()); the NMS graph 1
            batch = (1, 1, 4) if det == DETECTOR else (1, 1, 1)
            build_engine(shared / "models" / spec.file, d / engine_filename(det, "fp32"),
                         role="detector", batch=batch, hw=(h, w), model=det)
        except RuntimeError as exc:  # e.g. TensorRT 8.5 and the NMS graph's dynamic TopK
            if det == DETECTOR:
                raise
            log.warning("cannot build %s: %s", det, exc)
    build_engine(shared / "models/pp_tinypose_256x192.onnx",
                 d / engine_filename("pp_tinypose_256x192", "fp32"), batch=(1, 8, 16),
                 model="pp_tinypose_256x192")
    return d


@pytest.fixture(scope="module")
def frames(shared):
    ann = json.loads((shared / "coco/annotations/person_keypoints_val2017_dev.json").read_text())
    files = {im["id"]: im["file_name"] for im in ann["images"]}
    return [Frame(read_image(str(shared / "coco/val2017" / files[i])), n, 0.0, files[i])
            for n, i in enumerate(DEV_IMAGES) if i in files]


def _config(engine_dir, detector=DETECTOR, **kw):
    if not (engine_dir / engine_filename(detector, "fp32")).is_file():
        pytest.skip(f"no engine for {detector} (see the build warning)")
    return PipelineConfig(detector=detector, backend="tensorrt", engine_dir=str(engine_dir),
                          precision="fp32", **kw)


def _distances(cpu_poses, gpu_poses):
    """Keypoint distances (px) of persons matched by box IoU >= 0.7, and the unmatched count."""
    if len(cpu_poses) == 0 or len(gpu_poses) == 0:
        return [], abs(len(cpu_poses) - len(gpu_poses))
    iou = geometry.box_iou(cpu_poses.boxes, gpu_poses.boxes)
    out, missed = [], 0
    for i in range(len(cpu_poses)):
        j = int(iou[i].argmax())
        if iou[i, j] < 0.7:
            missed += 1
            continue
        out.append(np.linalg.norm(cpu_poses.keypoints[i] - gpu_poses.keypoints[j], axis=1))
    return out, missed


@pytest.mark.parametrize("detector", [DETECTOR, NMS_DETECTOR])
def test_gpu_keypoints_match_cpu(engine_dir, frames, detector):
    from trt_pose_td.pipelines.gpu import GpuPipeline

    cfg = _config(engine_dir, detector)
    dists, missed, persons = [], 0, 0
    with open_pipeline(cfg) as gpu, \
            open_pipeline(PipelineConfig(detector=detector)) as cpu:
        assert isinstance(gpu, GpuPipeline)
        for frame in frames:
            a, result = cpu(frame).poses, gpu(frame)
            assert STAGES <= set(result.times) or len(result.poses) == 0
            d, m = _distances(a, result.poses)
            dists += d
            missed += m
            persons += len(a)
    d = np.concatenate(dists)
    log.warning("GPU vs CPU (%s): %d/%d persons matched, keypoint distance median %.3f px, "
                "p90 %.3f, max %.2f", detector, len(dists), persons, np.median(d),
                np.percentile(d, 90), d.max())
    assert persons >= 20 and len(dists) >= 0.9 * persons
    assert np.median(d) <= 1.0


@pytest.mark.parametrize("option", ["flip", "recrop"])
def test_flip_and_recrop_match_the_cpu_pipeline(engine_dir, frames, option):
    dists, persons = [], 0
    with open_pipeline(_config(engine_dir, **{option: True})) as gpu, \
            open_pipeline(PipelineConfig(detector=DETECTOR, **{option: True})) as cpu:
        assert getattr(gpu.pose, option)
        for frame in frames:
            a = cpu(frame).poses
            d, _ = _distances(a, gpu(frame).poses)
            dists += d
            persons += len(a)
    d = np.concatenate(dists)
    log.warning("GPU vs CPU --%s: %d/%d persons matched, keypoint distance median %.3f px",
                option, len(dists), persons, np.median(d))
    assert persons >= 20 and len(dists) >= 0.9 * persons
    assert np.median(d) <= 1.0


def test_batch_of_cameras_equals_one_call_per_frame(engine_dir, frames):
    """Four dev images as four cameras: one detector run (profile max 4), one crop launch, one
    keypoint run per chunk of 16 across the frames; TensorRT may round another batch size
    differently, so keypoints agree within float noise (median <= 0.05 px)."""
    cams = frames[:4]
    with open_pipeline(_config(engine_dir)) as gpu:
        singles = [gpu(f) for f in cams]
        results = gpu.batch(cams)
    info = results[0].batch
    assert info is not None and info.detector_calls == 1
    assert sum(info.keypoint_batches) == sum(info.persons)
    assert len(info.keypoint_batches) == -(-sum(info.persons) // 16)
    dists, persons = [], 0
    for single, result in zip(singles, results):
        d, _ = _distances(single.poses, result.poses)
        dists += d
        persons += len(single.poses)
    assert persons >= 10 and len(dists) >= 0.9 * persons
    assert np.median(np.concatenate(dists)) <= 0.05


def test_tracked_stream_with_det_every_equals_frame_by_frame(engine_dir, frames):
    """--det-every 3: the overlapped stream (next frame uploaded / detected while this one's
    keypoints run) gives what one call per frame gives."""
    from trt_pose_td.pipelines.tracked import TrackedPipeline
    from trt_pose_td.tracking import TrackerConfig

    clip = [Frame(np.roll(frames[0].image, 4 * i, axis=1), i, i / 10, "roll") for i in range(6)]
    with open_pipeline(_config(engine_dir)) as gpu:
        streamed = list(TrackedPipeline(gpu, TrackerConfig(det_every=3)).stream(clip))
        stepped = TrackedPipeline(gpu, TrackerConfig(det_every=3))
        one_by_one = [stepped(f) for f in clip]
    assert ["det_infer" in r.times for r in streamed] == [True, False, False] * 2
    for a, b in zip(one_by_one, streamed):
        np.testing.assert_array_equal(a.poses.track_ids, b.poses.track_ids)
        np.testing.assert_allclose(b.poses.keypoints, a.poses.keypoints, atol=1e-3)


def test_overlapped_run_equals_one_frame_at_a_time(engine_dir, frames):
    with open_pipeline(_config(engine_dir)) as gpu:
        single = [gpu(f) for f in frames]
        overlapped = list(gpu.stream(frames))
    assert [r.frame.index for r in overlapped] == [f.index for f in frames]
    for a, b in zip(single, overlapped):
        np.testing.assert_allclose(b.poses.keypoints, a.poses.keypoints, atol=1e-3)
        np.testing.assert_allclose(b.poses.keypoint_scores, a.poses.keypoint_scores, atol=1e-5)
        assert all(v >= 0 for v in b.times.values())


def test_zero_copy_frames_match_pinned_upload(engine_dir, frames, cuda_device):
    from trt_pose_td.pipelines.gpu import GpuPipeline

    if not cuda_device.info.can_map_host_memory:
        pytest.skip("this GPU cannot map host memory")
    results = {}
    for zero_copy in (False, True):
        with GpuPipeline.from_plan(resolve(_config(engine_dir)), zero_copy=zero_copy) as gpu:
            assert gpu.zero_copy is zero_copy
            results[zero_copy] = [gpu(f).poses for f in frames[:3]]
    for a, b in zip(results[False], results[True]):
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)


def test_forty_persons_in_chunks_match_the_cpu_estimator(engine_dir, frames):
    """40 tiled boxes > the engine profile's 16: one crop launch, three engine chunks."""
    from trt_pose_td.benchmarks.crowd import tile_detections

    frame = frames[-1]
    with open_pipeline(_config(engine_dir)) as gpu, \
            open_pipeline(PipelineConfig(detector=DETECTOR)) as cpu:
        found = cpu(frame).poses
        dets = tile_detections(Detections(found.boxes, found.box_scores), 40)
        a = cpu.pose(frame, dets)
        b = gpu(frame, dets).poses
        assert gpu.pose.max_batch == 16 and len(b) == 40
        with pytest.raises(ConfigError, match="capacity"):
            gpu(frame, tile_detections(dets, gpu.max_persons + 1))
    d = np.linalg.norm(a.keypoints - b.keypoints, axis=2)
    assert np.median(d) <= 1.0


def test_mismatched_engine_is_refused_before_deserializing(engine_dir, tmp_path):
    import dataclasses
    import shutil

    from trt_pose_td.engine_meta import read_metadata, write_metadata
    from trt_pose_td.errors import EngineError

    name = engine_filename("pp_tinypose_256x192", "fp32")
    (tmp_path / name).write_bytes(b"\0not an engine" * 100)  # would fail to deserialize
    meta = read_metadata(engine_dir / name)
    write_metadata(dataclasses.replace(meta, compute_capability="1.0"), tmp_path / name)
    for det in engine_dir.glob(f"{DETECTOR}.*"):
        shutil.copy(det, tmp_path / det.name)
    cfg = _config(tmp_path)
    with pytest.raises(EngineError, match="cannot run here.*compute capability 1.0"):
        open_pipeline(cfg)
    write_metadata(meta, tmp_path / name)
    with pytest.raises(EngineError, match="cannot deserialize"):
        open_pipeline(cfg)


def test_engine_of_another_input_size_is_refused_at_load(engine_dir):
    """The detector engine takes 416x416; a pipeline configured for 320x320 must not run it
    (the warp kernel would write a 320x320 letterbox into a 416x416 binding)."""
    cfg = _config(engine_dir, det_size=(320, 320))
    with pytest.raises(EngineError, match=r"takes rtmdet_nano_person_raw input input at 416x416, "
                                          r"the pipeline runs it at 320x320; rebuild it: "):
        open_pipeline(cfg)
