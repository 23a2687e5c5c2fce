"""The import structure of `ledger/`: no circles anywhere, and a consensus package that stays sans-I/O.

Every import counts, wherever it stands (module level, inside a function, under TYPE_CHECKING): a
late import only hides a circle. Importing `a.b.c` also runs the packages `a` and `a.b`, so a
module depends on those package `__init__`s too, unless it lives inside them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import ledger

ROOT = Path(ledger.__file__).parent
CONSENSUS_FORBIDDEN = {"asyncio", "plyvel", "time", "web3", "threading", "random", "os", "socket"}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_names(path: Path, name: str) -> set[str]:
    """Absolute names of every module `path` (module `name`) imports, submodule candidates included."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            names.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of this package it depends on."""
    files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        for target in _imported_names(path, name):
            if target not in files:
                continue
            deps.add(target)
            parts = target.split(".")
            for i in range(1, len(parts)):
                ancestor = ".".join(parts[:i])
                if ancestor in files and not (name == ancestor or name.startswith(ancestor + ".")):
                    deps.add(ancestor)
        deps.discard(name)
        graph[name] = deps
    return graph


def find_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def _external_imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_no_import_circle_in_ledger() -> None:
    graph = import_graph(ROOT)
    assert len(graph) > 50  # the walk found the package
    assert find_circles(graph) == []


def test_consensus_imports_no_io() -> None:
    package = ROOT / "consensus"
    assert {"replica.py", "messages.py", "ordering.py", "viewchange.py", "quorum.py", "actions.py"} <= {
        p.name for p in package.glob("*.py")
    }
    offenders = [
        f"{path.name}: {name}"
        for path in sorted(package.rglob("*.py"))
        for name in _external_imports(path)
        if name.split(".")[0] in CONSENSUS_FORBIDDEN
    ]
    assert not offenders, offenders


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_circle_finder_sees_late_relative_and_type_checking_imports(tmp_path: Path) -> None:
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "a.py": "from pkg import b\n",
        "b.py": "def f():\n    from . import c\n",
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import X\n",
        "d.py": "import pkg.a\n",
    })
    assert find_circles(import_graph(pkg)) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_circle_finder_counts_package_inits_from_outside_only(tmp_path: Path) -> None:
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "sub/__init__.py": "from pkg.sub.inner import X\n",
        "sub/inner.py": "from pkg.sub import helper\nfrom pkg import user\n",
        "sub/helper.py": "",
        "user.py": "from pkg.sub.helper import Y\n",  # runs pkg/sub/__init__, which imports inner -> user
    })
    assert find_circles(import_graph(pkg)) == [["pkg.sub", "pkg.sub.inner", "pkg.user"]]


def test_io_check_names_forbidden_modules(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os.path\nfrom time import monotonic\nimport asyncio as aio\nfrom . import sibling\n")
    assert {n.split(".")[0] for n in _external_imports(bad)} == {"os", "time", "asyncio"}
