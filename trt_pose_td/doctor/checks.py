"""Judging the facts (pure): one :class:`~trt_pose_td.doctor.Check` per line, with the fix.

The version rules, with their sources (``../shared/docs/jetson-first-run.md``):

- TensorRT < 8.6 builds its numpy type table with ``np.bool``, removed in numpy 1.24 (TensorRT
  #2557 / #2701): trt_pose_td never calls that helper, other TensorRT tools do -> warn, pin
  numpy < 1.24 (JetPack 5: 1.23.5, ultralytics #23032).
- JetPack's OpenCV and TensorRT bindings are built against numpy 1.x: numpy 2 breaks
  ``import cv2`` (isaac_ros_common #138) -> warn on a Jetson, pin numpy < 2.
- TensorRT's Python bindings come with JetPack for the system Python only (3.8 on JetPack 5,
  3.10 on JetPack 6): a venv needs ``--system-site-packages`` (A2).
- CUDA lazy loading exists from CUDA 11.7 and is the default from 12.2 (A7).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from packaging.version import InvalidVersion, Version

from ..engines.trt_api import MIN_VERSION
from .probes import JETPACK, Facts
from .report import Check

TRT, ORT, BOTH = ("tensorrt",), ("onnxruntime",), ("onnxruntime", "tensorrt")
#: The system Python whose TensorRT bindings each JetPack ships.
JETPACK_PYTHON = {5: "3.8", 6: "3.10"}
_NUMPY_ABI = ("_ARRAY_API", "numpy.core.multiarray failed to import", "compiled using NumPy 1.x")


def _version(text: Optional[str]) -> Optional[Version]:
    try:
        return Version(str(text)) if text else None
    except InvalidVersion:
        return None


def _jetpack(f: Facts) -> Optional[int]:
    return JETPACK.get(f.l4t[0]) if f.l4t else None


def check_python(f: Facts) -> Check:
    where = f"{f.executable}" + (f" (venv, system site-packages: "
                                 f"{'yes' if f.venv_system_site else 'no'})" if f.venv else "")
    want = JETPACK_PYTHON.get(_jetpack(f) or 0)
    if want and not f.python.startswith(want + "."):
        return Check("python", "warn", f"{f.python} {where}: JetPack {_jetpack(f)}'s TensorRT "
                     f"and OpenCV are built for its system Python {want}",
                     f"create the venv from /usr/bin/python{want}: /usr/bin/python{want} -m venv "
                     "--system-site-packages .venv", TRT)
    return Check("python", "ok", f"{f.python} {where}")


def check_numpy(f: Facts) -> Check:
    if f.numpy is None:
        return Check("numpy", "fail", f"not importable ({f.numpy_error})",
                     "pip install 'numpy<2' (JetPack 5: numpy==1.23.5)", BOTH)
    np, trt, jp = _version(f.numpy), _version(f.tensorrt), _jetpack(f)
    detail = f"{f.numpy}"
    if np is None:
        return Check("numpy", "ok", detail)
    if np >= Version("1.24") and ((trt is not None and trt < Version("8.6")) or
                                  (trt is None and jp == 5)):
        who = f"TensorRT {trt}" if trt is not None else "JetPack 5's TensorRT 8.5"
        return Check("numpy", "warn", f"{detail}: {who} accepts numpy < 1.24 only (its numpy "
                     "type helper uses np.bool, removed in 1.24; trt_pose_td avoids it, other "
                     "TensorRT tools such as polygraphy crash)",
                     "pip install 'numpy<1.24' (JetPack 5 pins numpy==1.23.5)")
    if np >= Version("2") and jp is not None:
        return Check("numpy", "warn", f"{detail}: JetPack {jp}'s OpenCV and TensorRT bindings are "
                     "built against numpy 1.x", "pip install 'numpy<2'")
    accepts = " (TensorRT 8.5 accepts it: < 1.24)" if trt is not None and trt < Version("8.6") \
        else ""
    return Check("numpy", "ok", detail + accepts)


def check_tensorrt(f: Facts) -> Check:
    if f.tensorrt is None:
        jp = _jetpack(f)
        if jp is not None:
            want = JETPACK_PYTHON.get(jp, "3")
            why = ("this venv has no system site-packages" if f.venv and not f.venv_system_site
                   else f"this is Python {f.python}")
            fix = (f"JetPack installs TensorRT's Python bindings for the system Python {want} "
                   f"only ({why}): /usr/bin/python{want} -m venv --system-site-packages .venv, "
                   "or run with /usr/bin/python3")
        else:
            fix = ("on x86: NVIDIA's TensorRT container or pip install tensorrt; a Jetson gets "
                   "it with JetPack; or use --backend onnxruntime")
        return Check("tensorrt", "fail", f"not importable ({f.tensorrt_error})", fix, TRT)
    trt = _version(f.tensorrt)
    if trt is None or trt < Version(MIN_VERSION):
        return Check("tensorrt", "fail", f"{f.tensorrt}: trt_pose_td needs TensorRT >= "
                     f"{MIN_VERSION}", "JetPack 5.1 or newer (TensorRT 8.5+)", TRT)
    return Check("tensorrt", "ok", f.tensorrt)


def check_cv2(f: Facts) -> Check:
    if f.cv2 is None:
        if any(s in f.cv2_error for s in _NUMPY_ABI):
            fix = ("this cv2 was built against numpy 1.x (JetPack's python3-opencv): "
                   "pip install 'numpy<2'")
        else:
            fix = ("pip install 'trt-pose-td[cv]' (on a Jetson: JetPack's python3-opencv, which "
                   "has GStreamer for csi://)")
        return Check("cv2", "fail", f"not importable ({f.cv2_error})", fix, BOTH)
    gst = {True: "with GStreamer", False: "without GStreamer (no csi://)",
           None: "GStreamer unknown"}[f.cv2_gstreamer]
    return Check("cv2", "ok", f"{f.cv2}, {gst}")


def check_onnxruntime(f: Facts) -> Check:
    if f.onnxruntime is None:
        return Check("onnxruntime", "fail", f"not importable ({f.onnxruntime_error})",
                     "pip install 'trt-pose-td[ort]' (needed for --backend onnxruntime only)", ORT)
    return Check("onnxruntime", "ok", f.onnxruntime)


def check_cuda_python(f: Facts) -> Check:
    if f.cuda_python is None:
        error = f.cuda_python_error.split("; install")[0]
        return Check("cuda-python", "fail", f"not importable ({error})",
                     "pip install 'trt-pose-td[trt]'", TRT)
    return Check("cuda-python", "ok", f.cuda_python)


def check_nvrtc(f: Facts) -> Check:
    if f.cuda_python is None:
        return Check("nvrtc", "fail", "needs cuda-python", "pip install 'trt-pose-td[trt]'", TRT)
    if f.nvrtc is None:
        return Check("nvrtc", "fail", f.nvrtc_error, "", TRT)
    archs = f.nvrtc_archs
    detail = f"{f.nvrtc[0]}.{f.nvrtc[1]}, compute {archs[0]}..{archs[-1]}" if archs else \
        f"{f.nvrtc[0]}.{f.nvrtc[1]}"
    if f.gpu and archs:
        from ..cuda.nvrtc import target_for
        from ..errors import ConfigError

        try:
            target = target_for(f.gpu["major"], f.gpu["minor"], archs)
        except ConfigError as exc:
            return Check("nvrtc", "fail", f"{detail}: {exc}", "use the CUDA toolkit's NVRTC "
                         "matching this GPU", TRT)
        kind = "cubin" if target.startswith("sm_") else "PTX, JIT-compiled by the driver"
        detail += f"; this GPU: {target} ({kind})"
        driver = _cuda_version(f)
        if target.startswith("compute_") and driver is not None and f.nvrtc > driver:
            return Check("nvrtc", "fail", f"{detail}: a CUDA {driver[0]}.{driver[1]} driver "
                         f"cannot JIT-compile PTX from NVRTC {f.nvrtc[0]}.{f.nvrtc[1]}",
                         "use the NVRTC of the device's CUDA (JetPack's) or a newer driver", TRT)
    return Check("nvrtc", "ok", detail)


def check_gpu(f: Facts) -> Check:
    if f.gpu is None:
        reason = f.gpu_error or "needs cuda-python"
        fix = ("pip install 'trt-pose-td[trt]'" if f.cuda_python is None else
               "the container needs the NVIDIA runtime: docker run --runtime nvidia (Jetson)"
               if f.container else "--backend onnxruntime on a machine without an NVIDIA GPU")
        return Check("gpu", "fail", reason, fix, TRT)
    g = f.gpu
    driver = f"CUDA {g['driver'] // 1000}.{g['driver'] % 1000 // 10}"
    kind = "integrated" if g["integrated"] else "discrete"
    return Check("gpu", "ok", f"{g['name']} (sm_{g['major']}{g['minor']}, {kind}, "
                              f"{g['memory'] / 2**30:.1f} GiB, driver {driver})")


def check_engines(f: Facts) -> Check:
    missing = [p for p, ok in f.needed_engines if not ok]
    names = [e["name"] for e in f.engines]
    where = f"{f.engine_dir}: {len(names)} engine(s)"
    build = f"trt-pose-td build --precision {f.precision}"
    if f.tensorrt is None or f.gpu is None:
        status = "skip" if not missing else "fail"
        return Check("engines", status, f"{where}; cannot check them without TensorRT and a GPU"
                     + (f"; missing {', '.join(missing)}" if missing else ""),
                     f"build them on this device: {build}" if missing else "", TRT)
    stale = [e for e in f.engines if e["reasons"]]
    needed = {p.rsplit("/", 1)[-1] for p, _ in f.needed_engines}
    blocking = [e for e in stale if e["name"] in needed]
    here = f"TensorRT {f.tensorrt} + {f.gpu['name']} (sm_{f.gpu['major']}{f.gpu['minor']})"
    detail = f"{where}, {len(names) - len(stale)} match {here}"
    if stale:
        detail += "; " + "; ".join(f"{e['name']}: {e['reasons'][0]}" for e in stale[:2])
    if missing or blocking:
        fix = blocking[0]["build_command"] if blocking and blocking[0]["build_command"] else build
        what = f"missing {', '.join(missing)}" if missing else "the pipeline's engines do not match"
        return Check("engines", "fail", f"{detail}; {what}", f"rebuild on this device: {fix}",
                     TRT)
    return Check("engines", "warn" if stale else "ok", detail,
                 "delete or rebuild the engines that do not match" if stale else "")


def _cuda_version(f: Facts) -> Optional[Tuple[int, int]]:
    return (f.gpu["driver"] // 1000, f.gpu["driver"] % 1000 // 10) if f.gpu else None


def check_lazy_loading(f: Facts) -> Check:
    value, cuda = f.cuda_module_loading, _cuda_version(f)
    shown = f"CUDA_MODULE_LOADING={value}" if value else "CUDA_MODULE_LOADING unset"
    if cuda is None:
        return Check("lazy-loading", "skip", f"{shown} (no GPU here)")
    if cuda < (11, 7):
        return Check("lazy-loading", "ok", f"{shown}; CUDA {cuda[0]}.{cuda[1]} has no lazy "
                                           "loading (needs 11.7)")
    if (value or "").upper() == "LAZY" or (not value and cuda >= (12, 2)):
        return Check("lazy-loading", "ok", shown + ("" if value else " (LAZY by default from "
                                                                     "CUDA 12.2)"))
    return Check("lazy-loading", "warn", f"{shown} on CUDA {cuda[0]}.{cuda[1]}: every CUDA "
                 "kernel is loaded at start (hundreds of MB of device memory, shared with the "
                 "CPU on a Jetson)", "export CUDA_MODULE_LOADING=LAZY before starting (the "
                 "systemd unit sets it)")


def check_jetson(f: Facts) -> Check:
    if f.l4t is None:
        return Check("jetson", "skip", "not a Jetson (no /etc/nv_tegra_release)")
    jp = _jetpack(f)
    parts = [f"L4T {f.l4t[1]}" + (f" (JetPack {jp})" if jp else "")]
    parts.append(f"power mode {f.nvpmodel}" if f.nvpmodel else
                 f"power mode unknown ({f.nvpmodel_error or 'no nvpmodel'})")
    pinned = [f.clocks.get("cpu"), f.clocks.get("gpu")]
    clocks = "pinned (jetson_clocks)" if all(pinned) else \
        "unknown" if all(p is None for p in pinned) else "dynamic"
    parts.append(f"clocks {clocks}")
    fixes = []
    if f.nvpmodel and "MAXN" not in f.nvpmodel.upper():
        fixes.append("the fastest power mode: sudo nvpmodel -m 0 (MAXN on most modules)")
    if clocks == "dynamic":
        fixes.append("steady clocks for benchmarks: sudo jetson_clocks")
    if jp is not None and jp < 5:
        return Check("jetson", "fail", ", ".join(parts) + ": JetPack 4 has TensorRT < 8.5",
                     "JetPack 5.1 or newer", TRT)
    return Check("jetson", "warn" if fixes else "ok", ", ".join(parts), "; ".join(fixes))


def check_argus(f: Facts) -> Check:
    """A6: nvarguscamerasrc talks to nvargus-daemon through /tmp/argus_socket (mounted into a
    container), and csi:// needs a cv2 with GStreamer."""
    if not (f.csi_configured or f.csi_present):
        return Check("argus", "skip", "no CSI camera configured or found")
    why = "a csi:// source is configured" if f.csi_configured else "a CSI sensor is present"
    problems, fixes = [], []
    if not f.argus_socket:
        problems.append("/tmp/argus_socket missing: nvarguscamerasrc cannot reach nvargus-daemon")
        fixes.append("mount it: docker run -v /tmp/argus_socket:/tmp/argus_socket ..."
                     if f.container else "start the camera daemon: sudo systemctl restart "
                                         "nvargus-daemon")
    if f.csi_configured and f.cv2_gstreamer is False:
        from ..io.capture import GSTREAMER_FIX

        problems.append("this cv2 has no GStreamer")
        fixes.append(GSTREAMER_FIX.split(": ", 1)[-1])
    if not problems:
        return Check("argus", "ok", f"/tmp/argus_socket present ({why})")
    return Check("argus", "fail" if f.csi_configured else "warn",
                 f"{'; '.join(problems)} ({why})", "; ".join(fixes),
                 BOTH if f.csi_configured else ())


def judge(f: Facts) -> List[Check]:
    """Every check, in the order they print."""
    return [check_python(f), check_numpy(f), check_tensorrt(f), check_cv2(f),
            check_onnxruntime(f), check_cuda_python(f), check_nvrtc(f), check_gpu(f),
            check_engines(f), check_lazy_loading(f), check_jetson(f), check_argus(f)]
