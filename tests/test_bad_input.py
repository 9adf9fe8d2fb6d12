"""Bad input, as a hostile user types it: every case is exit 2, one line on stderr, no
traceback, and whatever was in the output folder before is still there byte for byte.

Runs the real command in a subprocess on the tiny ONNX stand-ins (tests/models/fixtures.py):
no data mirror, no download.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

REPO = Path(__file__).resolve().parents[1]
PREVIOUS = b'{"frame":0,"previous":"run"}\n'
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def cli(*args: str, cwd: Path | None = None, env: Dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, "-m", "trt_pose_td", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_refused(proc: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2, exactly one stderr line holding ``words``, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """photo.jpg (two bright blobs), clip.mp4 (3 frames), photos/ (two images), and out/ with a
    previous run's poses.jsonl and annotated photo.jpg."""
    image = np.full((240, 320, 3), 40, np.uint8)
    image[60:200, 40:120] = 220
    cv2.imwrite(str(tmp_path / "photo.jpg"), image)
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 5,
                             (320, 240))
    for _ in range(3):
        writer.write(image)
    writer.release()
    (tmp_path / "photos").mkdir()
    for name in ("a.jpg", "b.png"):
        cv2.imwrite(str(tmp_path / "photos" / name), image)
    out = tmp_path / "out"
    out.mkdir()
    (out / "poses.jsonl").write_bytes(PREVIOUS)
    (out / "photo.jpg").write_bytes(b"previous annotated image")
    return tmp_path


