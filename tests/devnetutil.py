"""Real devnets for process tests, started and stopped through the `ledger` command."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from devnet.processes import any_free_port, stop_pid


def ledger(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ledger ARGS...`; with `check`, fail the test with its output when it exits non-zero."""
    proc = subprocess.run([sys.executable, "-m", "ledger.cli", *args], capture_output=True, text=True, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"ledger {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def devnet_up(directory: Path, nodes: int, *extra: str) -> dict[str, Any]:
    """`ledger devnet up --nodes NODES --detach [EXTRA...]` in `directory`, without Ethereum unless EXTRA says
    `--ethereum`; its devnet.json, plus `dir` (and `extra_pids` for restarts)."""
    # A random base below the ephemeral range; `devnet up` still skips ports in use.
    port = any_free_port()
    # `--ethereum none` first: the definition's Anvil is for tests that ask for it (a later --ethereum wins).
    ledger("devnet", "up", "--nodes", str(nodes), "--dir", str(directory), "--detach", "--base-port", str(port),
           "--ethereum", "none", *extra)
    data: dict[str, Any] = json.loads((directory / "devnet.json").read_text())
    data["dir"] = str(directory)
    data["extra_pids"] = []
    return data


def devnet_down(data: dict[str, Any]) -> None:
    """Stop the devnet's nodes, and any node a test restarted by hand (listed in `extra_pids`)."""
    ledger("devnet", "down", "--dir", data["dir"], check=False)
    for pid in data.get("extra_pids", []):
        stop_pid(pid)


def wait_until(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.2,
               explain: Callable[[], str] | None = None) -> Any:
    """Poll `cond` until it returns something truthy (returned); an HTTP error counts as not yet (a node
    restarting or busy). Fails the test with `what` after `timeout` seconds, and with what `explain` then
    says (the state the nodes were in), when given."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            value = cond()
            if value:
                return value
        if time.monotonic() > deadline:
            said = ""
            if explain is not None:
                try:
                    said = "\n" + explain()
                except Exception as exc:  # noqa: BLE001 - the explanation must not hide the timeout
                    said = f"\n(could not explain: {exc!r})"
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{said}")
        time.sleep(interval)
