"""Real devnets for process tests, started and stopped through the `ledger` command."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from ledger import devnet


def ledger(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ledger ARGS...`; with `check`, fail the test with its output when it exits non-zero."""
    proc = subprocess.run([sys.executable, "-m", "ledger.cli", *args], capture_output=True, text=True, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"ledger {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def devnet_up(directory: Path, nodes: int, *extra: str) -> dict[str, Any]:
    """`ledger devnet up --detach [EXTRA...]` in `directory`; its devnet.json, plus `dir` (and `extra_pids` for
    restarts)."""
    # A per-process base port keeps parallel runs apart; `devnet up` still skips ports in use.
    port = random.Random(os.getpid() * 16 + nodes).randrange(20000, 40000)
    ledger("devnet", "up", "--nodes", str(nodes), "--dir", str(directory), "--detach", "--base-port", str(port), *extra)
    data: dict[str, Any] = json.loads((directory / "devnet.json").read_text())
    data["dir"] = str(directory)
    data["extra_pids"] = []
    return data


def devnet_down(data: dict[str, Any]) -> None:
    """Stop the devnet's nodes, and any node a test restarted by hand (listed in `extra_pids`)."""
    ledger("devnet", "down", "--dir", data["dir"], check=False)
    for pid in data.get("extra_pids", []):
        devnet.stop_pid(pid)
