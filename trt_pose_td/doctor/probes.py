"""The facts ``doctor`` judges, gathered from this machine (imports, the GPU, files, processes).

Each probe catches what its dependency can raise and records the first line of the error, so one
broken piece never hides the others. Files are read under ``root`` (``/`` on a device).
"""

from __future__ import annotations

import importlib
import logging
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..config import PipelineConfig

log = logging.getLogger(__name__)

#: L4T major release -> JetPack major (``/etc/nv_tegra_release``).
JETPACK = {32: 4, 35: 5, 36: 6, 38: 7}
_GPU_DEVFREQ = re.compile(r"gpu|ga10b|gv11b|gp10b|gb10b", re.I)


@dataclass
class Facts:
    """What one run of the probes found (None: not found / not applicable)."""

    python: str = ""
    executable: str = ""
    venv: bool = False
    venv_system_site: Optional[bool] = None
    numpy: Optional[str] = None
    numpy_error: str = ""
    tensorrt: Optional[str] = None
    tensorrt_error: str = ""
    cv2: Optional[str] = None
    cv2_error: str = ""
    cv2_gstreamer: Optional[bool] = None
    onnxruntime: Optional[str] = None
    onnxruntime_error: str = ""
    cuda_python: Optional[str] = None
    cuda_python_error: str = ""
    nvrtc: Optional[Tuple[int, int]] = None
    nvrtc_archs: List[int] = field(default_factory=list)
    nvrtc_error: str = ""
    gpu: Optional[Dict[str, Any]] = None  # name, major, minor, integrated, memory, driver
    gpu_error: str = ""
    engine_dir: str = ""
    engines: List[Dict[str, Any]] = field(default_factory=list)  # name, meta, reasons
    needed_engines: List[Tuple[str, bool]] = field(default_factory=list)  # (path, exists)
    precision: str = "fp16"
    cuda_module_loading: Optional[str] = None
    l4t: Optional[Tuple[int, str]] = None  # (major, "R36.4.0")
    nvpmodel: Optional[str] = None
    nvpmodel_error: str = ""
    clocks: Dict[str, Optional[bool]] = field(default_factory=dict)  # cpu / gpu -> pinned
    container: bool = False
    csi_configured: bool = False
    csi_present: bool = False
    argus_socket: bool = False


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _import(name: str) -> Tuple[Any, str]:
    """(module, "") or (None, first line of why not): ImportError, an ABI AttributeError, a
    missing shared library (OSError)."""
    try:
        return importlib.import_module(name), ""
    except Exception as exc:  # whatever importing raises is the finding
        return None, f"{type(exc).__name__}: {first_line(exc)}"


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def probe_python(facts: Facts) -> None:
    facts.python = sys.version.split()[0]
    facts.executable = sys.executable
    facts.venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    cfg = _read(Path(sys.prefix) / "pyvenv.cfg") if facts.venv else None
    if cfg is not None:
        facts.venv_system_site = bool(re.search(r"include-system-site-packages\s*=\s*true", cfg,
                                                re.I))


def probe_modules(facts: Facts) -> None:
    """numpy, tensorrt, cv2 (and whether it has GStreamer), onnxruntime."""
    np, facts.numpy_error = _import("numpy")
    facts.numpy = getattr(np, "__version__", None) if np is not None else None
    trt, facts.tensorrt_error = _import("tensorrt")
    facts.tensorrt = str(getattr(trt, "__version__", "?")) if trt is not None else None
    cv2, facts.cv2_error = _import("cv2")
    if cv2 is not None:
        facts.cv2 = str(getattr(cv2, "__version__", "?"))
        try:
            found = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())
            facts.cv2_gstreamer = bool(found and found.group(1).upper() == "YES")
        except Exception:  # a cv2 without build information: unknown
            facts.cv2_gstreamer = None
    ort, facts.onnxruntime_error = _import("onnxruntime")
    facts.onnxruntime = str(getattr(ort, "__version__", "?")) if ort is not None else None


def probe_cuda(facts: Facts) -> None:
    """cuda-python, NVRTC and GPU 0 (through the package's own wrappers)."""
    from ..cuda import nvrtc
    from ..cuda.driver import Device, cuda_module
    from ..errors import TrtPoseError

    try:
        module = cuda_module("driver", "cuda")
        facts.cuda_python = f"{_dist_version('cuda-python', 'cuda-bindings')} ({module.__name__})"
    except TrtPoseError as exc:
        facts.cuda_python_error = first_line(exc)
        return
    try:
        facts.nvrtc = nvrtc.nvrtc_version()
        facts.nvrtc_archs = nvrtc.supported_archs()
    except TrtPoseError as exc:
        facts.nvrtc_error = first_line(exc)
    try:
        with Device(0) as device:
            info = device.info
            facts.gpu = {"name": info.name, "major": info.major, "minor": info.minor,
                         "integrated": info.integrated, "memory": info.total_memory,
                         "driver": info.driver_version}
    except TrtPoseError as exc:
        facts.gpu_error = first_line(exc)


def _dist_version(*names: str) -> str:
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "?"


