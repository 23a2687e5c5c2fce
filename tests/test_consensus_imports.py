"""The consensus package stays sans-I/O: no event loop, disk, clock, randomness, OS or network."""

from __future__ import annotations

import ast
from pathlib import Path

import ledger.consensus

FORBIDDEN = {"asyncio", "plyvel", "time", "web3", "threading", "random", "os", "socket"}
PACKAGE = Path(ledger.consensus.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            names.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return names


def test_consensus_modules_found() -> None:
    files = {p.name for p in PACKAGE.glob("*.py")}
    assert {"replica.py", "messages.py", "viewchange.py", "quorum.py", "actions.py"} <= files


def test_no_io_imports_under_consensus() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in _imported_modules(path):
            if name.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.name}: {name}")
    assert not offenders, offenders


def test_checker_catches_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os.path\nfrom time import monotonic\nimport asyncio as aio\n")
    assert {n.split(".")[0] for n in _imported_modules(bad)} == {"os", "time", "asyncio"}
