"""Fetch, verify and cache models and sample media.

Where a file comes from, in order:
1. the user cache (``$TRT_POSE_TD_CACHE``, else ``$XDG_CACHE_HOME/trt_pose_td``, else
   ``~/.cache/trt_pose_td``) when its sha256 matches;
2. the package itself: the default model pair and the sample photo ship inside it
   (``trt_pose_td/data/``, see ``data/NOTICE.md``) and are used in place, never copied;
3. the mirror named by ``$TRT_POSE_TD_MIRROR``: a folder or URL base laid out like the project's
   shared data (``models/<file>``, ``coco/...``, ``crowd/...``);
4. the upstream URLs of the registry.

Every file is checked against its sha256 (when the registry knows it) before it is used; a partial
or corrupt download never replaces a good cached file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import AssetError
from .models import ModelSpec
from .progress import progress_bar

log = logging.getLogger(__name__)

MIRROR_ENV = "TRT_POSE_TD_MIRROR"
CACHE_ENV = "TRT_POSE_TD_CACHE"
_TIMEOUT_S = 30


@dataclass(frozen=True)
class Asset:
    """One downloadable file: cache name, checksum and where to find it."""

    name: str
    file: str
    sha256: Optional[str]
    urls: Tuple[str, ...] = ()
    mirror_path: Optional[str] = None
    archive_member: Optional[str] = None
    packaged: Optional[str] = None

    def packaged_path(self) -> Optional[Path]:
        """The copy shipped inside the package (``trt_pose_td/data/<packaged>``), if any."""
        if self.packaged is None:
            return None
        path = DATA_DIR / self.packaged
        return path if path.is_file() else None


#: Package data: the shipped models (``models/``), the sample photo (``samples/``), registries.
DATA_DIR = Path(__file__).with_name("data")


def cache_dir() -> Path:
    """The user cache folder (created on demand)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trt_pose_td"


def mirror() -> Optional[str]:
    """``$TRT_POSE_TD_MIRROR`` (a folder or an http(s)/file URL base), or None."""
    value = os.environ.get(MIRROR_ENV, "").strip()
    return value or None


def mirror_dir() -> Optional[Path]:
    """The mirror as a local folder, or None when unset, a URL, or missing."""
    value = mirror()
    if value is None or "://" in value:
        return None
    path = Path(value).expanduser()
    return path if path.is_dir() else None


def path_or_mirror(value: Optional[str], rel: str, flag: str) -> Path:
    """``value`` as a path, else ``rel`` inside the data mirror; :class:`AssetError` naming
    ``flag`` and the variable when neither is there."""
    if value:
        return Path(value).expanduser()
    base = mirror_dir()
    if base is None or not (base / rel).exists():
        raise AssetError(f"{flag} not given and no data mirror holds {rel} (set {MIRROR_ENV} or "
                         "pass the path)")
    return base / rel


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def model_asset(spec: ModelSpec) -> Asset:
    return Asset(spec.name, spec.file, spec.sha256, tuple(spec.urls),
                 spec.mirror_path or f"models/{spec.file}", spec.archive_member,
                 packaged=f"models/{spec.file}" if spec.sha256 else None)


def _load_samples() -> Dict[str, List[Asset]]:
    doc = json.loads((DATA_DIR / "samples.json").read_text())
    return {
        group: [Asset(f"{group}/{e['file']}", f"samples/{e['file']}", e["sha256"],
                      tuple(e.get("urls", ())), e.get("mirror_path"),
                      packaged=e.get("packaged")) for e in entries]
        for group, entries in doc["samples"].items()
    }


SAMPLES = _load_samples()


def _verified(path: Path, sha256: Optional[str]) -> bool:
    return path.is_file() and (sha256 is None or sha256_file(path) == sha256)


def _candidates(asset: Asset) -> List[str]:
    """Sources to try, mirror first: local paths or URLs."""
    out: List[str] = []
    base = mirror()
    if base and asset.mirror_path:
        if "://" in base:
            out.append(base.rstrip("/") + "/" + asset.mirror_path)
        else:
            out.append(str(Path(base).expanduser() / asset.mirror_path))
    out.extend(asset.urls)
    return out


