"""The package's structure: no import cycles, no oversized modules.

The import graph is read statically (``ast``) from every ``trt_pose_td`` module, with imports
inside functions and classes counted: a function-level import that only dodges a cycle is still a
cycle. Relative and absolute imports are resolved; ``from pkg import name`` points at the
submodule ``pkg.name`` when there is one, else at ``pkg``. Only imports under
``if TYPE_CHECKING:`` are left out (they never run). The checker itself is tested on a small
package written to a temporary folder, so a broken checker cannot pass the real tree vacuously.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

PACKAGE = Path(__file__).resolve().parents[1] / "trt_pose_td"
MAX_LINES = 400

Edges = Dict[str, Dict[str, int]]  # module -> {imported module: first line number}


def module_files(root: Path) -> Dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the package folder ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.stmt]:
    """Every Import / ImportFrom, at any depth, except those under ``if TYPE_CHECKING:``."""
    stack: List[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[:len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _owner(name: str, modules: Dict[str, Path]) -> str:
    """The longest prefix of ``name`` that is a module of the package ('' when none)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def import_graph(root: Path) -> Edges:
    """The static import graph of the package folder ``root`` (edges inside it only)."""
    modules = module_files(root)
    graph: Edges = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [_owner(a.name, modules) for a in node.names]
            else:
                base = _base(module, is_package, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules
                           else _owner(base, modules) for a in node.names]
            for target in targets:
                if target and target != module:
                    edges[target] = min(edges.get(target, node.lineno), node.lineno)
    return graph


def cycles(graph: Edges) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def describe(component: List[str], graph: Edges, root: Path) -> str:
    """One cycle as text: its modules and every import edge between them, with file:line."""
    files = module_files(root)
    members = set(component)
    lines = [" <-> ".join(component)]
    for src in component:
        for dst, lineno in sorted(graph[src].items()):
            if dst in members:
                rel = files[src].relative_to(root.parent)
                lines.append(f"    {src} -> {dst}  ({rel}:{lineno})")
    return "\n".join(lines)


def long_modules(root: Path, limit: int = MAX_LINES) -> List[Tuple[str, int]]:
    """(file relative to the repository, line count) of every module over ``limit`` lines."""
    out = []
    for path in module_files(root).values():
        count = len(path.read_text().splitlines())
        if count > limit:
            out.append((str(path.relative_to(root.parent)), count))
    return sorted(out)


def test_no_import_cycles():
    graph = import_graph(PACKAGE)
    found = cycles(graph)
    assert not found, (f"{len(found)} import cycle(s) in trt_pose_td (imports inside functions "
                       "counted, TYPE_CHECKING-only imports not):\n"
                       + "\n".join(describe(c, graph, PACKAGE) for c in found))


def test_no_module_over_the_line_limit():
    found = long_modules(PACKAGE)
    assert not found, (f"modules over {MAX_LINES} lines: "
                       + ", ".join(f"{path} ({n})" for path, n in found))


# --- the checker itself, on a package written for the purpose --------------------------------

def _write(root: Path, files: Dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_checker_finds_function_level_and_relative_cycles(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "a.py": "from .sub import b\n",                         # from . import submodule
        "sub/__init__.py": "",
        "sub/b.py": "def f():\n    from .. import a\n",        # inside a function, level 2
        "c.py": "import pkg.d\n",                                # absolute
        "d.py": "from pkg.c import VALUE\n",                     # a name: edge to the module
        "e.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import f\n"),
        "f.py": "from . import e\n",                             # TYPE_CHECKING edge excluded
    })
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b": 1}
    assert graph["pkg.sub.b"] == {"pkg.a": 2}
    assert graph["pkg.e"] == {}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"], ["pkg.c", "pkg.d"]]
    text = describe(["pkg.a", "pkg.sub.b"], graph, pkg)
    assert f"pkg.sub.b -> pkg.a  ({Path('pkg', 'sub', 'b.py')}:2)" in text


def test_checker_counts_lines(tmp_path):
    pkg = _write(tmp_path, {"__init__.py": "", "big.py": "x = 1\n" * 5, "ok.py": "x = 1\n"})
    assert long_modules(pkg, limit=4) == [(str(Path("pkg") / "big.py"), 5)]
