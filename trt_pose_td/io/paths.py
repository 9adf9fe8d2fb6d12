"""Output paths that lose nothing: writable-folder checks, input/output clash checks, and files
written under a temporary name then moved into place (``os.replace``) once complete.

Every failure is one :class:`~trt_pose_td.errors.ConfigError` line naming the path and the OS
reason, raised before any model is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

from ..errors import ConfigError


def os_reason(exc: OSError) -> str:
    """``Permission denied`` rather than ``[Errno 13] Permission denied: '/x'``."""
    return exc.strerror or str(exc)


def ensure_output_dir(path: Path, flag: str = "--output") -> Path:
    """Create folder ``path`` (and parents) and check it is writable; :class:`ConfigError`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder: name a folder (it is created "
                          "when missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {path}: {os_reason(exc)}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to output folder {path}: permission denied")
    return path


def check_output_dir(path: Path, flag: str = "--output") -> None:
    """Folder ``path`` could be created and written, without creating it: it is a writable
    folder, or its nearest existing ancestor is. Run before long work whose result goes there."""
    path = Path(os.path.abspath(path))
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        where = "" if probe == path else f" ({probe} is a file)"
        raise ConfigError(f"{flag} {path} cannot be a folder{where}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to {flag} {path}: permission denied on {probe}")


def check_output_file(path: Path, flag: str) -> None:
    """``path`` can be written (not a folder, its folder creatable and writable), checked
    without writing anything."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"cannot write {flag} {path}: permission denied")
    check_output_dir(path.parent, f"the folder of {flag}")


def _file_id(path: Path) -> Optional[Tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_no_clash(inputs: Iterable[str], outputs: Iterable[Path]) -> None:
    """Refuse outputs that would overwrite an input (same resolved path or same file, e.g. a
    hard link): ``trt-pose-td run photo.jpg -o .`` must not replace the photo."""
    ids: Dict[object, str] = {}
    for name in inputs:
        ids[os.path.realpath(name)] = name
        file_id = _file_id(Path(name))
        if file_id is not None:
            ids[file_id] = name
    for out in outputs:
        hit = ids.get(os.path.realpath(out)) or ids.get(_file_id(out))
        if hit is not None:
            raise ConfigError(f"the output {out} would overwrite the input {hit}: choose another "
                              "output folder (-o DIR)")


def partial_path(dest: Path) -> Path:
    """A temporary name beside ``dest`` with the same suffix (OpenCV picks the format by it):
    ``DIR/.name.partial-<pid>.ext``."""
    dest = Path(dest)
    return dest.with_name(f".{dest.stem}.partial-{os.getpid()}{dest.suffix}")


def commit(tmp: Path, dest: Path) -> None:
    """Move a finished temporary file into place (atomic on one filesystem)."""
    try:
        os.replace(tmp, dest)
    except OSError as exc:
        discard(tmp)
        raise ConfigError(f"cannot write {dest}: {os_reason(exc)}") from None


def discard(tmp: Path) -> None:
    """Remove an unfinished temporary file (missing is fine)."""
    try:
        os.unlink(tmp)
    except OSError:
        pass
