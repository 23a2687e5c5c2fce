"""Child processes of a devnet (nodes and Anvil): start, wait for, and stop them by pid, and free ports."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devnet.record import DevnetError


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, start: int) -> list[int]:
    """The first `count` free ports from `start` up."""
    ports: list[int] = []
    port = start
    while len(ports) < count:
        if port > 65000:
            raise DevnetError("no free ports")
        if port_free(port):
            ports.append(port)
        port += 1
    return ports


# Ports below the kernel's ephemeral range: a port found free there cannot be taken, before the node that is
# to listen on it starts, by the source port of some outgoing connection (a peer dialling, an HTTP client).
_LOWEST_PICKED = 15000
_SPARE_ABOVE = 200  # room for the consecutive ports of a devnet started from the picked one


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def any_free_port() -> int:
    """A free port chosen at random below the ephemeral range, with room above it for a devnet's ports."""
    highest = max(_LOWEST_PICKED + 1, _ephemeral_low() - _SPARE_ABOVE)
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(_LOWEST_PICKED, highest)
        if port_free(port):
            return port
    raise DevnetError("no free port below the ephemeral range")


def is_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by us) is not alive.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM, wait for the exit, SIGKILL after `timeout` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:  # not our child: poll for its exit instead
            if not is_alive(pid):
                return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start_node(home: str | Path, log_dir: Path) -> subprocess.Popen[bytes]:
    """`ledger node run --home HOME` in its own session (it outlives this process), logging to LOG_DIR."""
    log_dir.mkdir(parents=True, exist_ok=True)
    name = Path(home).name
    log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child process
    return subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", "node", "run", "--home", str(home)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )


def wait_healthy(url: str, proc: subprocess.Popen[bytes] | None, log_path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise DevnetError(f"node at {url} exited with code {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise DevnetError(f"node at {url} not healthy after {timeout:.0f}s (see {log_path})")
