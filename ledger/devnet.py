"""A local devnet: keys, genesis, node homes, node processes, and `DIR/devnet.json`.

The devnet is the local form of the production layout: each node has a home with its own key and
config naming its peers by host and port; here all hosts are 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ledger.config import write_config
from ledger.crypto import SigningKey
from ledger.genesis import Genesis, GenesisMember, GenesisValidator, save_genesis

MEMBERS = {
    "admin": ("admin",),
    "org1": ("issuer", "registrar"),
    "org2": ("issuer", "registrar"),
    "org3": ("issuer", "registrar"),
}
DEFAULT_DIR = ".devnet"
DEFAULT_HTTP_PORT = 8700


class DevnetError(RuntimeError):
    pass


@dataclass
class DevnetNode:
    id: str
    http: str
    home: str
    pid: int | None = None


def devnet_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("LEDGER_DEVNET") or DEFAULT_DIR).resolve()


def load_devnet(directory: Path) -> dict[str, Any]:
    path = directory / "devnet.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DevnetError(f"no devnet at {directory} (run `ledger devnet up --dir {directory}` first)") from exc
    return data


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int, start: int) -> list[int]:
    ports: list[int] = []
    port = start
    while len(ports) < count:
        if port > 65000:
            raise DevnetError("no free ports")
        if _port_free(port):
            ports.append(port)
        port += 1
    return ports


def create(
    directory: Path, nodes: int, base_port: int = DEFAULT_HTTP_PORT, batch_size: int = 1000,
    batch_wait_ms: int = 30,
) -> dict[str, Any]:
    """Create keys, genesis and node homes; reuse them if the directory already holds this devnet."""
    existing = directory / "devnet.json"
    if existing.exists():
        data = load_devnet(directory)
        if len(data["nodes"]) != nodes:
            raise DevnetError(f"{directory} holds a {len(data['nodes'])}-node devnet; use another --dir")
        return data
    directory.mkdir(parents=True, exist_ok=True)
    keys_dir = directory / "keys"
    member_keys = {}
    for name in MEMBERS:
        key = SigningKey.generate()
        key.save(keys_dir / f"{name}.pem")
        member_keys[name] = key
    node_keys = [SigningKey.generate() for _ in range(nodes)]
    genesis = Genesis(
        chain_id="devnet",
        timestamp=time.time_ns() // 1_000_000,
        validators=tuple(GenesisValidator(f"node{i}", k.public_key) for i, k in enumerate(node_keys)),
        members=tuple(GenesisMember(n, member_keys[n].public_key, roles) for n, roles in MEMBERS.items()),
        prefixes=(),
    )
    genesis_path = directory / "genesis.json"
    save_genesis(genesis, genesis_path)
    ports = _free_ports(2 * nodes, base_port)
    http_ports, p2p_ports = ports[:nodes], ports[nodes:]
    entries = []
    for i, key in enumerate(node_keys):
        home = directory / "nodes" / f"node{i}"
        key.save(home / "node.pem")
        peers = [
            {"id": k.id, "host": "127.0.0.1", "port": p2p_ports[j]} for j, k in enumerate(node_keys) if j != i
        ]
        write_config(home, {
            "node_key": "node.pem",
            "genesis": os.path.relpath(genesis_path, home),
            "data_dir": "data",
            "http": {"host": "127.0.0.1", "port": http_ports[i]},
            "p2p": {"host": "127.0.0.1", "port": p2p_ports[i]},
            "peers": peers,
            "batch_size": batch_size,
            # The devnet's nodes share this machine's cores: one verifying thread per core in all.
            "verify_threads": max(1, (os.cpu_count() or 1) // nodes),
            "batch_wait_ms": batch_wait_ms,
        })
        entries.append({"id": key.id, "http": f"http://127.0.0.1:{http_ports[i]}", "pid": None, "home": str(home)})
    data = {
        "chain_id": genesis.chain_id,
        "nodes": entries,
        "genesis": str(genesis_path),
        "keys": {name: str(keys_dir / f"{name}.pem") for name in MEMBERS},
        "ethereum": {"rpc": None, "chain_id": None, "anchor_contract": None},
    }
    save_devnet(directory, data)
    return data


def save_devnet(directory: Path, data: dict[str, Any]) -> None:
    tmp = directory / "devnet.json.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(directory / "devnet.json")


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


def start_node(home: str | Path, log_dir: Path) -> subprocess.Popen[bytes]:
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


def up(
    directory: Path, nodes: int, base_port: int = DEFAULT_HTTP_PORT, batch_size: int = 1000,
    batch_wait_ms: int = 30, ethereum: str | None = None, eth_key: str | None = None,
) -> dict[str, Any]:
    """Create (or reuse) the devnet and start every node that is not running; wait until all are healthy.

    `ethereum` (anvil | none | an RPC URL; None keeps the devnet's current choice) selects the chain
    the validators anchor to: see ledger.anchor.devchain.
    """
    data = create(directory, nodes, base_port, batch_size, batch_wait_ms)
    eth = data.get("ethereum") or {}
    if ethereum is None:
        ethereum = "none" if not eth.get("rpc") else "anvil" if eth.get("anvil_pid") else str(eth["rpc"])
    if ethereum != "none" or eth.get("rpc"):
        from ledger.anchor.devchain import DevchainError, setup

        try:
            setup(directory, data, ethereum, eth_key)
        except DevchainError as exc:
            raise DevnetError(str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - RPC or deployment failure, shown to the user
            raise DevnetError(f"setting up Ethereum ({ethereum}) failed: {type(exc).__name__}: {exc}") from exc
        save_devnet(directory, data)
    log_dir = directory / "logs"
    procs = {}
    for entry in data["nodes"]:
        if is_alive(entry.get("pid")):
            continue
        proc = start_node(entry["home"], log_dir)
        entry["pid"] = proc.pid
        procs[entry["id"]] = proc
    save_devnet(directory, data)
    try:
        for entry in data["nodes"]:
            log_path = log_dir / f"{Path(entry['home']).name}.log"
            wait_healthy(entry["http"], procs.get(entry["id"]), log_path)
    except DevnetError:
        down(directory)
        raise
    return data


def stop_pid(pid: int, timeout: float = 15.0) -> None:
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


def down(directory: Path) -> list[str]:
    data = load_devnet(directory)
    stopped = []
    for entry in data["nodes"]:
        pid = entry.get("pid")
        if is_alive(pid):
            stop_pid(pid)
            stopped.append(entry["id"])
        entry["pid"] = None
    if (data.get("ethereum") or {}).get("anvil_pid"):
        from ledger.anchor.devchain import stop as stop_anvil

        if stop_anvil(data):
            stopped.append("anvil")
    save_devnet(directory, data)
    return stopped


def status(directory: Path) -> list[dict[str, Any]]:
    data = load_devnet(directory)
    rows = []
    for i, entry in enumerate(data["nodes"]):
        row: dict[str, Any] = {"node": f"node{i}", "id": entry["id"], "url": entry["http"], "pid": entry.get("pid")}
        try:
            s = httpx.get(f"{entry['http']}/v1/status", timeout=2.0).json()
            row.update(height=s["height"], view=s["view"], primary=s["primary"] == entry["id"], health="ok")
        except (httpx.HTTPError, ValueError, KeyError):
            row.update(height=None, view=None, primary=None,
                       health="down" if not is_alive(entry.get("pid")) else "unreachable")
        rows.append(row)
    return rows
