"""A local devnet from its definition: keys, genesis, node homes, node processes, and `DIR/devnet.json`.

The devnet is the local form of the production layout: each node has a home with its own key and
config naming its peers by host and port; here all hosts are 127.0.0.1. A directory that already
holds a devnet is restarted as it was created (its members, node count and ports); only the
Ethereum side follows the definition (or `--ethereum`) again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

from devnet.definition import Definition, load_definition
from devnet.ethereum import setup as setup_ethereum
from devnet.ethereum import stop_anvil
from devnet.processes import free_ports, is_alive, start_node, stop_pid, wait_healthy
from devnet.record import DevnetError, exists, load_devnet, save_devnet
from devnet.relays import DelayedLinks
from ledger.config import write_config
from ledger.crypto import SigningKey
from ledger.genesis import Genesis, GenesisMember, GenesisValidator, save_genesis
from ledger.governance import GovernanceSettings
from ledger.private.records import NodeOrg


def node_orgs(definition: Definition, node_keys: list[SigningKey]) -> tuple[NodeOrg, ...]:
    """Each node's organisation, for private data: node<i> belongs to the member org<i> when there is one, node0
    to the first admin (the consortium's operator); other nodes to none."""
    names = {name for name, _ in definition.genesis_members()}
    orgs = []
    for i, key in enumerate(node_keys):
        org = definition.first_admin() if i == 0 else f"org{i}"
        if org in names:
            orgs.append(NodeOrg(key.id, org))
    return tuple(orgs)


def create(directory: Path, definition: Definition) -> dict[str, Any]:
    """Create keys, genesis and node homes as `definition` says; reuse them if the directory already holds
    a devnet with as many nodes."""
    if exists(directory):
        data = load_devnet(directory)
        if len(data["nodes"]) != definition.nodes:
            raise DevnetError(f"{directory} holds a {len(data['nodes'])}-node devnet; use another --dir")
        return data
    directory.mkdir(parents=True, exist_ok=True)
    keys_dir = directory / "keys"
    member_keys = {}
    members = definition.genesis_members()
    for name, _ in members:
        key = SigningKey.generate()
        key.save(keys_dir / f"{name}.pem")
        member_keys[name] = key
    nodes = definition.nodes
    node_keys = [SigningKey.generate() for _ in range(nodes)]
    genesis = Genesis(
        chain_id=definition.chain_id,
        timestamp=time.time_ns() // 1_000_000,
        validators=tuple(GenesisValidator(f"node{i}", k.public_key) for i, k in enumerate(node_keys)),
        members=tuple(GenesisMember(n, member_keys[n].public_key, roles) for n, roles in members),
        prefixes=(),
        governance=GovernanceSettings(definition.governance.approvals, definition.governance.expiry_ms),
        node_orgs=node_orgs(definition, node_keys),
    )
    genesis_path = directory / "genesis.json"
    save_genesis(genesis, genesis_path)
    ports = free_ports(2 * nodes, definition.http_base_port)
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
            "batch_size": definition.batch_size,
            # The devnet's nodes share this machine's cores: one verifying thread per core in all.
            "verify_threads": max(1, (os.cpu_count() or 1) // nodes),
            "batch_wait_ms": definition.batch_wait_ms,
        })
        entries.append({"id": key.id, "http": f"http://127.0.0.1:{http_ports[i]}", "pid": None, "home": str(home)})
    data = {
        "chain_id": genesis.chain_id,
        "nodes": entries,
        "genesis": str(genesis_path),
        "keys": {**{name: str(keys_dir / f"{name}.pem") for name, _ in members},
                 **{alias: str(keys_dir / f"{name}.pem") for alias, name in definition.key_aliases().items()}},
        "ethereum": {"rpc": None, "chain_id": None, "anchor_contract": None},
    }
    save_devnet(directory, data)
    return data


def add_observers(directory: Path, data: dict[str, Any], count: int) -> None:
    """Give the devnet `count` observers in all (homes, keys, configs; listed under `observers`): each follows
    every validator's HTTP (`ledger/observer.py`). Existing observers are kept; none is removed."""
    observers = data.setdefault("observers", [])
    missing = count - len(observers)
    if missing <= 0:
        return
    genesis_path = Path(data["genesis"])
    taken = [int(e["http"].rsplit(":", 1)[1]) for e in data["nodes"] + observers]
    taken += [json.loads((Path(e["home"]) / "config.json").read_text())["p2p"]["port"] for e in data["nodes"]]
    ports = free_ports(missing, max(taken) + 1)
    for port in ports:
        index = len(observers)
        home = directory / "observers" / f"obs{index}"
        key = SigningKey.generate()  # its own: an observer has no key in any validator set
        key.save(home / "node.pem")
        write_config(home, {
            "node_key": "node.pem",
            "genesis": os.path.relpath(genesis_path, home),
            "data_dir": "data",
            "http": {"host": "127.0.0.1", "port": port},
            "role": "observer",
            "observer": {"validators": [e["http"] for e in data["nodes"]]},
            "verify_threads": 1,
        })
        observers.append({"id": key.id, "http": f"http://127.0.0.1:{port}", "pid": None, "home": str(home)})
    save_devnet(directory, data)


def current_chain(data: dict[str, Any]) -> str:
    """The Ethereum choice an existing devnet was last started with: anvil, none or its RPC URL."""
    eth = data.get("ethereum") or {}
    return "none" if not eth.get("rpc") else "anvil" if eth.get("anvil_pid") else str(eth["rpc"])


