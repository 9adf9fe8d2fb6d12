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
    for name in ("rtmdet_nano_person", "pp_tinypose_256x192"):
        assert next(iter(assets.all_assets([name]))).sha256
    paths = assets.sample_paths("class_photo", progress=False)
    assert paths[0].name == "000000002299.jpg" and os.path.getsize(paths[0]) > 10_000
    with pytest.raises(AssetError, match="unknown asset"):
        list(assets.all_assets(["no_such_model"]))


def test_every_sample_entry_exists_in_the_mirror(shared):
    for group, entries in assets.SAMPLES.items():
        for a in entries:
            path = Path(shared) / a.mirror_path
            assert path.is_file(), f"{group}: {path}"
