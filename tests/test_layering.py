"""The package's structure: every module in a layer, no import pointing up a layer, no import
cycles, no oversized modules.

The import graph is read statically (``ast``) from every ``trt_pose_td`` module, with imports
inside functions and classes counted: a function-level import that only dodges a cycle is still a
cycle, and one that points up is still upward. Relative and absolute imports are resolved;
``from pkg import name`` points at the submodule ``pkg.name`` when there is one, else at ``pkg``.
Only imports under ``if TYPE_CHECKING:`` are left out (they never run: annotations may name a
type of a higher layer). The checker itself is tested on a small package written to a temporary
folder, so a broken checker cannot pass the real tree vacuously.

:data:`LAYERS` is the layer table docs/architecture.md draws: dependencies point one way, pure
data -> runtime (engines, CUDA, files and cameras) -> pipelines -> tools -> apps.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

PACKAGE = Path(__file__).resolve().parents[1] / "trt_pose_td"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"
MAX_LINES = 400

Edges = Dict[str, Dict[str, int]]  # module -> {imported module: first line number}
#: (layer name, modules and subpackages in it), lowest layer first.
Table = Sequence[Tuple[str, Sequence[str]]]

#: Every module of the package, by layer, lowest first (names relative to ``trt_pose_td``; "" is
#: the package itself). A module may import modules of its own layer and of the layers below,
#: never of a layer above. A subpackage's name assigns all its modules; a longer name overrides
#: it for one module (``io.uri`` is pure, the rest of ``io/`` is not). A new module must be
#: added here, in the lowest layer whose modules it needs, and to docs/architecture.md.
LAYERS: Table = (
    ("data", (  # pure: numpy (cv2 in preprocess), package data and files; no engine, no GPU
        "",  # __version__ and the public names, loaded lazily (PEP 562): no static import
        "errors", "types", "skeleton", "geometry", "oks", "models", "engine_meta", "refine",
        "decode", "preprocess", "config_checks", "config", "progress", "assets", "coco_json",
        "int8_recipes", "io.uri", "tracking")),
    ("runtime", (  # what runs models and moves frames: TensorRT, CUDA, engines, sources, sinks
        "cuda", "engines", "io")),
    ("pipeline", (  # config -> plan -> stages -> CPU / GPU / tracked pipelines; the public face
        "pipelines", "api")),
    ("tools", (  # built on pipelines: measuring, quantizing, building engines, checking a device
        "benchmarks", "quantize", "build", "doctor")),
    ("apps", (  # what a user runs: the command line and the camera service
        "cli", "service", "__main__")),
)


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


def layer_of(module: str, package: str, table: Table) -> Optional[int]:
    """The index in ``table`` of ``module``'s layer (its longest listed name), None if unlisted."""
    rel = module[len(package) + 1:] if module != package else ""
    names = {name: i for i, (_, members) in enumerate(table) for name in members}
    while rel:
        if rel in names:
            return names[rel]
        rel = rel.rpartition(".")[0]
    return names.get("") if module == package else None


def unassigned(root: Path, table: Table) -> List[str]:
    """Modules of the package folder ``root`` in no layer of ``table``, as
    ``module (file)`` lines."""
    package = root.name
    return [f"{m} ({p.relative_to(root.parent)})" for m, p in module_files(root).items()
            if layer_of(m, package, table) is None]


def stale_names(root: Path, table: Table) -> List[str]:
    """Names in ``table`` that are no module or subpackage of ``root`` (a module moved away)."""
    modules = set(module_files(root))
    package = root.name
    return [name for _, members in table for name in members
            if (f"{package}.{name}" if name else package) not in modules]


def upward_imports(graph: Edges, root: Path, table: Table) -> List[str]:
    """Every import that points from a layer to a higher one, as ``file:line: a (layer) imports
    b (higher layer)`` lines (modules in no layer are :func:`unassigned`'s to report)."""
    files = module_files(root)
    package = root.name
    out = []
    for src in sorted(graph):
        low = layer_of(src, package, table)
        for dst, lineno in sorted(graph[src].items()):
            high = layer_of(dst, package, table)
            if low is not None and high is not None and high > low:
                out.append(f"{files[src].relative_to(root.parent)}:{lineno}: {src} "
                           f"({table[low][0]}) imports {dst} ({table[high][0]})")
    return out


