"""`ledger devnet add-node`: a new validator for a running devnet, by governance, without restarting the others.

Steps: make the node's key and home (its config names the running validators as peers, as a production
operator's would), start its process (it follows the chain by catch-up, not yet a validator), propose
`validator.add` with its address and have the devnet's admins approve it up to the threshold, then wait
until the new set governs and the node is at the head. The others dial it from the address in the
transaction; nobody edits their configuration. The node is listed in `devnet.json`, so `devnet status`
and `devnet down` include it.

On a devnet that anchors, the node anchors like the others: its home gets an Ethereum key file of its own
(`eth.key`, named by `ethereum.key_file` in its config, the others' `ethereum` section otherwise), the
devnet's Anvil funds it, and the admins certify its address as a submitter (`anchor.settings`, the
governance action `ledger anchoring set` sends, approved up to the threshold). Until then its anchoring
service says why it waits (`/v1/status` anchoring `note`): not yet in the validator set, or not yet a
certified submitter.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

from devnet.ethereum import ETH_KEY_FILE, fund, node_eth_key
from devnet.processes import free_ports, is_alive, start_node, stop_pid, wait_healthy
from devnet.record import DevnetError, load_devnet, save_devnet
from ledger.anchor.settings import AnchoringSettings
from ledger.client import LedgerClient, LedgerError, Signer
from ledger.config import write_config
from ledger.crypto import SigningKey
from ledger.genesis import load_genesis
from ledger.governance import ProposalVote, compute_proposal_id
from ledger.validators import ValidatorAdd

CONFIG_FILE = "config.json"


def height_of(url: str) -> int | None:
    try:
        return int(httpx.get(f"{url}/v1/status", timeout=2.0).json()["height"])
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def admin_keys(data: dict[str, Any]) -> list[SigningKey]:
    """The devnet's admin keys, `admin` first, then `admin2` ... (the keys `devnet up --admins K` wrote)."""
    genesis = load_genesis(data["genesis"])
    admins = [m.name for m in genesis.members if "admin" in m.roles and m.name in data["keys"]]
    seen: set[str] = set()
    keys = []
    for name in admins:
        key = SigningKey.load(data["keys"][name])
        if key.id not in seen:
            seen.add(key.id)
            keys.append(key)
    if not keys:
        raise DevnetError("the devnet has no admin key in devnet.json")
    return keys


def approvals_needed(url: str) -> int:
    body = httpx.get(f"{url}/v1/governance", timeout=5.0).json()
    return int(body["approvals"])


def add_node(directory: Path, timeout: float = 60.0, state_sync: bool = False) -> dict[str, Any]:
    """Add one validator; returns its devnet.json entry with `active_from` and the seconds each step took.
    With `state_sync` the node joins from a certified snapshot of the running nodes' state instead of
    replaying every block (its config's `sync` section names their HTTP URLs)."""
    data = load_devnet(directory)
    running = [n for n in data["nodes"] if is_alive(n.get("pid"))]
    if not running:
        raise DevnetError(f"the devnet at {directory} is not running (start it with `ledger devnet up`)")
    first = running[0]
    index = len(data["nodes"])
    while (directory / "nodes" / f"node{index}").exists():  # a removed node's home stays
        index += 1
    home = directory / "nodes" / f"node{index}"
    template = json.loads((Path(first["home"]) / CONFIG_FILE).read_text())
    peers = []
    for entry in data["nodes"]:
        peer_config = json.loads((Path(entry["home"]) / CONFIG_FILE).read_text())
        peers.append({"id": entry["id"], "host": "127.0.0.1", "port": peer_config["p2p"]["port"]})
    http_port, p2p_port = free_ports(2, int(template["http"]["port"]) + 100)
    key = SigningKey.generate()
    key.save(home / "node.pem")
    config = {k: v for k, v in template.items() if k != "ethereum"}
    submitter = None
    if template.get("ethereum") is not None:
        # It anchors like the others, with an Ethereum key of its own.
        from ledger.anchor.contract import load_key_file

        submitter = str(load_key_file(node_eth_key(home)).address).lower()
        config["ethereum"] = {**template["ethereum"], "key_file": ETH_KEY_FILE}
        fund(directory, data, submitter)
    config.update({
        "node_key": "node.pem", "genesis": os.path.relpath(Path(data["genesis"]).resolve(), home.resolve()),
        "data_dir": "data",
        "http": {"host": "127.0.0.1", "port": http_port}, "p2p": {"host": "127.0.0.1", "port": p2p_port},
        "peers": peers,
    })
    if state_sync:
        config["sync"] = {"mode": "state", "sources": [n["http"] for n in running]}
    write_config(home, config)
    entry = {"id": key.id, "http": f"http://127.0.0.1:{http_port}", "pid": None, "home": str(home)}
    log_dir = directory / "logs"
    started = time.monotonic()
    proc = start_node(home, log_dir)
    entry["pid"] = proc.pid
    data["nodes"].append(entry)
    save_devnet(directory, data)
    try:
        wait_healthy(entry["http"], proc, log_dir / f"{home.name}.log")
        result = _propose_and_wait(first["http"], entry, key, data, timeout, submitter)
    except (DevnetError, LedgerError, httpx.HTTPError) as exc:
        stop_pid(proc.pid)
        data["nodes"].pop()
        save_devnet(directory, data)
        raise DevnetError(f"adding {key.id} failed: {exc}") from exc
    return {**entry, **result, "seconds_total": round(time.monotonic() - started, 2)}