def snapshot(folder: Path) -> Dict[str, bytes]:
    """Every file under ``folder`` (hidden temporaries included) -> its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def models(standins) -> list:
    return ["--detector", str(standins["detector"]), "--detector-like", "rtmdet_nano_person",
            "--pose", str(standins["heatmap"]), "-q"]


# -- run: outputs that would destroy inputs ------------------------------------------------------
@pytest.mark.parametrize("source, output", [
    ("photo.jpg", "."),            # the annotated copy is named like the photo
    ("clip.mp4", "."),             # the annotated video is named like the video
    ("photos", "photos"),          # a folder into itself
    ("photos/*.jpg", "photos/../photos"),
])
def test_run_refuses_to_overwrite_its_inputs(work, models, source, output):
    before = snapshot(work)
    proc = cli("run", source, "-o", output, *models, cwd=work)
    assert_refused(proc, "would overwrite the input")
    assert snapshot(work) == before


def test_run_refuses_a_link_to_an_input(work, models):
    """out/photo.jpg a hard link (same file) or a symlink of the input photo: refused."""
    (work / "out" / "photo.jpg").unlink()
    os.link(work / "photo.jpg", work / "out" / "photo.jpg")
    os.symlink(work / "clip.mp4", work / "out" / "clip.mp4")
    before = snapshot(work)
    for source in ("photo.jpg", "clip.mp4"):
        proc = cli("run", source, "-o", "out", *models, cwd=work)
        assert_refused(proc, "would overwrite the input")
    assert snapshot(work) == before


# -- run: a failed run replaces nothing ---------------------------------------------------------
def _swap(standins):
    return ["--detector", str(standins["heatmap"]), "--detector-like", "rtmdet_nano_person",
            "--pose", str(standins["detector"]), "-q"]


@pytest.mark.parametrize("case", ["unreadable", "swapped", "missing-model", "tensorrt",
                                  "all-unreadable", "no-such-source"])
def test_failed_run_leaves_the_previous_output(work, models, standins, case):
    (work / "bad.jpg").write_bytes(b"not a jpeg")
    (work / "bad").mkdir()
    (work / "bad" / "x.jpg").write_bytes(b"not a jpeg either")
    args = {
        "unreadable": ["bad.jpg", *models],
        "swapped": ["photo.jpg", *_swap(standins)],
        "missing-model": ["photo.jpg", "--detector", "gone.onnx", "--pose",
                          str(standins["heatmap"])],
        "tensorrt": ["photo.jpg", *models, "--backend", "tensorrt"],
        "all-unreadable": ["bad", *models],
        "no-such-source": ["nothing.jpg", *models],
    }[case]
    if case == "tensorrt":
        try:
            import tensorrt  # noqa: F401
            pytest.skip("TensorRT is installed here: --backend tensorrt does not fail")
        except ImportError:
            pass
    before = snapshot(work / "out")
    proc = cli("run", *args, "-o", "out", cwd=work)
    assert_refused(proc)
    assert snapshot(work / "out") == before


def test_swapped_files_name_the_model_expected(work, standins):
    proc = cli("run", "photo.jpg", *_swap(standins), "-o", "out", cwd=work)
    assert_refused(proc, "like rtmdet_nano_person (--detector-like)", "swapped")


def test_partly_failed_folder_writes_what_succeeded(work, models):
    (work / "photos" / "c_broken.jpg").write_bytes(b"broken")
    proc = cli("run", "photos", "-o", "out", *models, cwd=work)
    assert proc.returncode == 1 and "c_broken.jpg" in proc.stderr
    lines = (work / "out" / "poses.jsonl").read_text().splitlines()
    assert [Path(json.loads(x)["source"]).name for x in lines] == ["a.jpg", "b.png"]
    assert (work / "out" / "a.jpg").is_file() and (work / "out" / "b.jpg").is_file()
    assert not [p for p in (work / "out").iterdir() if ".partial-" in p.name]


def test_a_good_run_replaces_the_output_and_leaves_no_temporaries(work, models):
    proc = cli("run", "clip.mp4", "-o", "out", *models, cwd=work)
    assert proc.returncode == 0, proc.stderr
    lines = (work / "out" / "poses.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x)["persons"] for x in lines)
    cap = cv2.VideoCapture(str(work / "out" / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert sorted(p.name for p in (work / "out").iterdir()) == ["clip.mp4", "photo.jpg",
                                                                "poses.jsonl"]


# -- run: paths and numbers ---------------------------------------------------------------------
@pytest.mark.parametrize("flags, words", [
    (["--box-padding", "0"], ["--box-padding must be in (0, 10]"]),
    (["--box-padding", "-1"], ["--box-padding"]),
    (["--box-padding", "nan"], ["--box-padding must be a number"]),
    (["--score-threshold", "1.5"], ["--score-threshold must be in [0, 1]"]),
    (["--score-threshold", "-0.1"], ["--score-threshold"]),
    (["--iou-threshold", "2"], ["--iou-threshold"]),
    (["--max-batch", "0"], ["--max-batch must be >= 1"]),
    (["--max-persons", "0"], ["--max-persons must be >= 1"]),
    (["--threads", "0"], ["--threads must be >= 1"]),
    (["--det-size", "0"], ["size must be N or WxH"]),
    (["--det-size", "416x"], ["size must be N or WxH"]),
    (["--det-size", "16"], ["--det-size must be in [32, 8192]"]),
    (["--keypoint-threshold", "2"], ["--keypoint-threshold", "[0, 1]"]),
    (["--draw-min-score", "-1"], ["--draw-min-score"]),
    (["--max-frames", "-1"], ["--max-frames", ">= 0"]),
    (["--max-frames", "x"], ["--max-frames", "integer"]),
    (["--refine", "best"], ["--refine", "invalid choice"]),
    (["--no-such-flag"], ["unrecognized arguments"]),
])
def test_run_refuses_bad_numbers_and_flags(work, models, flags, words):
    before = snapshot(work / "out")
    assert_refused(cli("run", "photo.jpg", "-o", "out", *models, *flags, cwd=work), *words)
    assert snapshot(work / "out") == before


def test_run_output_that_is_a_file(work, models):
    assert_refused(cli("run", "photo.jpg", "-o", "photo.jpg", *models, cwd=work),
                   "is a file, not a folder")
    assert_refused(cli("run", "photo.jpg", "-o", "photo.jpg/sub", *models, cwd=work),
                   "photo.jpg")


@pytest.mark.skipif(AS_ROOT, reason="root may write anywhere: permissions cannot fail")
def test_run_output_without_permission(work, models):
    locked = work / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert_refused(cli("run", "photo.jpg", "-o", "locked", *models, cwd=work),
                       "permission denied")
        assert_refused(cli("run", "photo.jpg", "-o", "locked/sub", *models, cwd=work),
                       "locked")
    finally:
        locked.chmod(0o700)


def test_config_checks_reach_the_python_api():
    from trt_pose_td.config import PipelineConfig
    from trt_pose_td.errors import ConfigError

    for kwargs in ({"box_padding": 0.0}, {"score_threshold": 2.0}, {"max_batch": 0},
                   {"det_size": (0, 416)}, {"backend": "cuda"}, {"threads": 1.5},
                   {"iou_threshold": float("nan")}, {"detector": ""}):
        with pytest.raises(ConfigError):
            PipelineConfig(**kwargs)
    assert PipelineConfig(box_padding=1.0, det_size=(320, 320)).box_padding == 1.0


# -- eval ----------------------------------------------------------------------------------------
@pytest.fixture
def coco(work):
    """3 images (photo copies) with one annotated person each, as COCO person keypoints."""
    pytest.importorskip("pycocotools")
    images = work / "images"
    images.mkdir()
    anns = []
    for i in (1, 2, 3):
        (images / f"{i}.jpg").write_bytes((work / "photo.jpg").read_bytes())
        kps = [v for k in range(17) for v in (50.0 + k, 80.0 + 5 * k, 2)]
        anns.append({"id": i, "image_id": i, "category_id": 1, "iscrowd": 0, "area": 9000.0,
                     "bbox": [40, 60, 80, 140], "num_keypoints": 17, "keypoints": kps})
    doc = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 320, "height": 240}
                      for i in (1, 2, 3)],
           "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    (work / "ann.json").write_text(json.dumps(doc))
    return ["--images", str(images), "--annotations", str(work / "ann.json"), "-q"]


@pytest.mark.parametrize("content, words", [
    ("[1, 2, 3]", ["not a COCO annotation file", "got a list"]),
    ("{not json", ["is not JSON"]),
    ('{"images": [], "annotations": {}}', ["'annotations' must be a list"]),
    ('{"images": [{"id": 1, "file_name": "1.jpg"}], "annotations": [{"id": 1, '
     '"image_id": 1, "bbox": [0, 0, 5, 5]}]}', ["bad annotation", "keypoints"]),
    ('{"images": [{"id": 1, "file_name": "1.jpg"}], "annotations": [{"id": 1, '
     '"image_id": 7, "bbox": [0, 0, 5, 5], "keypoints": [], "area": 1}]}', ["image_id"]),
])
def test_eval_refuses_malformed_annotations(work, coco, models, content, words):
    (work / "ann.json").write_text(content)
    assert_refused(cli("eval", *coco, *models, "-o", "ev", cwd=work), *words)
    assert not (work / "ev").exists()


@pytest.mark.parametrize("case, words", [
    ("boxes-object", ["not a COCO detection-results list"]),
    ("boxes-entry", ["every result needs image_id, bbox"]),
    ("compare", ["not an eval summary"]),
    ("images", ["3 of the 3 images", "not in"]),
    ("output", ["cannot be a folder"]),
    ("visible", ["--visible-threshold"]),
    ("annotations-missing", ["annotation file not found"]),
])
def test_eval_refuses_bad_files_and_flags(work, coco, models, case, words):
    (work / "boxes.json").write_text('{"image_id": 1}' if case == "boxes-object"
                                     else '[{"image_id": 1, "bbox": [1, 2]}]')
    (work / "summary.json").write_text("[]")
    extra = {"boxes-object": ["--boxes", "boxes.json"], "boxes-entry": ["--boxes", "boxes.json"],
             "compare": ["--compare", "summary.json"], "images": ["--images", "photos"],
             "output": ["-o", "photo.jpg/ev"], "visible": ["--visible-threshold", "1.2"],
             "annotations-missing": ["--annotations", "none.json"]}[case]
    assert_refused(cli("eval", *coco, *models, "-o", "ev", *extra, cwd=work), *words)


def test_eval_box_file_says_how_many_images_it_misses(work, coco, models):
    (work / "boxes.json").write_text(json.dumps(
        [{"image_id": 2, "category_id": 1, "bbox": [40, 60, 80, 140], "score": 0.9}]))
    proc = cli("eval", *coco, *models, "--boxes", "boxes.json", "-o", "ev", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "covers 1 of 3 images" in proc.stderr and "the other 2" in proc.stderr


# -- quantize, build, bench, fetch, serve, precompile ------------------------------------------
@pytest.mark.parametrize("content, words", [
    (None, ["--calib-annotations not found"]),
    ("[1, 2, 3]", ["not a COCO annotation file"]),
    ('{"images": [{"id": 1}], "annotations": []}', ["integer 'id' and a 'file_name'"]),
])
def test_quantize_refuses_bad_calibration_annotations(work, content, words):
    if content is not None:
        (work / "calib.json").write_text(content)
    proc = cli("quantize", "pp_tinypose_256x192", "--calib-images", "photos",
               "--calib-annotations", "calib.json", "-q", cwd=work)
    assert_refused(proc, *words)


@pytest.mark.parametrize("argv, words", [
    (["quantize", "--sensitivity", "-1"], ["--sensitivity", ">= 0"]),
    (["quantize", "rtmdet_nano_person_raw", "--calib-images", "photos", "-o", "photo.jpg/x"],
     ["cannot be a folder"]),
    (["quantize", "rtmdet_nano_person_raw", "--calib-images", "nowhere"], ["not found"]),
    (["build", "--calib-batch", "0"], ["--calib-batch must be >= 1"]),
    (["build", "--pose-batch", "8,1,1"], ["1 <= min <= opt <= max"]),
    (["build", "--workspace", "-5"], ["--workspace must be >= 1"]),
    (["build", "--output", "photo.jpg"], ["cannot be a folder"]),
    (["bench", "--repeat", "0"], ["--repeat", ">= 1"]),
    (["bench", "--frames", "nowhere/*.jpg"], ["no images at"]),
    (["bench", "--frames", "photos", "--json", "photo.jpg/b.json"], ["cannot be a folder"]),
    (["bench", "--frames", "photos", "--box-padding", "0"], ["--box-padding"]),
    (["fetch", "posenet"], ["unknown asset 'posenet'"]),
    (["serve", "photo.jpg", "--jsonl", "photo.jpg/poses.jsonl", "--no-http"],
     ["--jsonl", "cannot be a folder"]),
    (["serve", "photo.jpg", "--max-frames", "-1"], ["--max-frames"]),
    (["serve", "photo.jpg", "--set", "pipeline.box_padding=0"], ["--box-padding"]),
    (["serve", "photo.jpg", "--set", "http.keypoint_threshold=3"], ["keypoint_threshold"]),
    (["precompile", "--cache-dir", "photo.jpg/kernels", "--arch", "sm_87"], ["photo.jpg"]),
])
def test_every_command_refuses_bad_input_in_one_line(work, argv, words):
    assert_refused(cli(*argv, cwd=work), *words)


def test_fetch_names_a_cached_copy_that_failed_its_sha256(work, tmp_path):
    from trt_pose_td.models import get_spec

    spec = get_spec("picodet_s_320_pedestrian")  # no public URL: nothing is downloaded
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / spec.file).write_bytes(b"truncated download")
    (tmp_path / "mirror" / "models").mkdir(parents=True)
    proc = cli("fetch", spec.name, cwd=work,
               env={"TRT_POSE_TD_CACHE": str(cache), "TRT_POSE_TD_MIRROR": str(tmp_path /
                                                                                 "mirror")})
    assert_refused(proc, "cached copy", "failed its sha256")
    assert (cache / spec.file).read_bytes() == b"truncated download"


def test_fetch_list_prints_sizes_as_w_x_h():
    proc = cli("fetch", "--list")
    assert proc.returncode == 0, proc.stderr
    assert "416x416" in proc.stdout and "(416, 416)" not in proc.stdout


# -- --help of every subcommand ---------------------------------------------------------------
def _subcommands():
    import argparse

    from trt_pose_td.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub.choices


def test_every_subcommand_help_works_and_says_its_exit_codes(capsys):
    parser, commands = _subcommands()
    assert {"run", "serve", "eval", "build"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as done:
            parser.parse_args([name, "--help"])
        assert done.value.code == 0, name
        text = " ".join(capsys.readouterr().out.split())
        assert f"usage: trt-pose-td {name}" in text, name
        assert "exit status: 0 ok" in text and "2 bad input or usage" in text, name
    for name, meaning in (("run", "could not be read"), ("eval", "--compare gate failed")):
        assert meaning in " ".join(commands[name].format_help().split()), name


def test_serve_help_in_a_subprocess():
    proc = cli("serve", "--help")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "minimum person score (default: 0.2)" in " ".join(proc.stdout.split())
