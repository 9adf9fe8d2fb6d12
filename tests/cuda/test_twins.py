"""The numpy twins of the kernels against the CPU path (cv2 warp, numpy decoders) — CI, no GPU.

Measured bounds (opencv-python-headless 5.0, 33 COCO/MOT17 frames, 3 crop sizes, boxes partly off
the frame; and uniform-noise frames): |twin - cv2| <= 0.509 gray levels before normalisation
(<= 0.0089 after), of which 0.5 is cv2 rounding its warp to uint8 and the rest its fixed-point
interpolation. The decoding twins equal the CPU decoders bit for bit on every case tried (DARK is
one step both call, in the kernel's order of operations: trt_pose_td.refine.dark_offsets).
"""

from __future__ import annotations

import numpy as np
import pytest

from trt_pose_td import decode, geometry
from trt_pose_td.cuda import twins
from trt_pose_td.models import get_spec
from trt_pose_td.preprocess import CpuPreprocessor, normalize_crops

cv2 = pytest.importorskip("cv2")
#: Max |twin - cv2| in gray levels; older OpenCV interpolates on a 1/32-pixel grid (coarser).
CV2_BOUND = 0.52 if int(cv2.__version__.split(".")[0]) >= 5 else 4.5


def _random_boxes(rng, w, h, n):
    x1, y1 = rng.uniform(-0.2 * w, w, n), rng.uniform(-0.2 * h, h, n)
    return np.stack([x1, y1, x1 + rng.uniform(4, 0.8 * w, n), y1 + rng.uniform(4, 0.9 * h, n)], 1)


def _levels(a, b, std):
    return np.abs(a - b) * np.asarray(std, np.float32).reshape(1, 3, 1, 1)


@pytest.mark.parametrize("model", ["pp_tinypose_256x192", "rtmpose_s", "pp_tinypose_128x96"])
def test_warp_twin_matches_cv2_on_real_frames(sample_photo, model):
    """The packaged photo, plus COCO and MOT17 frames when the data mirror is there."""
    from tests.conftest import mirror_path

    p = get_spec(model).preprocess
    rng = np.random.default_rng(7)
    paths = [sample_photo]
    shared = mirror_path()
    if shared is not None:
        paths += sorted((shared / "coco/val2017").glob("*.jpg"))[:6] + \
            sorted((shared / "crowd/MOT17").rglob("*.jpg"))[:1]
    worst = 0.0
    for path in paths:
        img = cv2.imread(str(path))
        h, w = img.shape[:2]
        c, s = geometry.box_to_center_size(_random_boxes(rng, w, h, 6), p.aspect, p.padding)
        aff = geometry.crop_affines(c, s, p.input_size)
        ref = CpuPreprocessor().warp_batch(img, aff, p.input_size, p.mean, p.std,
                                           p.channel_order, p.pad_value)
        got = twins.warp_batch_twin(img, aff, p.input_size, p.mean, p.std, p.channel_order,
                                    p.pad_value)
        assert got.shape == ref.shape and got.dtype == np.float32
        worst = max(worst, float(_levels(got, ref, p.std).max()))
    assert 0.4 < worst <= CV2_BOUND  # > 0.4: the twin does not round to uint8 like cv2


@pytest.mark.parametrize("detector", ["rtmdet_nano_person", "yolox_nano_416",
                                      "picodet_s_320_pedestrian"])
def test_warp_twin_matches_cv2_letterbox(detector):
    p = get_spec(detector).preprocess
    img = np.random.default_rng(3).integers(0, 256, (237, 411, 3), dtype=np.uint8)
    m = geometry.resize_affine((411, 237), p.input_size, p.resize)[None]
    ref = CpuPreprocessor().warp_batch(img, m, p.input_size, p.mean, p.std, p.channel_order,
                                       p.pad_value)
    got = twins.warp_batch_twin(img, m, p.input_size, p.mean, p.std, p.channel_order, p.pad_value)
    assert _levels(got, ref, p.std).max() <= CV2_BOUND


def test_integer_translation_copies_pixels_exactly():
    img = np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    m = np.array([[[1, 0, -7], [0, 1, -11]]], np.float32)  # crop starting at (7, 11)
    got = twins.warp_batch_twin(img, m, (20, 30), (10, 20, 30), (2, 4, 8), "bgr")
    exact = normalize_crops(img[None, 11:41, 7:27], (10, 20, 30), (2, 4, 8), "bgr")
    np.testing.assert_array_equal(got, exact)
    rgb = twins.warp_batch_twin(img, m, (20, 30), (30, 20, 10), (8, 4, 2), "rgb")
    np.testing.assert_array_equal(rgb, exact[:, ::-1])