def decide(client: LedgerClient, admins: list[SigningKey], needed: int, kind: str, payload: Any) -> int:
    """Send an admin action and approve it up to the threshold; the height at which it ran."""
    # Signer.send raises LedgerError unless the transaction commits successfully.
    result = Signer(admins[0], client).send(kind, payload)
    decided_at = int(result["height"])
    proposal = compute_proposal_id(bytes.fromhex(result["tx_id"]))
    for admin in admins[1:needed]:
        decided_at = int(Signer(admin, client).send("governance.approve", ProposalVote(proposal))["height"])
    return decided_at


def with_submitter(certified: dict[str, Any] | None, submitter: str) -> AnchoringSettings | None:
    """The certified anchoring settings (`GET /v1/anchors`' `settings`) with `submitter` added; None when
    there is nothing to change (it is listed already) or nothing to add it to (the ledger does not anchor)."""
    if certified is None or submitter in certified["submitters"]:
        return None
    return AnchoringSettings(int(certified["eth_chain_id"]), str(certified["contract"]),
                             (*certified["submitters"], submitter))


def _propose_and_wait(url: str, entry: dict[str, Any], key: SigningKey, data: dict[str, Any],
                      timeout: float, submitter: str | None) -> dict[str, Any]:
    admins = admin_keys(data)
    needed = approvals_needed(url)
    if len(admins) < needed:
        raise DevnetError(f"adding a validator needs {needed} admin approvals; devnet.json has "
                          f"{len(admins)} admin key(s)")
    p2p_port = json.loads((Path(entry["home"]) / CONFIG_FILE).read_text())["p2p"]["port"]
    proposed = time.monotonic()
    certified_at = None
    with LedgerClient(url) as client:
        decided_at = decide(client, admins, needed, "validator.add",
                             ValidatorAdd(key.public_key, "127.0.0.1", p2p_port))
        if submitter is not None:
            settings = with_submitter(client.get("/v1/anchors")["settings"], submitter)
            if settings is not None:
                certified_at = decide(client, admins, needed, "anchor.settings", settings)
        sets = client.get("/v1/validators")["sets"]
    scheduled = [s for s in sets if any(v["id"] == key.id for v in s["validators"])]
    if not scheduled:
        raise DevnetError("the validator set does not list the new node after the approvals")
    active_from = int(scheduled[0]["active_from"])
    decided = time.monotonic()
    deadline = decided + timeout
    # At the head: it holds the block that decided the change and is within a block of the others. (It
    # validates from `active_from`, which an idle ledger reaches only as blocks are made.)
    while time.monotonic() < deadline:
        mine, theirs = height_of(entry["http"]), height_of(url)
        if mine is not None and theirs is not None and mine >= decided_at and mine >= theirs - 1:
            return {"active_from": active_from, "height": mine, "submitter": submitter,
                    "submitter_certified_at": certified_at, "seconds_to_decide": round(decided - proposed, 2),
                    "seconds_to_head": round(time.monotonic() - decided, 2)}
        time.sleep(0.2)
    raise DevnetError(f"the new node did not reach the head within {timeout:.0f} s "
                      f"(its height {height_of(entry['http'])}, the others' {height_of(url)}, set from {active_from})")