def documented_layers(text: str, package: str) -> Dict[str, Set[str]]:
    """The "## The layers" table of an architecture page: layer -> the names in backticks of
    its modules column (``package`` itself stands for the package, "" in :data:`LAYERS`)."""
    section = text.split("\n## The layers", 1)[-1].split("\n## ", 1)[0]
    out: Dict[str, Set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and cells[1] != "modules" and \
                re.fullmatch(r"[a-z]+", cells[0]):
            out[cells[0]] = {"" if n == package else n for n in re.findall(r"`([^`]+)`", cells[1])}
    return out


def long_modules(root: Path, limit: int = MAX_LINES) -> List[Tuple[str, int]]:
    """(file relative to the repository, line count) of every module over ``limit`` lines."""
    out = []
    for path in module_files(root).values():
        count = len(path.read_text().splitlines())
        if count > limit:
            out.append((str(path.relative_to(root.parent)), count))
    return sorted(out)


def test_every_module_is_in_a_layer():
    found = unassigned(PACKAGE, LAYERS)
    assert not found, ("modules in no layer: add each (or its subpackage) to LAYERS in "
                       "tests/test_layering.py, in the lowest layer whose modules it imports, and "
                       "to the ownership table of docs/architecture.md:\n  " + "\n  ".join(found))
    stale = stale_names(PACKAGE, LAYERS)
    assert not stale, f"LAYERS in tests/test_layering.py names what is no module: {stale}"


def test_the_architecture_page_draws_the_same_layers():
    drawn = documented_layers(ARCHITECTURE.read_text(), PACKAGE.name)
    assert drawn == {name: set(members) for name, members in LAYERS}, (
        "docs/architecture.md's layers table and LAYERS in tests/test_layering.py differ: "
        "update the one that is wrong")


def test_no_import_points_up_a_layer():
    found = upward_imports(import_graph(PACKAGE), PACKAGE, LAYERS)
    assert not found, (f"{len(found)} import(s) against the layers "
                       f"({' -> '.join(name for name, _ in LAYERS)}; imports inside functions "
                       "counted, TYPE_CHECKING-only imports not): move the code to the layer it "
                       "needs, or name the type under TYPE_CHECKING\n  " + "\n  ".join(found))


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


def test_checker_finds_upward_imports_with_file_and_line(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "low.py": "import os\n\n\ndef f():\n    from . import high\n",  # up, in a function
        "high.py": "from . import low\n",                                    # down: fine
        "typed.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from .high import X\n"),                          # never runs: fine
        "sub/__init__.py": "",
        "sub/pure.py": "from ..low import f\n",           # overridden to the low layer: fine
        "sub/tool.py": "from ..high import X\n",           # the subpackage's layer: fine
        "sub/leaky.py": "from .tool import Y\n",          # overridden low, imports sub.tool
    })
    table = (("low", ("", "low", "typed", "sub.pure", "sub.leaky")), ("high", ("high", "sub")))
    found = upward_imports(import_graph(pkg), pkg, table)
    assert found == [
        f"{Path('pkg', 'low.py')}:5: pkg.low (low) imports pkg.high (high)",
        f"{Path('pkg', 'sub', 'leaky.py')}:1: pkg.sub.leaky (low) imports pkg.sub.tool (high)",
    ]
    assert layer_of("pkg.sub.pure", "pkg", table) == 0
    assert layer_of("pkg.sub.tool", "pkg", table) == 1
    assert layer_of("pkg", "pkg", table) == 0


def test_checker_names_modules_in_no_layer_and_stale_names(tmp_path):
    pkg = _write(tmp_path, {"__init__.py": "", "known.py": "", "new.py": "",
                            "sub/__init__.py": "", "sub/inner.py": ""})
    table = (("only", ("", "known", "gone", "sub.inner")),)
    assert unassigned(pkg, table) == [f"pkg.new ({Path('pkg', 'new.py')})",
                                      f"pkg.sub ({Path('pkg', 'sub', '__init__.py')})"]
    assert stale_names(pkg, table) == ["gone"]


def test_the_layers_table_is_read_from_its_section_only():
    text = ("# A\n\n| layer | modules | what |\n| --- | --- | --- |\n"
            "## The layers\n\n| layer | modules | what |\n| --- | --- | --- |\n"
            "| high | `cli`, `a.b` | x |\n| low | `pkg`, `io.uri` | `not_a_module` |\n\n"
            "## Next\n\n| other | `x` | y |\n")
    assert documented_layers(text, "pkg") == {"high": {"cli", "a.b"}, "low": {"", "io.uri"}}