def test_border_value_and_half_precision():
    img = np.full((10, 10, 3), 200, np.uint8)
    far = np.array([[[1, 0, 500], [0, 1, 0]]], np.float32)  # the frame lies far right of output
    got = twins.warp_batch_twin(img, far, (8, 4), (100, 100, 100), (2, 2, 2), "bgr", 114.0)
    np.testing.assert_array_equal(got, np.float32(7.0))
    half = np.array([[[1, 0, 0.5], [0, 1, 0]]], np.float32)  # column 0 mixes border and image
    f32 = twins.warp_batch_twin(img, half, (4, 4), (0, 0, 0), (1, 1, 1), "bgr", 100.0)
    f16 = twins.warp_batch_twin(img, half, (4, 4), (0, 0, 0), (1, 1, 1), "bgr", 100.0,
                                np.float16)
    assert f32[0, 0, 0, 0] == pytest.approx(150.0) and f32[0, 0, 0, 1] == 200.0
    np.testing.assert_array_equal(f16, f32.astype(np.float16))


def test_bad_arguments_are_refused():
    img = np.zeros((4, 4, 3), np.uint8)
    m = np.eye(2, 3, dtype=np.float32)[None]
    with pytest.raises(ValueError, match="invertible"):
        twins.warp_params(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="finite"):
        twins.warp_params(np.full((1, 2, 3), np.nan))
    with pytest.raises(ValueError, match="float32 or float16"):
        twins.warp_batch_twin(img, m, (2, 2), (0,) * 3, (1,) * 3, dtype=np.float64)
    with pytest.raises(ValueError, match="std"):
        twins.warp_batch_twin(img, m, (2, 2), (0,) * 3, (1, 0, 1))


# ---------------------------------------------------------------------------------------------
def test_multi_frame_warp_twin_equals_one_frame_at_a_time():
    """warp_frames_twin: each item sampled from its own frame, exactly as warp_batch_twin."""
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((48, 64), (31, 97))]
    frames = np.array([1, 0, 1, 1, 0])
    boxes = np.concatenate([_random_boxes(rng, images[f].shape[1], images[f].shape[0], 1)
                            for f in frames])
    c, s = geometry.box_to_center_size(boxes, 0.75, 1.25)
    affines = geometry.crop_affines(c, s, (12, 16))
    for dtype in (np.float32, np.float16):
        got = twins.warp_frames_twin(images, frames, affines, (12, 16), (1, 2, 3), (4, 5, 6),
                                     "rgb", 7.0, dtype)
        for i, f in enumerate(frames):
            want = twins.warp_batch_twin(images[f], affines[i:i + 1], (12, 16), (1, 2, 3),
                                         (4, 5, 6), "rgb", 7.0, dtype)
            np.testing.assert_array_equal(got[i:i + 1], want)
    with pytest.raises(ValueError, match="one index < 2 frames"):
        twins.warp_frames_twin(images, [0, 2], affines[:2], (12, 16), (0,) * 3, (1,) * 3)


def test_warp_tables_have_the_kernel_struct_layout():
    """struct WarpFrame {const unsigned char* src; int w, h, pitch, pad;} and struct WarpItem
    {float inv[6]; int frame; unsigned int out;} of warp.cu, byte for byte."""
    assert twins.WARP_FRAME.itemsize == 24 and twins.WARP_ITEM.itemsize == 32
    assert [twins.WARP_FRAME.fields[n][1] for n in ("src", "w", "h", "pitch")] == [0, 8, 12, 16]
    assert [twins.WARP_ITEM.fields[n][1] for n in ("inv", "frame", "out")] == [0, 24, 28]
    table = twins.warp_frame_table([(0x7F0000001000, 640, 480, 1920)])
    assert table.tobytes()[:8] == (0x7F0000001000).to_bytes(8, "little")
    affines = geometry.crop_affines(np.float32([[50, 60]]), np.float32([[30, 40]]), (12, 16))
    items = twins.warp_items(affines, [3], [4096])
    assert items["frame"][0] == 3 and items["out"][0] == 4096
    np.testing.assert_array_equal(items["inv"], twins.warp_params(affines))
    with pytest.raises(ValueError, match="bad warp frame"):
        twins.warp_frame_table([(1, 640, 480, 1000)])
    with pytest.raises(ValueError, match="32 bits"):
        twins.warp_items(affines, [0], [1 << 32])
    with pytest.raises(ValueError, match="1 affines, 2 frame indices"):
        twins.warp_items(affines, [0, 1], [0])


