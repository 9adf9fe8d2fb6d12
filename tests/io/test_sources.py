import numpy as np
import pytest

from trt_pose_td.errors import SourceError
from trt_pose_td.io.sources import ImageSource, VideoSource, open_source

cv2 = pytest.importorskip("cv2")


def _img(path, value=100, size=(40, 60)):
    cv2.imwrite(str(path), np.full((*size, 3), value, np.uint8))
    return path


def test_single_image_and_folder_and_glob(tmp_path):
    _img(tmp_path / "b.jpg")
    _img(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    single = open_source(str(tmp_path / "a.png"))
    frames = list(single)
    assert len(frames) == 1 and frames[0].image.shape == (40, 60, 3)
    folder = list(open_source(str(tmp_path)))
    assert [f.source.rsplit("/", 1)[1] for f in folder] == ["a.png", "b.jpg"]
    assert [f.index for f in folder] == [0, 1]
    assert len(list(open_source(str(tmp_path / "*.jpg")))) == 1


def test_missing_and_unreadable_inputs_give_one_line_errors(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "nope.jpg"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(SourceError, match="cannot read image"):
        list(open_source(str(bad)))
    fake_video = tmp_path / "clip.mp4"
    fake_video.write_bytes(b"garbage" * 100)
    with pytest.raises(SourceError, match="not a video"):
        open_source(str(fake_video))
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path / "*.png"))


def test_bad_image_in_folder_is_skipped_not_fatal(tmp_path):
    _img(tmp_path / "1.jpg")
    (tmp_path / "2.jpg").write_bytes(b"broken")
    _img(tmp_path / "3.jpg")
    src = open_source(str(tmp_path))
    assert isinstance(src, ImageSource)
    assert len(list(src)) == 2
    assert [p.rsplit("/", 1)[1] for p in src.skipped] == ["2.jpg"]


def test_video_file_frames_and_timestamps(tmp_path):
    path = str(tmp_path / "v.mp4")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(5):
        w.write(np.full((48, 64, 3), i * 40, np.uint8))
    w.release()
    src = open_source(path)
    assert isinstance(src, VideoSource) and src.total == 5 and src.fps == pytest.approx(10.0)
    frames = list(src)
    assert len(frames) == 5
    assert frames[1].timestamp > frames[0].timestamp
    assert len([f for _, f in zip(range(12), open_source(path, loop=True))]) == 12
