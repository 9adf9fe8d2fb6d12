"""Credentials never leave in a URI: redaction of free text, credentials joined at open time."""

from __future__ import annotations

import pytest

from trt_pose_td.io.uri import redact, with_credentials


@pytest.mark.parametrize("text, expected", [
    ("rtsp://admin:s3cret@10.0.0.2:554/live", "rtsp://***@10.0.0.2:554/live"),
    ("cannot open http://u:p@ss@cam/x.mjpg now", "cannot open http://***@cam/x.mjpg now"),
    ("rtsps://user@cam", "rtsps://***@cam"),
    ("a rtsp://a:b@h/1 and http://c:d@h/2", "a rtsp://***@h/1 and http://***@h/2"),
    ("rtsp://cam:554/live?user=x", "rtsp://cam:554/live?user=x"),
    ("/videos/a@b.mp4", "/videos/a@b.mp4"),
    ("mail me@host", "mail me@host"),
])
def test_redact_strips_every_userinfo_and_nothing_else(text, expected):
    assert redact(text) == expected


def test_with_credentials_quotes_and_keeps_the_uri_user():
    assert with_credentials("rtsp://cam:554/x?a=1", "admin", "p@ss/w:rd") == \
        "rtsp://admin:p%40ss%2Fw%3Ard@cam:554/x?a=1"
    assert with_credentials("rtsp://admin@cam/x", "", "pw") == "rtsp://admin:pw@cam/x"
    assert with_credentials("http://old:x@cam", "new", None) == "http://new@cam"
    assert with_credentials("rtsp://cam/x") == "rtsp://cam/x"
    assert "pw" not in redact(with_credentials("rtsp://cam/x", "u", "pw"))
    with pytest.raises(ValueError, match="take credentials"):
        with_credentials("/dev/video0", "u", "pw")