@pytest.mark.parametrize("decoder, shapes", [
    ("heatmap", {"heatmaps": (17, 8, 6)}),
    ("simcc", {"simcc_x": (17, 12), "simcc_y": (17, 16)}),
])
def test_flip_average_twin_equals_the_cpu_flip(decoder, shapes):
    """The GPU flip (a gather table from the decoder's own flip-back, then (a + b[gather]) *
    0.5) equals the CPU's (outputs + flip_back(mirrored)) * 0.5 bit for bit."""
    from trt_pose_td.skeleton import flip_permutation

    rng = np.random.default_rng(4)
    flip_back = decode.KEYPOINT_DECODERS[decoder].flip_back
    gathers = twins.flip_gathers(flip_back, shapes, flip_permutation())
    a = {r: rng.normal(size=(3, *sh)).astype(np.float32) for r, sh in shapes.items()}
    b = {r: rng.normal(size=(3, *sh)).astype(np.float32) for r, sh in shapes.items()}
    back = flip_back(b, flip_permutation())
    for role in shapes:
        assert gathers[role].dtype == np.int32 and sorted(gathers[role]) == list(
            range(int(np.prod(shapes[role]))))  # a permutation of one crop's elements
        want = (a[role] + back[role]) * np.float32(0.5)
        np.testing.assert_array_equal(twins.flip_average_twin(a[role], b[role], gathers[role]),
                                      want)


def _gaussian_maps(rng, n, k, h, w, sigma=2.0):
    yy, xx = np.mgrid[0:h, 0:w]
    cx = rng.uniform(-1, w, (n, k, 1, 1))
    cy = rng.uniform(-1, h, (n, k, 1, 1))
    amp = rng.uniform(0.1, 1.0, (n, k, 1, 1))
    return (amp * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))).astype(np.float32)


@pytest.mark.parametrize("refine", decode.REFINEMENTS)
@pytest.mark.parametrize("shape, size", [((64, 48), (192, 256)), ((32, 24), (96, 128))])
def test_heatmap_twin_equals_cpu_decoder(refine, shape, size):
    rng = np.random.default_rng(11)
    h, w = shape
    noise = rng.standard_normal((3, 17, h, w)).astype(np.float32)
    noise[0, 0, 5, 5] = noise[0, 0, 5, 6] = noise[0, 0, 30 % h, 2] = 99.0   # ties: first wins
    noise[0, 1, 0, 0] = noise[0, 2, h - 1, w - 1] = noise[0, 3, 1, w - 2] = 99.0  # borders
    for maps in (noise, _gaussian_maps(rng, 5, 17, h, w)):
        ref_k, ref_s = decode.decode_heatmaps(maps, size, refine)
        got_k, got_s = twins.decode_heatmaps_twin(maps, size, refine)
        np.testing.assert_array_equal(got_s, ref_s)
        if refine == "dark":
            np.testing.assert_allclose(got_k, ref_k, rtol=0, atol=1e-4)
        else:
            np.testing.assert_array_equal(got_k, ref_k)
    assert twins.decode_heatmaps_twin(noise, size, "none")[0][0, 0] == pytest.approx(
        [(5 + 0.5) * size[0] / w, (5 + 0.5) * size[1] / h])


@pytest.mark.parametrize("h, w", [(8, 6), (16, 12), (32, 24), (64, 48), (96, 72)])
def test_dark_is_one_step_in_the_decoder_and_the_twin(h, w):
    """The CPU decoder and the decode kernel's twin run the one DARK step: equal bit for bit at
    every blur size these widths give (3 to 17), on noise and on Gaussian peaks (where the step
    moves keypoints off the argmax)."""
    rng = np.random.default_rng(w)
    for peaks, maps in ((False, rng.random((2, 17, h, w)).astype(np.float32)),
                        (True, _gaussian_maps(rng, 2, 17, h, w, sigma=max(1.0, w / 24)))):
        ref_k, ref_s = decode.decode_heatmaps(maps, (4 * w, 4 * h), "dark")
        got_k, got_s = twins.decode_heatmaps_twin(maps, (4 * w, 4 * h), "dark")
        np.testing.assert_array_equal(got_k, ref_k)
        np.testing.assert_array_equal(got_s, ref_s)
        plain = decode.decode_heatmaps(maps, (4 * w, 4 * h), "none")[0]
        assert not peaks or np.abs(got_k - plain).max() > 1.0