def _download(url: str, dest: Path, progress: bool) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "trt-pose-td"})
    with urllib.request.urlopen(req, timeout=_TIMEOUT_S) as resp, open(dest, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        bar = progress_bar(total, dest.name, "B", not progress, unit_scale=True,
                           unit_divisor=1024)
        try:
            for block in iter(lambda: resp.read(1 << 16), b""):
                out.write(block)
                bar.update(len(block))
        finally:
            bar.close()


def _extract(archive: Path, member: str, dest: Path) -> None:
    """Copy the (first) archive entry whose name ends with ``member`` to ``dest``."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(member)]
            if not names:
                raise AssetError(f"{archive.name} has no {member}")
            with zf.open(sorted(names, key=len)[0]) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    except zipfile.BadZipFile as exc:
        raise AssetError(f"{archive.name} is not a zip archive ({exc})") from exc


def fetch(asset: Asset, progress: bool = True, cache: Optional[Path] = None) -> Path:
    """The verified local path of ``asset``, downloading or copying it on first use.

    Raises :class:`AssetError` naming what was tried and ``$TRT_POSE_TD_MIRROR`` when no source
    has it.
    """
    cache = cache or cache_dir()
    dest = cache / asset.file
    if _verified(dest, asset.sha256):
        return dest
    # a cached copy that fails its sha256 (corrupt, truncated, replaced) is never used
    tried = [f"the cached copy {dest} (it failed its sha256 check)"] if dest.is_file() else []
    shipped = asset.packaged_path()
    if shipped is not None:
        if _verified(shipped, asset.sha256):
            return shipped
        log.warning("the packaged copy of %s (%s) fails its sha256: reinstall the package; "
                    "looking elsewhere", asset.name, shipped)
        tried.append(f"the packaged copy {shipped} (it failed its sha256 check)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    for source in _candidates(asset):
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            if "://" in source:
                _download(source, tmp, progress)
            elif Path(source).is_file():
                shutil.copyfile(source, tmp)
            else:
                tried.append(f"{source} (not found)")
                continue
            if asset.archive_member:
                member = tmp.with_suffix(".member")
                _extract(tmp, asset.archive_member, member)
                member.replace(tmp)
            digest = sha256_file(tmp)
            if asset.sha256 is not None and digest != asset.sha256:
                tried.append(f"{source} (sha256 {digest[:16]}... expected {asset.sha256[:16]}...)")
                continue
            if asset.sha256 is None:
                log.warning("%s has no published sha256; fetched file has %s", asset.name, digest)
            tmp.replace(dest)
            log.info("fetched %s from %s", asset.name, source)
            return dest
        except (urllib.error.URLError, OSError, AssetError) as exc:
            reason = getattr(exc, "reason", None) or exc
            tried.append(f"{source} ({reason})")
        finally:
            tmp.unlink(missing_ok=True)
    if not tried:
        raise AssetError(f"{asset.name} has no download URL; set {MIRROR_ENV} to a mirror folder "
                         f"or URL holding {asset.mirror_path}")
    raise AssetError(f"could not fetch {asset.name}: tried {'; '.join(tried)}. Offline? Set "
                     f"{MIRROR_ENV} to a folder or URL laid out like models/<file>")


def model_path(spec: ModelSpec, progress: bool = True) -> Path:
    """Local ONNX file of ``spec``: the user's own path, or the fetched registry file."""
    if spec.is_local_file:
        path = Path(spec.file)
        if not path.is_file():
            raise AssetError(f"model file not found: {path}")
        return path
    return fetch(model_asset(spec), progress=progress)


def sample_paths(group: str, progress: bool = True) -> List[Path]:
    """Files of a sample group (``sample``: the packaged photo; ``class_photo``, ``mot17``,
    ``demo_video``: fetched from the mirror or upstream)."""
    if group not in SAMPLES:
        raise AssetError(f"unknown sample {group!r}; known: {', '.join(sorted(SAMPLES))}")
    return [fetch(a, progress=progress) for a in SAMPLES[group]]


def all_assets(names: Sequence[str] = ()) -> Iterable[Asset]:
    """Assets by model name or sample group; all registry models and samples when empty."""
    from .models import REGISTRY

    if not names:
        names = [n for n, s in REGISTRY.items() if s.sha256] + sorted(SAMPLES)
    for name in names:
        if name in REGISTRY:
            yield model_asset(REGISTRY[name])
        elif name in SAMPLES:
            yield from SAMPLES[name]
        else:
            raise AssetError(f"unknown asset {name!r}; models: {', '.join(sorted(REGISTRY))}; "
                             f"samples: {', '.join(sorted(SAMPLES))}")


#: OpenCV's pedestrian clip (768x576, 795 frames, 10 fps; Apache-2.0 / BSD), the real video for
#: tracking: from the mirror's ``video/vtest.avi``, else Debian's ``opencv-doc`` package.
VTEST_SHA256 = "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"
VTEST = Asset("vtest", "samples/vtest.avi", VTEST_SHA256, mirror_path="video/vtest.avi")
_VTEST_DEB_MEMBER = "usr/share/doc/opencv-doc/examples/data/vtest.avi"


def vtest_path(progress: bool = False) -> Path:
    """Local, sha256-checked ``vtest.avi``: cache, then the mirror, then ``apt-get download
    opencv-doc`` + ``dpkg -x`` (Debian / Ubuntu). :class:`AssetError` saying so when none has it."""
    try:
        return fetch(VTEST, progress=progress)
    except AssetError as exc:
        first = exc
    dest = cache_dir() / VTEST.file
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        raise AssetError(f"{first}; no apt-get/dpkg to take it from Debian's opencv-doc either")
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(["apt-get", "download", "opencv-doc"], cwd=tmp, check=True,
                           capture_output=True, timeout=600)
            deb = next(Path(tmp).glob("opencv-doc_*.deb"))
            subprocess.run(["dpkg", "-x", str(deb), str(Path(tmp) / "x")], check=True,
                           capture_output=True, timeout=600)
        except (subprocess.SubprocessError, StopIteration, OSError) as err:
            raise AssetError(f"{first}; apt-get download opencv-doc failed ({err})") from err
        found = Path(tmp) / "x" / _VTEST_DEB_MEMBER
        if not _verified(found, VTEST_SHA256):
            raise AssetError(f"opencv-doc has no vtest.avi with sha256 {VTEST_SHA256[:16]}...")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found, dest)
    log.info("fetched vtest.avi from Debian's opencv-doc")
    return dest