def probe_engines(facts: Facts, cfg: PipelineConfig) -> None:
    """The engine folder: every ``*.engine`` with its sidecar and why it cannot run here (when
    TensorRT and the GPU are known), and whether the pipeline's own two engines exist."""
    from ..engine_meta import mismatch_reasons, read_metadata
    from ..errors import TrtPoseError
    from ..pipelines.plan import engine_dir, engine_path, model_specs

    folder = engine_dir(cfg)
    facts.engine_dir = str(folder)
    facts.precision = cfg.precision or "fp16"
    try:
        specs = model_specs(cfg, int8_qdq=cfg.precision == "int8" and cfg.int8_mode != "calibrator")
        facts.needed_engines = [(str(p), p.is_file()) for p in
                                (engine_path(cfg, s) for s in specs)]
    except TrtPoseError as exc:  # a model name the registry does not know
        facts.needed_engines = [(f"? ({first_line(exc)})", False)]
    paths = sorted(folder.glob("*.engine")) if folder.is_dir() else []
    for path in paths:
        entry: Dict[str, Any] = {"name": path.name, "build_command": "", "reasons": []}
        try:
            meta = read_metadata(path)
        except TrtPoseError as exc:
            entry["reasons"] = [first_line(exc)]
            facts.engines.append(entry)
            continue
        entry["build_command"] = meta.build_command
        if facts.tensorrt and facts.gpu:
            here = f"{facts.gpu['major']}.{facts.gpu['minor']}"
            try:
                entry["reasons"] = mismatch_reasons(meta, facts.tensorrt, here, facts.gpu["name"])
            except Exception as exc:  # an unparsable version in the sidecar
                entry["reasons"] = [f"unreadable sidecar: {first_line(exc)}"]
        else:
            entry["reasons"] = None  # cannot tell here
        facts.engines.append(entry)


def probe_jetson(facts: Facts, root: Path) -> None:
    """L4T release, ``nvpmodel -q``, whether jetson_clocks pinned CPU and GPU clocks."""
    release = _read(root / "etc" / "nv_tegra_release")
    found = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release or "")
    if not found:
        return
    facts.l4t = (int(found.group(1)), f"R{found.group(1)}.{found.group(2)}")
    tool = shutil.which("nvpmodel")
    if tool:
        try:
            out = subprocess.run([tool, "-q"], capture_output=True, text=True, timeout=10)
            mode = re.search(r"NV Power Mode:\s*(\S+)\s*(\d+)?", out.stdout)
            if mode:
                facts.nvpmodel = mode.group(1) + (f" ({mode.group(2)})" if mode.group(2) else "")
            else:
                facts.nvpmodel_error = (out.stderr or out.stdout).strip()[:200] or \
                    f"exit {out.returncode}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            facts.nvpmodel_error = first_line(exc)
    facts.clocks = {"cpu": _cpu_pinned(root), "gpu": _gpu_pinned(root)}


def _freq(path: Path) -> Optional[int]:
    text = _read(path)
    return int(text) if text and text.isdigit() else None


def _cpu_pinned(root: Path) -> Optional[bool]:
    """jetson_clocks sets every online CPU's minimum frequency to its maximum."""
    cpus = sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq"))
    states = [(_freq(c / "scaling_min_freq"), _freq(c / "cpuinfo_max_freq")) for c in cpus]
    states = [(lo, hi) for lo, hi in states if lo is not None and hi is not None]
    return all(lo == hi for lo, hi in states) if states else None


def _gpu_pinned(root: Path) -> Optional[bool]:
    """The GPU's devfreq minimum at its maximum (``/sys/class/devfreq/*ga10b*`` on Orin)."""
    for dev in sorted((root / "sys/class/devfreq").glob("*")):
        if _GPU_DEVFREQ.search(dev.name):
            lo, hi = _freq(dev / "min_freq"), _freq(dev / "max_freq")
            if lo is not None and hi is not None:
                return lo == hi
    return None


def probe_camera(facts: Facts, sources: Sequence[str], root: Path) -> None:
    """A CSI camera configured (``csi://`` source) or present (a ``vi-output`` V4L2 node, the
    Tegra capture path), and the Argus daemon's socket nvarguscamerasrc connects to."""
    facts.csi_configured = any(str(s).startswith("csi://") for s in sources)
    names = [_read(p / "name") or "" for p in sorted((root / "sys/class/video4linux").glob("*"))]
    facts.csi_present = any("vi-output" in n for n in names)
    facts.argus_socket = (root / "tmp" / "argus_socket").exists()
    facts.container = (root / ".dockerenv").exists() or (root / "run/.containerenv").exists()


def gather(cfg: PipelineConfig, sources: Sequence[str], root: Path,
           environ: Mapping[str, str]) -> Facts:
    facts = Facts()
    probe_python(facts)
    probe_modules(facts)
    probe_cuda(facts)
    probe_engines(facts, cfg)
    facts.cuda_module_loading = environ.get("CUDA_MODULE_LOADING")
    probe_jetson(facts, root)
    probe_camera(facts, sources, root)
    return facts
