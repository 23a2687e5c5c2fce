"""Helpers the benchmarks share: restart a devnet node with other HTTP limits, resident memory and
CPU time of a process from /proc."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from devnet.processes import start_node, stop_pid, wait_healthy

# The load generators run on this machine, from 127.0.0.1: which limits each benchmark mode uses.
MODES: dict[str, dict[str, Any]] = {
    "off": {"rate_limits": False},  # no rate limits (the guard's other limits stay)
    "exempt": {"exempt": ["127.0.0.1"]},  # rate limits on; the benchmark's client allowed by configuration
    "budget": {"reads_per_s": 1e7, "read_burst": 1e7},  # on, the client charged per request, within budget
    "default": {},  # the defaults: an attacker on 127.0.0.1 is limited
}


def restart_with_limits(node: dict[str, Any], limits: dict[str, Any], log_dir: Path) -> None:
    """Stop the node, set `http.limits` in its config.json, start it again (node["pid"] follows)."""
    stop_pid(node["pid"])
    config_path = Path(node["home"]) / "config.json"
    config = json.loads(config_path.read_text())
    config["http"] = {**config["http"], "limits": limits}
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    proc = start_node(node["home"], log_dir)
    node["pid"] = proc.pid
    wait_healthy(node["http"], proc, log_dir / f"{Path(node['home']).name}.log")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
