"""Real node processes driven through the `ledger` command: devnet, CLI writes, kill -9, restart."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet.processes import is_alive, start_node, wait_healthy
from ledger.client import LedgerClient, Signer
from ledger.crypto import SigningKey
from ledger.resolver.registry import IdRegister, ValueSpec
from tests.devnetutil import devnet_down, devnet_up, ledger

pytestmark = pytest.mark.slow


@pytest.fixture
def net(tmp_path: Path) -> Iterator[dict[str, Any]]:
    data = devnet_up(tmp_path / "devnet", 1)
    yield data
    devnet_down(data)


def restart(data: dict[str, Any]) -> None:
    """kill -9 the node, then start it again with `ledger node run --home`."""
    node = data["nodes"][0]
    os.kill(node["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while is_alive(node["pid"]) and time.monotonic() < deadline:  # not our child: poll
        time.sleep(0.02)
    log = Path(data["dir"]) / "logs" / "restart.log"
    proc = start_node(node["home"], log.parent)
    data["extra_pids"].append(proc.pid)
    node["pid"] = proc.pid
    wait_healthy(node["http"], proc, log)


def test_cli_registrations_resolve_and_survive_kill_9(net: dict[str, Any], tmp_path: Path) -> None:
    d = net["dir"]
    url = net["nodes"][0]["http"]
    ledger("id", "prefix", "88.100.1", "--owner", "org1", "--dir", d)
    out = ledger("id", "register", "88.100.1/EQ-2024-000123", "--url", "https://twin.example/EQ-123",
                 "--value", "EMAIL=ops@example.com", "--dir", d)
    assert json.loads(out.stdout)["identifier"] == "88.100.1/EQ-2024-000123"

    again = ledger("id", "register", "88.100.1/EQ-2024-000123", "--url", "https://x", "--dir", d, check=False)
    assert again.returncode != 0 and "already_exists" in again.stderr

    csv_path = tmp_path / "import.csv"
    rows = [f"88.100.1/IMP-{i:05d},https://twin.example/{i}" for i in range(300)]
    csv_path.write_text("identifier,url\n" + "\n".join(rows) + "\nnot-an-identifier,https://x\n")
    imported = ledger("id", "import", str(csv_path), "--dir", d, "--batch", "64", check=False)
    assert imported.returncode == 1  # one bad row: reported, not fatal
    summary = json.loads(imported.stdout.strip().splitlines()[-1])
    assert (summary["imported"], summary["failed"], summary["skipped"]) == (300, 1, 0)
    assert "line 302" in imported.stderr

    body = httpx.get(f"{url}/api/handles/88.100.1/EQ-2024-000123").json()
    assert body["values"][0]["data"]["value"] == "https://twin.example/EQ-123"
    resolved = json.loads(ledger("resolve", "88.100.1/IMP-00299", "--dir", d).stdout)
    assert resolved["record"]["values"][0]["value"] == "https://twin.example/299"

    before = httpx.get(f"{url}/v1/status").json()
    restart(net)
    after = httpx.get(f"{url}/v1/status").json()
    assert (after["height"], after["block_hash"], after["state_root"]) == (
        before["height"], before["block_hash"], before["state_root"])
    with httpx.Client(base_url=url) as http:
        for i in range(300):
            assert http.get(f"/api/handles/88.100.1/IMP-{i:05d}").json()["responseCode"] == 1

    status = ledger("devnet", "status", "--dir", d)
    assert "node0" in status.stdout and " ok" in status.stdout


def test_kill_9_under_load_loses_nothing_acknowledged(net: dict[str, Any]) -> None:
    url = net["nodes"][0]["http"]
    admin = Signer(SigningKey.load(net["keys"]["admin"]), LedgerClient(url))
    org1 = SigningKey.load(net["keys"]["org1"])
    from ledger.resolver.registry import PrefixCreate

    admin.send("prefix.create", PrefixCreate("88.100.7", org1.id))
    acknowledged: list[str] = []
    stop = threading.Event()

    def load() -> None:
        client = LedgerClient(url, timeout=10)
        signer = Signer(org1, client)
        n = 0
        while not stop.is_set():
            txs = [signer.sign("id.register", IdRegister(f"88.100.7/L-{n + i}", (ValueSpec(1, "URL", "https://t"),)))
                   for i in range(50)]
            try:
                results = client.submit(txs, wait=True, timeout=5)
            except Exception:  # the node is gone mid-request: nothing from this batch was acknowledged
                return
            acknowledged.extend(f"88.100.7/L-{n + i}" for i, r in enumerate(results) if r.get("ok"))
            n += 50

    worker = threading.Thread(target=load)
    worker.start()
    time.sleep(1.5)
    restart(net)  # kill -9 while the loader is mid-flight
    stop.set()
    worker.join(timeout=30)
    assert len(acknowledged) > 100
    with httpx.Client(base_url=url) as http:
        for handle in acknowledged:
            assert http.get(f"/api/handles/{handle}").json()["responseCode"] == 1, handle
