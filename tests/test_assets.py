"""Asset fetching against real files, a real local HTTP server and a real zip archive."""

import hashlib
import http.server
import os
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest

from trt_pose_td import assets
from trt_pose_td.assets import Asset
from trt_pose_td.errors import AssetError


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def folder_mirror(tmp_path, monkeypatch):
    root = tmp_path / "mirror"
    (root / "models").mkdir(parents=True)
    (root / "models" / "m.onnx").write_bytes(b"model-bytes")
    monkeypatch.setenv("TRT_POSE_TD_MIRROR", str(root))
    return root


@pytest.fixture()
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_from_folder_mirror_verifies_and_caches(folder_mirror, tmp_path):
    a = Asset("m", "m.onnx", _sha(b"model-bytes"), mirror_path="models/m.onnx")
    path = assets.fetch(a, progress=False, cache=tmp_path / "c")
    assert path.read_bytes() == b"model-bytes"
    (folder_mirror / "models" / "m.onnx").unlink()  # cached now: the mirror is not needed
    assert assets.fetch(a, progress=False, cache=tmp_path / "c") == path


def test_checksum_mismatch_is_refused_and_keeps_nothing(folder_mirror, tmp_path):
    a = Asset("m", "m.onnx", "0" * 64, mirror_path="models/m.onnx")
    with pytest.raises(AssetError, match="sha256"):
        assets.fetch(a, progress=False, cache=tmp_path / "c")
    assert not list((tmp_path / "c").iterdir())


def test_corrupt_cache_is_replaced(folder_mirror, tmp_path):
    a = Asset("m", "m.onnx", _sha(b"model-bytes"), mirror_path="models/m.onnx")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "m.onnx").write_bytes(b"truncated")
    assert assets.fetch(a, progress=False, cache=tmp_path / "c").read_bytes() == b"model-bytes"


def test_offline_without_mirror_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("TRT_POSE_TD_MIRROR", raising=False)
    a = Asset("m", "m.onnx", None, urls=("http://127.0.0.1:9/none.onnx",),
              mirror_path="models/m.onnx")
    with pytest.raises(AssetError, match="TRT_POSE_TD_MIRROR") as exc:
        assets.fetch(a, progress=False, cache=tmp_path)
    assert "\n" not in str(exc.value)


def test_download_over_http_and_url_mirror(http_root, monkeypatch, tmp_path):
    root, base = http_root
    (root / "models").mkdir()
    (root / "models" / "m.onnx").write_bytes(b"x" * 100_000)
    a = Asset("m", "m.onnx", _sha(b"x" * 100_000), mirror_path="models/m.onnx")
    monkeypatch.setenv("TRT_POSE_TD_MIRROR", base)
    assert assets.fetch(a, progress=True, cache=tmp_path / "c1").stat().st_size == 100_000
    monkeypatch.delenv("TRT_POSE_TD_MIRROR")
    b = Asset("m", "m.onnx", a.sha256, urls=(f"{base}/missing.onnx", f"{base}/models/m.onnx"))
    assert assets.fetch(b, progress=False, cache=tmp_path / "c2").stat().st_size == 100_000


def test_zip_bundle_member_is_extracted(http_root, monkeypatch, tmp_path):
    root, base = http_root
    with zipfile.ZipFile(root / "bundle.zip", "w") as zf:
        zf.writestr("rtmpose-x/end2end.onnx", b"onnx-inside")
        zf.writestr("rtmpose-x/pipeline.json", b"{}")
    monkeypatch.delenv("TRT_POSE_TD_MIRROR", raising=False)
    a = Asset("r", "r.onnx", _sha(b"onnx-inside"), urls=(f"{base}/bundle.zip",),
              archive_member="end2end.onnx")
    assert assets.fetch(a, progress=False, cache=tmp_path).read_bytes() == b"onnx-inside"


def test_registry_models_and_samples_from_mirror(shared):
    """Every sample entry is where the mirror layout says; the class photo fetches from it."""
    for group, entries in assets.SAMPLES.items():
        for a in entries:
            path = Path(shared) / a.mirror_path
            assert path.is_file(), f"{group}: {path}"
    paths = assets.sample_paths("class_photo", progress=False)
    assert paths[0].name == "000000002299.jpg" and os.path.getsize(paths[0]) > 10_000


def test_unknown_assets_are_refused():
    for name in ("rtmdet_nano_person", "pp_tinypose_256x192"):
        assert next(iter(assets.all_assets([name]))).sha256
    with pytest.raises(AssetError, match="unknown asset"):
        list(assets.all_assets(["no_such_model"]))


@pytest.mark.parametrize("name", ["rtmdet_nano_person_raw", "pp_tinypose_256x192"])
def test_default_pair_ships_in_the_package_and_needs_nothing_else(name, monkeypatch, tmp_path):
    """No mirror, an empty cache, no network: the default models are the packaged files, in
    place (never copied into the cache), and they pass their registry sha256."""
    from trt_pose_td.models import DEFAULT_DETECTOR, DEFAULT_POSE, get_spec

    assert name in (DEFAULT_DETECTOR, DEFAULT_POSE)
    monkeypatch.delenv("TRT_POSE_TD_MIRROR", raising=False)
    spec = get_spec(name)
    path = assets.fetch(assets.model_asset(spec), progress=False, cache=tmp_path)
    assert path.parent == assets.DATA_DIR / "models"
    assert assets.sha256_file(path) == spec.sha256
    assert list(tmp_path.iterdir()) == []


def test_packaged_sample_photo_and_its_licence(monkeypatch, tmp_path):
    monkeypatch.delenv("TRT_POSE_TD_MIRROR", raising=False)
    (photo,) = assets.sample_paths("sample", progress=False)
    assert photo.parent == assets.DATA_DIR / "samples" and photo.stat().st_size > 300_000
    notice = (assets.DATA_DIR / "NOTICE.md").read_text()
    for must in (photo.name, "CC BY 2.0", "Apache-2.0", "4906536419_6113bd7de4",
                 assets.sha256_file(photo)):
        assert must in notice


def test_a_good_cached_copy_wins_and_a_corrupt_one_falls_back_to_the_package(monkeypatch,
                                                                            tmp_path):
    from trt_pose_td.models import get_spec

    monkeypatch.delenv("TRT_POSE_TD_MIRROR", raising=False)
    asset = assets.model_asset(get_spec("pp_tinypose_256x192"))
    cached = tmp_path / asset.file
    cached.write_bytes(b"truncated download")
    assert assets.fetch(asset, progress=False, cache=tmp_path) == assets.DATA_DIR / "models" / \
        asset.file
    assert cached.read_bytes() == b"truncated download"  # never overwritten by the package
    cached.write_bytes((assets.DATA_DIR / "models" / asset.file).read_bytes())
    assert assets.fetch(asset, progress=False, cache=tmp_path) == cached


def test_a_corrupt_packaged_file_is_not_used(monkeypatch, tmp_path, folder_mirror):
    """A packaged copy that fails its sha256 (a damaged install) is skipped for the mirror."""
    data = b"model-bytes"
    monkeypatch.setattr(assets, "DATA_DIR", tmp_path / "pkg")
    (tmp_path / "pkg" / "models").mkdir(parents=True)
    (tmp_path / "pkg" / "models" / "m.onnx").write_bytes(b"damaged")
    a = Asset("m", "m.onnx", _sha(data), (), "models/m.onnx", packaged="models/m.onnx")
    got = assets.fetch(a, progress=False, cache=tmp_path / "cache")
    assert got == tmp_path / "cache" / "m.onnx" and got.read_bytes() == data
