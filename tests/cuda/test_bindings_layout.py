"""cuda-python's two module layouts (runs without cuda-python: the layouts are stand-ins).

cuda-python >= 12.6 has ``cuda.bindings.driver`` / ``cuda.bindings.nvrtc``; 11.8.0-11.8.2, the
last releases with Python 3.8 wheels (JetPack 5, the ``[trt]`` extra there), have ``cuda.cuda`` /
``cuda.nvrtc``. :func:`trt_pose_td.cuda.driver.cuda_module` must find either.
"""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

import pytest

from trt_pose_td.cuda import driver
from trt_pose_td.errors import DependencyError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("layout", ["bindings", "legacy"])
def test_driver_and_nvrtc_found_in_either_layout(monkeypatch, layout):
    mods = {name: types.ModuleType(name) for name in ("driver", "nvrtc")}
    for name, mod in mods.items():
        if layout == "bindings":
            monkeypatch.setitem(sys.modules, f"cuda.bindings.{name}", mod)
        else:
            monkeypatch.setitem(sys.modules, f"cuda.bindings.{name}", None)  # ImportError
            monkeypatch.setitem(sys.modules, f"cuda.{'cuda' if name == 'driver' else name}", mod)
    assert driver.bindings() is mods["driver"]
    assert driver.cuda_module("nvrtc", "nvrtc") is mods["nvrtc"]


def test_no_cuda_python_names_the_extra(monkeypatch):
    for name in ("cuda.bindings.driver", "cuda.cuda", "cuda.bindings"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(DependencyError, match=r"\[trt\]|trt"):
        driver.bindings()


def _trt_extra():
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "EXTRAS":
            return ast.literal_eval(node.value)["trt"]
    raise AssertionError("setup.py has no EXTRAS dict")


@pytest.mark.parametrize("python, version", [("3.8", "11.8.2"), ("3.9", "11.8.2"),
                                             ("3.10", "12.9.0"), ("3.12", "12.6.0")])
def test_trt_extra_installs_a_cuda_python_with_wheels_for_each_python(python, version):
    """Exactly one cuda-python requirement applies per Python, and it admits a release that has
    wheels there (11.8.3+ are shims over cuda-bindings 11.8, which has no 3.8/3.9 wheels)."""
    from packaging.requirements import Requirement

    env = {"python_version": python, "python_full_version": python + ".0"}
    reqs = [Requirement(r) for r in _trt_extra()]
    applies = [r for r in reqs if r.name == "cuda-python" and r.marker.evaluate(env)]
    assert len(applies) == 1
    assert applies[0].specifier.contains(version)
    if python in ("3.8", "3.9"):
        assert not applies[0].specifier.contains("11.8.7")
        assert not applies[0].specifier.contains("12.6.0")
