import numpy as np
import pytest

from trt_pose_td import geometry as g


def test_center_size_fixes_aspect_and_pads():
    c, s = g.box_to_center_size(np.array([[10, 20, 50, 220]]), aspect=0.75, padding=1.25)
    np.testing.assert_allclose(c, [[30, 120]])
    # tall box: height 200 kept, width grown to 150, then x1.25
    np.testing.assert_allclose(s, [[150 * 1.25, 200 * 1.25]])
    c, s = g.box_to_center_size(np.array([[0, 0, 300, 100]]), aspect=0.75, padding=1.0)
    np.testing.assert_allclose(s, [[300, 400]])


def test_crop_affine_maps_region_onto_output():
    m = g.crop_affines(np.array([[100.0, 50.0]]), np.array([[60.0, 80.0]]), (192, 256))
    corners = g.apply_affines(np.array([[[70, 10], [130, 90], [100, 50]]], np.float32), m)
    np.testing.assert_allclose(corners[0], [[0, 0], [192, 256], [96, 128]], atol=1e-4)


def test_affine_inverse_roundtrip():
    rng = np.random.default_rng(1)
    m = g.crop_affines(rng.uniform(0, 500, (5, 2)), rng.uniform(20, 300, (5, 2)), (96, 128))
    pts = rng.uniform(0, 100, (5, 17, 2)).astype(np.float32)
    back = g.apply_affines(g.apply_affines(pts, m), g.invert_affines(m))
    np.testing.assert_allclose(back, pts, atol=1e-3)


@pytest.mark.parametrize("mode", ["letterbox", "letterbox_center", "stretch"])
def test_resize_affine_fits_image(mode):
    m = g.resize_affine((640, 480), (320, 320), mode)
    corners = g.apply_affines(np.array([[0, 0], [640, 480]], np.float32), m)
    assert corners.min() >= -1e-4 and corners.max() <= 320 + 1e-4
    if mode == "letterbox":
        np.testing.assert_allclose(corners, [[0, 0], [320, 240]])
    if mode == "letterbox_center":
        np.testing.assert_allclose(corners, [[0, 40], [320, 280]])
    if mode == "stretch":
        np.testing.assert_allclose(corners, [[0, 0], [320, 320]])


def test_resize_affine_rejects_unknown_mode():
    with pytest.raises(ValueError, match="unknown resize mode"):
        g.resize_affine((10, 10), (5, 5), "zoom")


def test_cv2_convention_matches_warp_of_pixel_centres():
    """A pixel centre (i + 0.5) mapped by the affine lands where cv2 samples it."""
    cv2 = pytest.importorskip("cv2")
    img = np.zeros((50, 60, 3), np.uint8)
    img[20, 30] = 255  # pixel (x=30, y=20), centre (30.5, 20.5)
    m = np.array([[2.0, 0, 5.0], [0, 2.0, 3.0]], np.float32)
    out = cv2.warpAffine(img, g.to_cv2_affine(m), (140, 120), flags=cv2.INTER_LINEAR)
    centre = g.apply_affines(np.array([[30.5, 20.5]], np.float32), m)[0]  # (66, 44)
    y, x = np.unravel_index(out[..., 0].argmax(), out.shape[:2])
    assert abs((x + 0.5) - centre[0]) <= 0.5 and abs((y + 0.5) - centre[1]) <= 0.5


def test_map_and_clip_boxes():
    m = g.invert_affines(g.resize_affine((640, 480), (320, 320)))
    boxes = g.map_boxes(np.array([[10, 20, 30, 40]]), m)
    np.testing.assert_allclose(boxes, [[20, 40, 60, 80]], atol=1e-4)
    np.testing.assert_allclose(g.clip_boxes(np.array([[-5, -5, 700, 500]]), (640, 480)),
                               [[0, 0, 640, 480]])


def test_box_iou():
    iou = g.box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10],
                                                          [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1.0, 1 / 3, 0.0]], atol=1e-6)


def test_keypoint_boxes_frame_confident_keypoints():
    kp = np.zeros((2, 17, 2), np.float32)
    kp[0, :, 0] = np.linspace(100, 200, 17)
    kp[0, :, 1] = np.linspace(50, 250, 17)
    kp[0, 16] = (1000, 1000)  # an outlier, but not confident
    scores = np.full((2, 17), 0.9, np.float32)
    scores[0, 16] = 0.1
    scores[1, :] = 0.1
    scores[1, :5] = 0.9  # only 5 confident keypoints: not usable
    boxes, usable = g.keypoint_boxes(kp, scores, min_score=0.3, min_count=6, margin=1.1)
    assert usable.tolist() == [True, False]
    x_hi, y_hi = 100 + 100 * 15 / 16, 50 + 200 * 15 / 16
    cx, cy, hw, hh = (100 + x_hi) / 2, (50 + y_hi) / 2, (x_hi - 100) * 0.55, (y_hi - 50) * 0.55
    np.testing.assert_allclose(boxes[0], [cx - hw, cy - hh, cx + hw, cy + hh], rtol=1e-5)
    assert not boxes[1].any()
