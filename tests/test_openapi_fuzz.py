"""schemathesis, driven by the node's own OpenAPI document, against a real node process (default
limits): no server error, no answer the document does not describe, and (except where acceptance
rests on rules a schema cannot state, listed in tests/data/schemathesis.toml) every request the
document allows is accepted. A fixed seed and a small budget keep it under a minute."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devnet.processes import stop_pid
from tests.httpattack import start_attacked_node

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).parent / "data" / "schemathesis.toml"


def test_schemathesis_finds_no_server_error_and_no_answer_against_the_schema(tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is a dev dependency (pyproject.toml)"
    node = start_attacked_node(tmp_path, {})
    try:
        run = subprocess.run([st, "--config-file", str(CONFIG), "--no-color", "run", f"{node.url}/openapi.json"],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
    finally:
        stop_pid(node.pid)
    report = run.stdout[-6000:]
    assert run.returncode == 0, report
    assert "generated" in report and "failure" not in report.rsplit("Test cases:", 1)[-1], report
