"""Backup and restore on a real 4-validator devnet: a backup under load, the data directory destroyed, a
tampered copy refused, the backup restored, the node restarted and back at the head with the others."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet.processes import start_node, stop_pid, wait_healthy
from ledger.client import LedgerClient, Signer
from ledger.config import NodeConfig
from ledger.crypto import SigningKey
from ledger.genesis import load_genesis
from ledger.resolver.registry import IdRegister, PrefixCreate, ValueSpec
from ledger.snapshot.auth import HEADER, make_token
from tests.devnetutil import devnet_down, devnet_up, ledger, wait_until

pytestmark = pytest.mark.slow
URL = (ValueSpec(1, "URL", "https://twin.example/b"),)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = devnet_up(tmp_path_factory.mktemp("backup") / "devnet", 4)
    yield data
    devnet_down(data)


class Load:
    """Registrations through node 0 in batches until stopped; counts the acknowledged ones."""

    def __init__(self, net: dict[str, Any]) -> None:
        url = net["nodes"][0]["http"]
        org1 = SigningKey.load(net["keys"]["org1"])
        Signer(SigningKey.load(net["keys"]["admin"]), LedgerClient(url)).send(
            "prefix.create", PrefixCreate("88.100.8", org1.id))
        self.client = LedgerClient(url, timeout=30)
        self.signer = Signer(org1, self.client)
        self.acknowledged = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            txs = [self.signer.sign("id.register", IdRegister(f"88.100.8/B-{n + i}", URL)) for i in range(40)]
            results = self.client.submit(txs, wait=True, timeout=30)
            self.acknowledged += sum(1 for r in results if r.get("ok"))
            n += 40

    def end(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def _status(url: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{url}/v1/status", timeout=10).json()
    return result


def test_the_backup_route_wants_the_node_key(net: dict[str, Any]) -> None:
    node = net["nodes"][0]
    url = f"{node['http']}/v1/admin/backup"
    assert httpx.get(url, timeout=10).status_code == 403
    chain_id = load_genesis(NodeConfig.load(node["home"]).genesis).chain_id
    other = SigningKey.from_seed(b"not the node")
    refused = httpx.get(url, headers={HEADER: make_token(other, chain_id, 0)}, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"


def test_backup_under_load_then_restore_catches_up_to_the_same_head(net: dict[str, Any], tmp_path: Path) -> None:
    target = net["nodes"][3]
    home = Path(target["home"])
    load = Load(net)
    wait_until(lambda: load.acknowledged >= 120, 120, "the load's first registrations")

    backup = tmp_path / "node3.ledger"
    made = json.loads(ledger("backup", "--home", str(home), "--out", str(backup)).stdout)
    assert made["height"] > 1 and made["bytes"] == backup.stat().st_size
    wait_until(lambda: _status(target["http"])["height"] > made["height"] + 2, 120, "commits after the backup")

    stop_pid(target["pid"])
    shutil.rmtree(NodeConfig.load(home).data_dir)

    tampered = tmp_path / "tampered.ledger"
    data = bytearray(backup.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    refused = ledger("restore", str(tampered), "--home", str(home), check=False)
    assert refused.returncode == 1 and "backup refused" in refused.stderr
    assert not (NodeConfig.load(home).data_dir / "ledger.db").exists()

    restored = json.loads(ledger("restore", str(backup), "--home", str(home)).stdout)
    assert (restored["height"], restored["block_hash"]) == (made["height"], made["block_hash"])

    log_dir = Path(net["dir"]) / "logs"
    proc = start_node(home, log_dir)
    net["extra_pids"].append(proc.pid)
    target["pid"] = proc.pid
    wait_healthy(target["http"], proc, log_dir / f"{home.name}.log")
    load.end()

    head = _status(net["nodes"][0]["http"])["height"]
    wait_until(lambda: _status(target["http"])["height"] >= head, 180, f"the restored node at height {head}")
    hashes = {httpx.get(f"{n['http']}/v1/blocks/{head}", timeout=10).json()["hash"] for n in net["nodes"]}
    assert len(hashes) == 1
