"""The builder imports TensorRT, CUDA and ONNX Runtime only inside the functions that need them,
so every part of it imports (and its pure parts run) on machines without them."""

import ast
from pathlib import Path

import trt_pose_td.build

HEAVY = {"tensorrt", "cuda", "onnxruntime", "onnx", "pycocotools"}
BUILD = Path(trt_pose_td.build.__file__).parent


def module_level_imports(node: ast.AST):
    """Imports executed at import time: not inside functions nor TYPE_CHECKING blocks."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.dump(child.test):
            yield from (name for n in child.orelse for name in module_level_imports(
                ast.Module(body=[n], type_ignores=[])))
            continue
        if isinstance(child, ast.Import):
            yield from (a.name for a in child.names)
        elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
            yield child.module
        yield from module_level_imports(child)


def test_no_heavy_import_at_module_level():
    files = sorted(BUILD.glob("*.py"))
    assert len(files) >= 9
    for path in files:
        for name in module_level_imports(ast.parse(path.read_text())):
            assert name.split(".")[0] not in HEAVY, f"{path.name} imports {name} at module level"


def test_modules_stay_small():
    for path in sorted(BUILD.glob("*.py")) + [BUILD.parent / "cli" / "build.py"]:
        lines = len(path.read_text().splitlines())
        assert lines < 400, f"{path.name}: {lines} lines"
