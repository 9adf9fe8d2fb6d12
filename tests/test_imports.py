"""The package imports with tensorrt, cuda and onnxruntime blocked; pure modules stay pure."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import trt_pose_td

REPO = Path(__file__).resolve().parents[1]
PURE = ("types", "skeleton", "geometry", "decode", "refine", "models", "oks", "int8_recipes",
        "engines/base", "cuda/twins", "io/newest", "pipelines/base")
HEAVY = ("tensorrt", "cuda", "onnxruntime", "pycocotools", "paho", "gi", "onnx")

BLOCKER = """
import importlib.abc, importlib.machinery, sys, pkgutil
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
import trt_pose_td
names = [m.name for m in pkgutil.walk_packages(trt_pose_td.__path__, 'trt_pose_td.')]
for name in names:
    if name.endswith('__main__'):
        continue
    importlib.import_module(name)
from trt_pose_td.cli import build_parser
build_parser()
print(len(names))
"""


def test_package_imports_with_gpu_and_runtime_libraries_blocked():
    code = BLOCKER.format(blocked=("tensorrt", "cuda", "onnxruntime"))
    proc = subprocess.run([sys.executable, "-c", "import importlib\n" + code], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) >= 15


def test_pure_modules_import_only_numpy_and_cv2():
    root = Path(trt_pose_td.__file__).parent
    for mod in PURE:
        tree = ast.parse((root / f"{mod}.py").read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in HEAVY, f"{mod} imports {name}"


def test_every_module_is_reachable():
    names = [m.name for m in pkgutil.walk_packages(trt_pose_td.__path__, "trt_pose_td.")]
    assert "trt_pose_td.pipelines.cpu" in names and "trt_pose_td.engines.onnxruntime" in names
