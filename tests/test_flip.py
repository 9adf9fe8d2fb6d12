"""Flip test-time augmentation: the mirrored crop maps back exactly (no one-cell shift)."""

import numpy as np
import pytest

from trt_pose_td import decode, geometry
from trt_pose_td.engines.onnxruntime import OrtEngine
from trt_pose_td.models import spec_for_file
from trt_pose_td.pipelines.stages import PoseEstimator
from trt_pose_td.skeleton import flip_permutation
from trt_pose_td.types import Detections, Frame

pytest.importorskip("cv2")


def test_mirror_affine_flips_the_crop_about_its_width():
    m = geometry.crop_affines(np.array([[100.0, 50.0]]), np.array([[48.0, 64.0]]), (192, 256))
    f = geometry.mirror_affines(m, 192)
    pts = np.array([[[76.0, 18.0], [100.0, 50.0], [124.0, 82.0]]], np.float32)
    a, b = geometry.apply_affines(pts, m), geometry.apply_affines(pts, f)
    np.testing.assert_allclose(b[..., 0], 192 - a[..., 0], atol=1e-4)
    np.testing.assert_allclose(b[..., 1], a[..., 1], atol=1e-4)


def test_flip_back_heatmaps_is_an_exact_mirror_with_swapped_sides():
    hm = np.random.default_rng(0).random((2, 17, 8, 6)).astype(np.float32)
    perm = flip_permutation()
    back = decode.flip_back_heatmaps(hm[:, :, :, ::-1][:, perm], perm)
    np.testing.assert_array_equal(back, hm)
    x, y = np.random.default_rng(1).random((2, 3, 17, 12)).astype(np.float32)
    bx, by = decode.flip_back_simcc(x[:, perm, ::-1], y[:, perm], perm)
    np.testing.assert_array_equal(bx, x)
    np.testing.assert_array_equal(by, y)


@pytest.mark.parametrize("like", ["pp_tinypose_256x192", "rtmpose_s"])
def test_flip_keeps_keypoints_on_the_bright_spot(standins, like):
    key = "heatmap" if like.startswith("pp") else "simcc"
    spec = spec_for_file(str(standins[key]), like)
    img = np.zeros((480, 640, 3), np.uint8)
    img[199:202, 99:102] = 255
    dets = Detections(np.array([[60, 120, 140, 300]], np.float32), np.array([0.9], np.float32))
    plain = PoseEstimator(OrtEngine(standins[key]), spec, refine="none")(Frame(img), dets)
    flipped = PoseEstimator(OrtEngine(standins[key]), spec, refine="none", flip=True)(
        Frame(img), dets)
    tol = 1.0 if key == "simcc" else 1e-3
    np.testing.assert_allclose(flipped.keypoints, plain.keypoints, atol=tol)
    np.testing.assert_allclose(flipped.keypoint_scores, plain.keypoint_scores, rtol=0.05)
