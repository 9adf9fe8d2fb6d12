"""Compile the package's CUDA kernels with NVRTC, cached on disk.

A compiled image is keyed by the kernel source (sha256), the target (``sm_87`` -> cubin,
``compute_87`` -> PTX), the NVRTC version and the options, and lives in
``<cache>/kernels/<stem>.<target>.<key>.{cubin,ptx}`` (``<cache>`` = ``TRT_POSE_TD_CACHE`` or
``~/.cache/trt_pose_td``). The first use on a device compiles its own ``sm_XY`` (a second or
so); ``trt-pose-td precompile`` fills the cache ahead of time, e.g. in a Docker build without a
GPU. NVRTC needs no GPU, which is how CI compiles the exact kernel source.

Kernels are compiled with ``--fmad=false`` so every float operation is rounded as written and the
numpy twins (:mod:`.twins`) reproduce the arithmetic bit for bit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from ..errors import ConfigError, DependencyError
from .driver import CudaError, check, cuda_module

log = logging.getLogger(__name__)

KERNEL_DIR = Path(__file__).resolve().parent / "kernels"
#: Kernel sources of the package (file names in :data:`KERNEL_DIR`).
KERNEL_SOURCES = ("warp.cu", "decode.cu")
#: Exact IEEE float arithmetic: no fused multiply-add contraction, IEEE division, no FTZ.
OPTIONS = ("--fmad=false", "--prec-div=true", "--ftz=false", "--std=c++14")
#: What ``precompile`` builds when no GPU says which: Xavier and Orin SASS + PTX for the JIT.
DEFAULT_TARGETS = ("sm_72", "sm_87", "compute_72", "compute_87")

_TARGET = re.compile(r"^(sm|compute)_(\d)(\d+)$")


def _nvrtc() -> Any:
    return cuda_module("nvrtc", "nvrtc")


def _install_hint(nvrtc: Any) -> str:
    """How to get the NVRTC library the loaded cuda-python looks for."""
    if not getattr(nvrtc, "__name__", "").startswith("cuda.bindings"):  # cuda-python 11.8
        return ("cuda-python 11.8 loads libnvrtc.so.11.2: on JetPack 5 it comes with CUDA 11.4 "
                "(apt install cuda-nvrtc-11-4; /usr/local/cuda/lib64 on the library path)")
    return "install it with: pip install nvidia-cuda-nvrtc-cu12 (or use the CUDA toolkit's)"


def _call(name: str, *args: Any) -> Any:
    """``nvrtc.<name>(*args)`` with its status checked (:func:`~.driver.check`).

    cuda-python loads the NVRTC library on the first call and raises when it cannot: before 12.6
    ``RuntimeError: Function "nvrtcX" not found``, from 12.9 ``DynamicLibNotFoundError`` (also a
    RuntimeError). Both become one :class:`DependencyError` naming the install step, whichever
    function is called first (``Kernels`` starts with :func:`supported_archs`)."""
    nvrtc = _nvrtc()
    try:
        result = getattr(nvrtc, name)(*args)
    except (RuntimeError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DependencyError(f"NVRTC not found ({first}); {_install_hint(nvrtc)}") from None
    return check(*result)


def nvrtc_version() -> Tuple[int, int]:
    """(major, minor) of the NVRTC library cuda-python loads; DependencyError without one."""
    major, minor = _call("nvrtcVersion")
    return int(major), int(minor)


def parse_target(target: str) -> Tuple[str, int]:
    """``sm_87`` -> ("sm", 87); ``compute_72`` -> ("compute", 72); ConfigError otherwise."""
    m = _TARGET.match(target)
    if not m:
        raise ConfigError(f"bad CUDA target {target!r}: expected sm_XY (cubin) or compute_XY (PTX)")
    return m.group(1), int(m.group(2) + m.group(3))


def supported_archs() -> List[int]:
    """Compute capabilities this NVRTC can target, e.g. [35, ..., 86, 87] for NVRTC 11.4
    (JetPack 5), [50, ..., 87, 89, 90] for 12.x; DependencyError without NVRTC."""
    return sorted(int(a) for a in _call("nvrtcGetSupportedArchs"))


def check_targets(targets: Sequence[str], supported: Sequence[int],
                  version: Tuple[int, int]) -> None:
    """:class:`ConfigError` naming the targets this NVRTC cannot compile for (e.g. ``sm_90`` on
    NVRTC 11.4, which stops at 87), before any compile error does."""
    bad = [t for t in targets if parse_target(t)[1] not in supported]
    if bad:
        raise ConfigError(f"NVRTC {version[0]}.{version[1]} cannot compile for "
                          f"{', '.join(bad)}: it supports compute {supported[0]}..{supported[-1]}"
                          f" ({', '.join(str(a) for a in supported)}); drop that --arch or use "
                          "a newer NVRTC")


def target_for(major: int, minor: int, supported: Sequence[int]) -> str:
    """The best target for a device: its own cubin when NVRTC knows the arch, else PTX of the
    newest arch below it (the driver JIT-compiles it, e.g. a new GPU with an older NVRTC)."""
    cc = major * 10 + minor
    if cc in supported:
        return f"sm_{cc}"
    lower = [a for a in supported if a <= cc]
    if not lower:
        raise ConfigError(f"NVRTC supports {supported[0]}..{supported[-1]}, not compute {major}."
                          f"{minor}")
    return f"compute_{max(lower)}"


def kernel_source(name: str) -> str:
    path = KERNEL_DIR / name
    if name not in KERNEL_SOURCES or not path.is_file():
        raise ConfigError(f"unknown kernel source {name!r}; expected one of {KERNEL_SOURCES}")
    return path.read_text()


def compile_source(source: str, name: str, target: str,
                   options: Sequence[str] = OPTIONS) -> bytes:
    """NVRTC-compile ``source`` for ``target``: cubin (``sm_XY``) or PTX (``compute_XY``) bytes.

    Raises :class:`CudaError` with NVRTC's log on a compile error.
    """
    kind, _ = parse_target(target)
    prog = _call("nvrtcCreateProgram", source.encode(), name.encode(), 0, [], [])
    nvrtc = _nvrtc()
    try:
        opts = [f"--gpu-architecture={target}".encode()] + [o.encode() for o in options]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if int(err) != 0:
            raise CudaError(f"NVRTC could not compile {name} for {target}:\n"
                            f"{_program_log(nvrtc, prog)}")
        if kind == "sm":
            size = int(check(*nvrtc.nvrtcGetCUBINSize(prog)))
            image = b" " * size
            check(*nvrtc.nvrtcGetCUBIN(prog, image))
        else:
            size = int(check(*nvrtc.nvrtcGetPTXSize(prog)))
            image = b" " * size
            check(*nvrtc.nvrtcGetPTX(prog, image))
    finally:
        check(*nvrtc.nvrtcDestroyProgram(prog))
    return image


def _program_log(nvrtc: Any, prog: Any) -> str:
    size = int(check(*nvrtc.nvrtcGetProgramLogSize(prog)))
    text = b" " * size
    check(*nvrtc.nvrtcGetProgramLog(prog, text))
    return text.rstrip(b"\0 ").decode(errors="replace")


def cache_key(source: str, target: str, version: Tuple[int, int],
              options: Sequence[str] = OPTIONS) -> str:
    h = hashlib.sha256()
    for part in (source, target, f"nvrtc{version[0]}.{version[1]}", " ".join(options)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    from ..assets import cache_dir

    return cache_dir() / "kernels"


def cached_path(name: str, target: str, cache_dir: Optional[Path] = None) -> Path:
    """Where the image of kernel source ``name`` for ``target`` is cached (may not exist yet)."""
    kind, _ = parse_target(target)
    key = cache_key(kernel_source(name), target, nvrtc_version())
    suffix = "cubin" if kind == "sm" else "ptx"
    return Path(cache_dir or default_cache_dir()) / f"{Path(name).stem}.{target}.{key}.{suffix}"


def _looks_valid(image: bytes, target: str) -> bool:
    kind, _ = parse_target(target)
    return image.startswith(b"\x7fELF") if kind == "sm" else b".entry" in image


def load_or_compile(name: str, target: str, cache_dir: Optional[Path] = None,
                    refresh: bool = False) -> Tuple[bytes, Path]:
    """The compiled image of ``name`` for ``target`` from the cache, compiling on a miss.

    A damaged cache file (not a cubin / PTX) is recompiled; writes are atomic, so two processes
    compiling at once both end up with a good file.
    """
    path = cached_path(name, target, cache_dir)
    if path.is_file() and not refresh:
        image = path.read_bytes()
        if _looks_valid(image, target):
            return image, path
        log.warning("recompiling damaged kernel cache file %s", path)
    image = compile_source(kernel_source(name), name, target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(image)
    os.replace(tmp, path)
    log.info("compiled %s for %s -> %s (%d bytes)", name, target, path, len(image))
    return image, path


def precompile(targets: Iterable[str], cache_dir: Optional[Path] = None,
               refresh: bool = False) -> List[Tuple[str, str, Path, int]]:
    """Compile every kernel source for every target into the cache.

    Returns (source, target, path, bytes) rows.
    """
    targets = list(targets)
    for target in targets:
        parse_target(target)
    check_targets(targets, supported_archs(), nvrtc_version())
    rows = []
    for target in targets:
        for name in KERNEL_SOURCES:
            image, path = load_or_compile(name, target, cache_dir, refresh)
            rows.append((name, target, path, len(image)))
    return rows
