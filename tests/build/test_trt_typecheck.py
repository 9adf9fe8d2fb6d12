"""Every module of trt_pose_td that imports TensorRT type-checks against the real Python API of
TensorRT 8.5 (JetPack 5), 10.3 (JetPack 6) and 10.16 (JetPack 7): the stubs NVIDIA's bindings
generate, read from the data mirror (``$TRT_POSE_TD_MIRROR/stubs``, else ``../shared/stubs``).

Version-specific code sits under ``if TRT10_API:`` (see trt_pose_td/engines/trt_api.py): mypy
treats that name as always true for the 10.x stubs and always false for 8.5, so each branch is
checked against the versions that run it. A probe file with known mistakes runs in the same mypy
call and must fail exactly as expected, which proves the stubs were really used.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "trt_pose_td"
#: stub folder -> whether the TensorRT 10 API branch (TRT10_API) is taken there
STUB_SETS = {"tensorrt-8.5": False, "tensorrt-10.3": True, "tensorrt-10.16": True}
IMPORTS_TENSORRT = re.compile(r"^\s*(import tensorrt\b|from tensorrt\b)", re.M)
IMPORTS_TRT_API = re.compile(r"^\s*from (\.+|trt_pose_td\.)(engines\.)?trt_api import", re.M)

CONFIG = """\
[mypy]
python_version = 3.10
check_untyped_defs = True
ignore_missing_imports = True
warn_unused_ignores = False
[mypy-tensorrt.*]
ignore_errors = True
ignore_missing_imports = False
[mypy-tensorrt_bindings.*]
ignore_errors = True
ignore_missing_imports = False
"""

# Mistakes mypy must report with every stub set, plus one only the 8.5 API lacks. Lines 15-16:
# what our accessors return is typed (an untyped ``Any`` would let any call through unchecked).
PROBE = """\
from typing import Any


def probe(api10: bool, meta: Any, features: Any) -> None:
    import tensorrt as trt

    from trt_pose_td.engines.trt_api import make_runtime

    trt.BuilderFlag.NOT_A_FLAG  # line 9: always wrong
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    builder.create_builder_config().set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, "1")
    trt.BuilderFlag.VERSION_COMPATIBLE  # line 12: not in TensorRT 8.5
    runtime = make_runtime(meta, features)
    engine = runtime.deserialize_cuda_engine(b"plan")
    runtime.not_a_method()  # line 15: make_runtime returns a typed trt.Runtime
    engine.get_profile_shape(0, "image")  # line 16: the binding API, gone from TensorRT 10
    TRT10_API = api10
    if TRT10_API:
        trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED  # 10.x branch: fine
    else:
        trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH
"""
#: The probe lines mypy must report: always, and only against the 8.5 stubs / only against 10.x.
PROBE_ALWAYS, PROBE_ONLY_85, PROBE_ONLY_10 = [9, 11, 15], [12], [16]


def stubs_root() -> Optional[Path]:
    """The mirror's stubs folder holding every stub set, or None."""
    candidates = []
    mirror = os.environ.get("TRT_POSE_TD_MIRROR", "")
    if mirror and "://" not in mirror:
        candidates.append(Path(mirror).expanduser() / "stubs")
    candidates.append(REPO.parent / "shared" / "stubs")
    for root in candidates:
        if all((root / name / "tensorrt").is_dir() for name in STUB_SETS):
            return root
    return None


def tensorrt_modules() -> List[Path]:
    """Every package module that touches TensorRT: an ``import tensorrt`` (at any level, incl.
    TYPE_CHECKING), an import of :mod:`trt_pose_td.engines.trt_api` (which hands out TensorRT
    objects),
    or a place in ``engines/`` or ``build/``."""
    def touches(path: Path) -> bool:
        rel = path.relative_to(PACKAGE).as_posix()
        return rel.startswith(("engines/", "build/")) or bool(
            IMPORTS_TENSORRT.search(path.read_text()) or IMPORTS_TRT_API.search(path.read_text()))
    return sorted(p for p in PACKAGE.rglob("*.py") if touches(p))


def test_tensorrt_modules_are_discovered():
    names = {p.relative_to(PACKAGE).as_posix() for p in tensorrt_modules()}
    assert {"build/builder.py", "build/calibrator.py", "build/inspect.py", "build/env.py",
            "build/run.py", "build/jobs.py", "engines/trt_api.py", "engines/tensorrt.py",
            "engines/trt_profiles.py", "pipelines/gpu.py", "pipelines/plan.py"} <= names


@pytest.mark.parametrize("stub_set", sorted(STUB_SETS))
def test_tensorrt_modules_typecheck_against_the_stubs(stub_set, tmp_path):
    pytest.importorskip("mypy")
    root = stubs_root()
    if root is None:
        pytest.skip("no TensorRT stubs: set TRT_POSE_TD_MIRROR to a folder holding "
                    "stubs/tensorrt-8.5, stubs/tensorrt-10.3 and stubs/tensorrt-10.16")
    (tmp_path / "mypy.ini").write_text(CONFIG)
    probe = tmp_path / "trt_probe.py"
    probe.write_text(PROBE)
    api10 = STUB_SETS[stub_set]
    files = [str(p.relative_to(REPO)) for p in tensorrt_modules()] + [str(probe)]
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini"),
           "--cache-dir", str(REPO / ".mypy_cache" / f"stubs-{stub_set}"),
           "--always-true" if api10 else "--always-false", "TRT10_API", *files]
    env = dict(os.environ, MYPYPATH=str(root / stub_set))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    ours = [line for line in errors if "trt_probe.py" not in line]
    assert not ours, f"{stub_set}:\n" + "\n".join(ours)
    probe_lines = sorted(int(line.split(":")[1]) for line in errors if "trt_probe.py" in line)
    assert probe_lines == sorted(PROBE_ALWAYS + (PROBE_ONLY_10 if api10 else PROBE_ONLY_85)), \
        proc.stdout
