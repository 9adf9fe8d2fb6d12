"""vtest.avi from the mirror (sha256-checked) or Debian's opencv-doc."""

from __future__ import annotations

import pytest

from trt_pose_td import assets
from trt_pose_td.errors import AssetError


def test_vtest_comes_from_the_mirror_or_debian_checked():
    """From the mirror when it has video/vtest.avi, else `apt-get download opencv-doc` for real;
    either way the cached copy passes its sha256."""
    path = assets.vtest_path()
    assert str(path).startswith(str(assets.cache_dir()))
    assert assets.sha256_file(path) == assets.VTEST.sha256


def test_vtest_without_mirror_or_apt_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("TRT_POSE_TD_CACHE", str(tmp_path))
    monkeypatch.delenv("TRT_POSE_TD_MIRROR", raising=False)
    monkeypatch.setattr(assets.shutil, "which", lambda name: None)
    with pytest.raises(AssetError, match="apt-get/dpkg"):
        assets.vtest_path()