def up(
    directory: Path, nodes: int | None = None, *, definition: Definition | None = None,
    base_port: int | None = None, batch_size: int | None = None, batch_wait_ms: int | None = None,
    ethereum: str | None = None, eth_key: str | None = None, observers: int | None = None,
    link_delay_ms: float | None = None,
) -> dict[str, Any]:
    """Create (or reuse) the devnet and start every node that is not running; wait until all are healthy.

    `definition` defaults to `devnet/devnet.toml`; the other arguments, when given, override it. Without
    `nodes` an existing devnet keeps its node count; without `ethereum` (anvil | none | an RPC URL)
    it keeps its current chain, and a new one takes the definition's. `observers` adds observers up to
    that many (an existing devnet keeps those it has); they start once the validators are healthy.
    `link_delay_ms` sends every peer link between the validators through relays that delay it (see
    `devnet.relays.DelayedLinks`); a devnet wired so keeps its relays, and a new value changes the delay.
    """
    definition = definition or load_definition()
    earlier = load_devnet(directory) if exists(directory) else None
    if nodes is None and earlier is not None:
        nodes = len(earlier["nodes"])
    data = create(directory, definition.with_overrides(nodes, base_port, batch_size, batch_wait_ms))
    if ethereum is None:
        ethereum = current_chain(earlier) if earlier is not None else definition.anchoring.chain
    if ethereum != "none" or (data.get("ethereum") or {}).get("rpc"):
        try:
            setup_ethereum(directory, data, ethereum, definition.anchoring, eth_key)
        except DevnetError:
            raise
        except Exception as exc:  # noqa: BLE001 - RPC or deployment failure, shown to the user
            raise DevnetError(f"setting up Ethereum ({ethereum}) failed: {type(exc).__name__}: {exc}") from exc
        save_devnet(directory, data)
    log_dir = directory / "logs"
    _delay_links(directory, data, link_delay_ms, log_dir)
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
        add_observers(directory, data, observers or 0)
        started = {}
        for entry in data.get("observers", []):
            if not is_alive(entry.get("pid")):
                proc = start_node(entry["home"], log_dir)
                entry["pid"] = proc.pid
                started[entry["id"]] = proc
        save_devnet(directory, data)
        for entry in data.get("observers", []):
            wait_healthy(entry["http"], started.get(entry["id"]), log_dir / f"{Path(entry['home']).name}.log")
    except DevnetError:
        down(directory)
        raise
    return data


def _delay_links(directory: Path, data: dict[str, Any], delay_ms: float | None, log_dir: Path) -> None:
    links = DelayedLinks(directory, data)
    if delay_ms is not None and delay_ms < 0:
        raise DevnetError("the link delay must be 0 ms or more")
    if not links.wired:
        if not delay_ms:
            return
        if any(is_alive(e.get("pid")) for e in data["nodes"]):
            raise DevnetError("the devnet's validators run with direct peer links: `ledger devnet down` first, "
                              "then `ledger devnet up --link-delay-ms` routes them through relays")
        taken = [int(e["http"].rsplit(":", 1)[1]) for e in data["nodes"] + data.get("observers", [])]
        taken += [json.loads((Path(e["home"]) / "config.json").read_text())["p2p"]["port"] for e in data["nodes"]]
        links.wire(delay_ms, max(taken) + 1)
    elif delay_ms is not None:
        links.set_delay(delay_ms)
    links.start(log_dir)
    save_devnet(directory, data)


def down(directory: Path) -> list[str]:
    """Stop the devnet's nodes, its Anvil and its link relays; the names of those that were running."""
    data = load_devnet(directory)
    stopped = []
    for entry in data.get("observers", []) + data["nodes"]:
        pid = entry.get("pid")
        if is_alive(pid):
            stop_pid(pid)
            stopped.append(entry["id"])
        entry["pid"] = None
    if stop_anvil(data):
        stopped.append("anvil")
    if DelayedLinks(directory, data).stop():
        stopped.append("relays")
    save_devnet(directory, data)
    return stopped


def status(directory: Path) -> list[dict[str, Any]]:
    """Each node's and observer's height, view, whether it is the primary, readiness and health."""
    data = load_devnet(directory)
    rows = []
    # Validators are named by their home (node0, node1, ...), which stays their name after another is removed.
    members = [(Path(e["home"]).name, "validator", e) for e in data["nodes"]]
    members += [(f"obs{i}", "observer", e) for i, e in enumerate(data.get("observers", []))]
    for name, role, entry in members:
        row: dict[str, Any] = {"node": name, "role": role, "id": entry["id"], "url": entry["http"],
                               "pid": entry.get("pid")}
        try:
            s = httpx.get(f"{entry['http']}/v1/status", timeout=2.0).json()
            ready = httpx.get(f"{entry['http']}/readyz", timeout=5.0).status_code == 200
            row.update(height=s["height"], view=s["view"], primary=None if s["view"] is None else
                       s["primary"] == entry["id"], ready=ready, health="ok")
        except (httpx.HTTPError, ValueError, KeyError):
            row.update(height=None, view=None, primary=None, ready=False,
                       health="down" if not is_alive(entry.get("pid")) else "unreachable")
        rows.append(row)
    return rows
