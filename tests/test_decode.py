import numpy as np
import pytest

from trt_pose_td import decode
from trt_pose_td.decode import DetectorParams
from trt_pose_td.refine import blur_heatmaps


def gaussian_maps(centers, shape=(64, 48), sigma=2.0):
    """(N, K, h, w) heatmaps with a Gaussian at each (x, y) index-space centre."""
    centers = np.asarray(centers, np.float64)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    maps = np.exp(-((xx[None, None] - centers[..., 0, None, None]) ** 2 +
                    (yy[None, None] - centers[..., 1, None, None]) ** 2) / (2 * sigma ** 2))
    return maps.astype(np.float32)


def test_nms_suppresses_overlaps_keeps_order():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    keep = decode.nms(boxes, scores, 0.5)
    assert keep.tolist() == [3, 2]
    assert decode.nms(boxes, scores, 0.5, max_out=1).tolist() == [3]
    assert decode.nms(np.zeros((0, 4)), np.zeros((0,)), 0.5).tolist() == []


@pytest.mark.parametrize("refine", ["none", "quarter", "dark"])
def test_heatmap_decode_finds_subpixel_peaks(refine):
    rng = np.random.default_rng(0)
    true = rng.uniform(4, [44, 60], size=(3, 17, 2))
    coords, scores = decode.decode_heatmaps(gaussian_maps(true), (192, 256), refine)
    expected = (true + 0.5) * 4  # index space -> input pixels
    err = np.abs(coords - expected).max()
    bound = {"none": 2.0 + 1e-3, "quarter": 1.0 + 0.25 * 4, "dark": 0.05 * 4}[refine]
    assert err <= bound
    assert scores.shape == (3, 17) and np.all(scores > 0.7)


def test_dark_beats_argmax_on_subpixel_peaks():
    rng = np.random.default_rng(3)
    true = rng.uniform(4, [44, 60], size=(8, 17, 2))
    maps = gaussian_maps(true)
    errs = {r: np.abs(decode.decode_heatmaps(maps, (192, 256), r)[0] - (true + 0.5) * 4).mean()
            for r in decode.REFINEMENTS}
    assert errs["dark"] < errs["quarter"] < errs["none"]


def test_dark_equals_full_map_reference():
    """The patch-local DARK equals DARK on fully blurred maps (mmpose's formulation)."""
    rng = np.random.default_rng(5)
    maps = gaussian_maps(rng.uniform(3, [45, 61], size=(2, 17, 2))) + \
        rng.normal(0, 0.01, (2, 17, 64, 48)).astype(np.float32)
    idx, _ = decode.heatmap_argmax(maps)
    local = decode._dark_offsets(maps, idx, 11)
    blurred = np.log(np.maximum(blur_heatmaps(maps, 11), 1e-10)).astype(np.float64)
    for n in range(2):
        for k in range(17):
            x, y = idx[n, k]
            if not (1 < x < 46 and 1 < y < 62):
                continue
            b = blurred[n, k]
            grad = np.array([b[y, x + 1] - b[y, x - 1], b[y + 1, x] - b[y - 1, x]]) * 0.5
            dxx = 0.25 * (b[y, x + 2] - 2 * b[y, x] + b[y, x - 2])
            dyy = 0.25 * (b[y + 2, x] - 2 * b[y, x] + b[y - 2, x])
            dxy = 0.25 * (b[y + 1, x + 1] - b[y - 1, x + 1] - b[y + 1, x - 1] + b[y - 1, x - 1])
            off = -np.linalg.solve(np.array([[dxx, dxy], [dxy, dyy]]), grad)
            if np.all(np.abs(off) < 1):
                np.testing.assert_allclose(local[n, k], off, atol=1e-4)


def test_blur_matches_cv2():
    cv2 = pytest.importorskip("cv2")
    maps = np.random.default_rng(2).random((1, 2, 64, 48)).astype(np.float32)
    ours = blur_heatmaps(maps, 11)[0, 1]
    ref = cv2.GaussianBlur(maps[0, 1], (11, 11), 0, borderType=cv2.BORDER_CONSTANT)
    ref *= maps[0, 1].max() / ref.max()
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_simcc_decode():
    sx = np.zeros((2, 17, 384), np.float32)
    sy = np.zeros((2, 17, 512), np.float32)
    sx[:, :, 101] = 0.9
    sy[:, :, 300] = 0.6
    coords, scores = decode.decode_simcc(sx, sy, 2.0)
    np.testing.assert_allclose(coords[..., 0], 101 / 2 + 0.5)
    np.testing.assert_allclose(coords[..., 1], 300 / 2 + 0.5)
    np.testing.assert_allclose(scores, 0.6)


