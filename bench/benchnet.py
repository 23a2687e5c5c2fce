"""Helpers the benchmarks share: run `ledger`, a free port, restart a devnet node with other HTTP limits,
resident memory and CPU time of a process from /proc."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from devnet.processes import start_node, stop_pid, wait_healthy


def ledger(*args: str, timeout: float = 6 * 3600) -> str:
    """`ledger ARGS...`'s standard output; exits with its output when it fails."""
    proc = subprocess.run([sys.executable, "-m", "ledger.cli", *args], capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"ledger {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout.decode()}\n"
                         f"{proc.stderr.decode(errors='replace')[-3000:]}")
    return proc.stdout.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# `ledger node run` from another tree: its directory goes first on sys.path (before the working
# directory, which may hold this tree), and the editable install's import hook is taken out.
_LAUNCH = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__name__", "").lower()]
sys.path.insert(0, sys.argv[1])
from ledger.cli import main
sys.argv = ["ledger", *sys.argv[2:]]
sys.exit(main())
"""

# The load generators run on this machine, from 127.0.0.1: which limits each benchmark mode uses.
MODES: dict[str, dict[str, Any]] = {
    "off": {"rate_limits": False},  # no rate limits (the guard's other limits stay)
    "exempt": {"exempt": ["127.0.0.1"]},  # rate limits on; the benchmark's client allowed by configuration
    "budget": {"reads_per_s": 1e7, "read_burst": 1e7},  # on, the client charged per request, within budget
    "default": {},  # the defaults: an attacker on 127.0.0.1 is limited
}


def restart_with_limits(node: dict[str, Any], limits: dict[str, Any] | None, log_dir: Path,
                        source: Path | None = None) -> None:
    """Stop the node, set `http.limits` in its config.json (None: no such setting), start it again
    (node["pid"] follows), from the `ledger` package in `source` when given (another version's tree,
    e.g. `git archive` of an earlier commit, to measure it side by side on the same data)."""
    stop_pid(node["pid"])
    config_path = Path(node["home"]) / "config.json"
    config = json.loads(config_path.read_text())
    config["http"] = {k: v for k, v in config["http"].items() if k != "limits"}
    if limits is not None:
        config["http"]["limits"] = limits
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    proc = start_node(node["home"], log_dir) if source is None else _start_from(source, node["home"], log_dir)
    node["pid"] = proc.pid
    wait_healthy(node["http"], proc, log_dir / f"{Path(node['home']).name}.log")


def _start_from(source: Path, home: str, log_dir: Path) -> subprocess.Popen[bytes]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{Path(home).name}.log", "ab")  # noqa: SIM115 - owned by the child process
    return subprocess.Popen([sys.executable, "-c", _LAUNCH, str(source), "node", "run", "--home", home],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
