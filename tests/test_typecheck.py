"""mypy over the package (the TensorRT modules are also checked against each stub set)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_package_typechecks():
    pytest.importorskip("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy", "trt_pose_td"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