def test_nms_in_graph_filters_score_and_label():
    dets = np.array([[[0, 0, 10, 10, 0.9], [5, 5, 9, 9, 0.2], [1, 1, 2, 2, 0.8]]], np.float32)
    labels = np.array([[0, 0, 3]])
    boxes, scores = decode.decode_nms_in_graph({"dets": dets, "labels": labels}, (320, 320),
                                               DetectorParams(score_threshold=0.3))
    np.testing.assert_allclose(boxes, [[0, 0, 10, 10]])
    np.testing.assert_allclose(scores, [0.9])


def test_rtmdet_raw_decodes_distances_from_anchor_points():
    outs = {}
    for s in (8, 16, 32):
        outs[f"cls_s{s}"] = np.full((1, 1, 320 // s, 320 // s), -10.0, np.float32)
        outs[f"reg_s{s}"] = np.ones((1, 4, 320 // s, 320 // s), np.float32)
    outs["cls_s16"][0, 0, 5, 7] = 5.0  # anchor (112, 80)
    outs["reg_s16"][0, :, 5, 7] = [10, 20, 30, 40]
    boxes, scores = decode.decode_rtmdet_raw(outs, (320, 320), DetectorParams())
    np.testing.assert_allclose(boxes, [[102, 60, 142, 120]])
    assert scores[0] == pytest.approx(1 / (1 + np.exp(-5)), rel=1e-5)


def test_yolox_grid_decode():
    out = np.zeros((1, 3549, 85), np.float32)
    # stride 16 block starts after 52*52 stride-8 anchors; row 3, col 4 of a 26-wide grid
    i = 52 * 52 + 3 * 26 + 4
    out[0, i, :4] = [0.5, 0.25, np.log(2.0), np.log(4.0)]
    out[0, i, 4], out[0, i, 5] = 0.9, 0.8
    out[0, i + 1, 4], out[0, i + 1, 6] = 0.9, 0.9  # a confident non-person
    boxes, scores = decode.decode_yolox({"output": out}, (416, 416), DetectorParams())
    cx, cy, w, h = (4.5) * 16, (3.25) * 16, 32, 64
    np.testing.assert_allclose(boxes, [[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]],
                               atol=1e-4)
    np.testing.assert_allclose(scores, [0.72], atol=1e-6)


def test_boxes_scores_decoder_runs_nms():
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 10.5], [50, 50, 60, 60]]], np.float32)
    scores = np.array([[[0.9, 0.85, 0.4]]], np.float32)
    b, s = decode.decode_boxes_scores({"boxes": boxes, "scores": scores}, (320, 320),
                                      DetectorParams(score_threshold=0.3))
    np.testing.assert_allclose(s, [0.9, 0.4])


def test_quarter_refinement_with_a_nan_neighbour_matches_the_kernel():
    """A NaN maximum (argmax takes the first NaN) with a NaN right neighbour: no quarter step
    on that axis (decode.cu's comparisons are false for NaN), on the CPU decoder and the
    kernel's twin alike (np.sign gave a NaN coordinate)."""
    from trt_pose_td.cuda.twins import decode_heatmaps_twin
    from trt_pose_td.decode import decode_heatmaps

    maps = np.zeros((1, 1, 5, 5), np.float32)
    maps[0, 0, 2, 2] = np.nan      # the maximum (argmax: the first NaN)
    maps[0, 0, 2, 3] = np.nan      # right of it: the x difference is NaN
    maps[0, 0, 3, 2] = 0.5         # below: y steps down by a quarter
    cpu, _ = decode_heatmaps(maps, (20, 20), "quarter")
    twin, _ = decode_heatmaps_twin(maps, (20, 20), "quarter")
    assert np.all(np.isfinite(cpu)) and np.array_equal(cpu, twin)
    assert np.allclose(cpu[0, 0], [(2 + 0.5) * 4, (2 + 0.25 + 0.5) * 4])