def test_heatmap_twin_cell_offset():
    maps = _gaussian_maps(np.random.default_rng(1), 2, 17, 64, 48)
    a, _ = twins.decode_heatmaps_twin(maps, (192, 256), "quarter", cell_offset=0.0)
    b, _ = twins.decode_heatmaps_twin(maps, (192, 256), "quarter")
    np.testing.assert_allclose(b - a, np.broadcast_to([2.0, 2.0], a.shape), atol=1e-5)


def test_simcc_twin_equals_cpu_decoder():
    rng = np.random.default_rng(5)
    sx = rng.standard_normal((4, 17, 384)).astype(np.float32)
    sy = rng.standard_normal((4, 17, 512)).astype(np.float32)
    sx[1, 2, [10, 20]] = 50.0
    for ratio in (2.0, 1.5):
        ref = decode.decode_simcc(sx, sy, ratio)
        got = twins.decode_simcc_twin(sx, sy, ratio)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
    assert got[0][1, 2, 0] == pytest.approx(10 / 1.5 + 0.5)


def test_dark_twin_on_real_model_heatmaps(sample_photo):
    """Real PP-TinyPose heatmaps of real crops: the twin's DARK equals the CPU decoder."""
    from trt_pose_td.assets import model_path
    from trt_pose_td.engines.onnxruntime import OrtEngine

    spec = get_spec("pp_tinypose_256x192")
    p = spec.preprocess
    img = cv2.imread(str(sample_photo))
    boxes = _random_boxes(np.random.default_rng(2), img.shape[1], img.shape[0], 6)
    c, s = geometry.box_to_center_size(boxes, p.aspect, p.padding)
    crops = CpuPreprocessor().warp_batch(img, geometry.crop_affines(c, s, p.input_size),
                                         p.input_size, p.mean, p.std, p.channel_order)
    with OrtEngine(model_path(spec, progress=False)) as engine:
        maps = engine.infer({spec.input_name: crops})[spec.outputs["heatmaps"]]
    ref_k, ref_s = decode.decode_heatmaps(maps, p.input_size, "dark")
    got_k, got_s = twins.decode_heatmaps_twin(maps, p.input_size, "dark")
    np.testing.assert_array_equal(got_s, ref_s)
    np.testing.assert_allclose(got_k, ref_k, rtol=0, atol=1e-4)
    assert np.abs(got_k - decode.decode_heatmaps(maps, p.input_size, "none")[0]).max() > 0.1


def test_twin_preprocessor_in_the_cpu_pipeline(standins):
    """``--preprocessor twin`` runs the CPU pipeline with the GPU kernel's sampling."""
    from trt_pose_td.api import open_pipeline
    from trt_pose_td.cli import build_parser
    from trt_pose_td.cli.common import config_from_args
    from trt_pose_td.config import PipelineConfig
    from trt_pose_td.errors import ConfigError
    from trt_pose_td.pipelines.stages import make_preprocessor
    from trt_pose_td.types import Frame

    img = np.zeros((480, 640, 3), np.uint8)
    img[199:202, 99:102] = 255
    args = build_parser().parse_args(["run", "--preprocessor", "twin", "--detector",
                                      str(standins["detector"]), "--detector-like",
                                      "rtmdet_nano_person", "--pose",
                                      str(standins["heatmap"])])
    cfg = config_from_args(args)
    assert cfg.preprocessor == "twin"
    results = {}
    for name in ("twin", "cv2"):
        c = PipelineConfig(**{**cfg.as_dict(), "preprocessor": name})
        with open_pipeline(c) as pipe:
            assert type(pipe.pose.pre).__name__ == ("TwinPreprocessor" if name == "twin"
                                                    else "CpuPreprocessor")
            results[name] = pipe(Frame(img)).poses
    np.testing.assert_allclose(results["twin"].keypoints, results["cv2"].keypoints, atol=0.5)
    with pytest.raises(ConfigError, match="preprocessor"):
        make_preprocessor("pillow")
