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


def _imported_modules(path: Path, package: str):
    """Every module ``path`` imports, at any level (functions included), as absolute names."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.module or ""
                continue
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            yield ".".join(base + ([node.module] if node.module else []))
            if not node.module:  # from . import cli
                yield from (".".join(base + [a.name]) for a in node.names)


def test_no_library_module_imports_the_cli():
    """Dependencies point one way: the command line uses the library, never the reverse
    (``build_engines.py`` and ``python -m trt_pose_td`` import the CLI themselves)."""
    root = BUILD.parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        if rel.parts[1] == "cli" or rel.name == "__main__.py":
            continue
        package = ".".join(rel.with_suffix("").parts[:-1]) if rel.name != "__init__.py" \
            else ".".join(rel.parent.parts)
        if any(m == "trt_pose_td.cli" or m.startswith("trt_pose_td.cli.")
               for m in _imported_modules(path, package)):
            offenders.append(str(rel))
    assert not offenders, f"library modules importing trt_pose_td.cli: {offenders}"
