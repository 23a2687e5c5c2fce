"""Clients see progress (issue 18): a write is retried, with back-off, through a node's temporary
failures, and is never counted twice; it fails only when nothing settles for the configured time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from ledger.client import LedgerClient, LedgerError, Signer, deliver
from ledger.codec import encode
from ledger.crypto import SigningKey
from ledger.resolver.registry import IdRegister, ValueSpec
from ledger.tx import compute_tx_id, make_tx
from tests.devnetutil import devnet_down, devnet_up, wait_until

ROWS = 4000  # rows of the import that a node restart interrupts

KEY = SigningKey.from_seed(b"delivery-client")


def _tx(n: int) -> Any:
    return make_tx(KEY, "c", n, "id.register", IdRegister(f"88.100.1/D-{n}", (ValueSpec(1, "URL", "u"),)))


class FakeNode:
    """A node's HTTP answers, scripted per request (the boundary the client talks across)."""

    def __init__(self, script: list[Callable[[httpx.Request], httpx.Response]]) -> None:
        self.script = script
        self.requests: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        return self.script.pop(0)(request)


def _client(node: FakeNode) -> LedgerClient:
    client = LedgerClient("http://node.test")
    client.http = httpx.Client(base_url="http://node.test", transport=httpx.MockTransport(node))
    return client


def _committed(request: httpx.Request) -> httpx.Response:
    raws = msgpack.unpackb(request.content)
    return httpx.Response(200, json={"accepted": len(raws), "results": [
        {"tx_id": compute_tx_id(r).hex(), "accepted": True, "status": "committed", "height": 1, "index": i,
         "ok": True} for i, r in enumerate(raws)]})


def _answer(status: int, body: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=body)


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _run(node: FakeNode, txs: list[Any], **kwargs: Any) -> tuple[list[dict[str, Any]], list[str]]:
    waits: list[str] = []
    results = deliver(_client(node), txs, on_wait=waits.append, sleep=lambda s: None, **kwargs)
    return results, waits


def test_an_unreachable_then_overloaded_node_is_retried_until_it_commits() -> None:
    node = FakeNode([
        _unreachable, _unreachable,
        _answer(503, {"error": "mempool_full", "message": "node is overloaded; retry"}),
        _committed,
    ])
    results, waits = _run(node, [_tx(1)])
    assert [r["status"] for r in results] == ["committed"]
    assert len(waits) == 3 and "unreachable" in waits[0] and "mempool_full" in waits[2]


def test_a_transaction_still_pending_is_awaited_not_resent() -> None:
    tx = _tx(1)
    tx_id = compute_tx_id(encode(tx)).hex()
    node = FakeNode([
        _answer(202, {"accepted": 1, "results": [{"tx_id": tx_id, "accepted": True, "status": "pending"}]}),
        _answer(200, {"tx_id": tx_id, "status": "pending"}),
        _answer(200, {"tx_id": tx_id, "status": "committed", "height": 3, "index": 0, "ok": True}),
        _answer(200, {"tx_id": tx_id, "status": "committed", "height": 3, "index": 0, "ok": True}),
    ])
    results, _ = _run(node, [tx])
    assert results[0]["status"] == "committed" and results[0]["height"] == 3
    assert [m for m, _ in node.requests].count("POST") == 1  # sent once: never counted twice


def test_a_transaction_the_node_lost_or_gave_up_is_sent_again_and_a_duplicate_is_awaited() -> None:
    tx = _tx(1)
    tx_id = compute_tx_id(encode(tx)).hex()
    node = FakeNode([
        _answer(202, {"accepted": 1, "results": [{"tx_id": tx_id, "accepted": True, "status": "pending"}]}),
        _answer(404, {"error": "not_found", "message": "no such transaction on this node"}),  # it restarted
        _answer(404, {"error": "not_found", "message": "no such transaction on this node"}),
        _answer(400, {"error": "duplicate", "accepted": 0, "rejected": 1, "results": [
            {"tx_id": tx_id, "accepted": False, "reason": "duplicate", "message": "already submitted"}]}),
        _answer(200, {"tx_id": tx_id, "status": "committed", "height": 4, "index": 0, "ok": True}),
        _answer(200, {"tx_id": tx_id, "status": "committed", "height": 4, "index": 0, "ok": True}),
    ])
    results, _ = _run(node, [tx])
    assert results[0]["status"] == "committed"


def test_a_refusal_for_good_is_final_and_nothing_settling_gives_up() -> None:
    tx = _tx(1)
    refused = {"error": "bad_signature", "accepted": 0, "rejected": 1, "results": [
        {"tx_id": "00", "accepted": False, "reason": "bad_signature", "message": "signature does not verify"}]}
    results, waits = _run(FakeNode([_answer(400, refused)]), [tx])
    assert results[0]["reason"] == "bad_signature" and waits == []
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(LedgerError, match="no quorum reachable") as raised:
        deliver(_client(FakeNode([_unreachable] * 100)), [tx], give_up_after_s=20, sleep=sleep,
                clock=lambda: now[0])
    assert raised.value.reason == "unavailable"


@pytest.mark.slow
def test_an_import_rides_out_a_node_restart(tmp_path: Path) -> None:
    """`ledger id import` against a real node that is killed mid-import and started again: every row
    is registered once, and the command said what it was waiting for."""
    net = devnet_up(tmp_path / "dn", 1)
    node = net["nodes"][0]
    csv = tmp_path / "rows.csv"
    csv.write_text("identifier,url\n" + "".join(f"88.100.1/R-{i:05d},https://twin.example/{i}\n" for i in range(ROWS)))
    client = LedgerClient(node["http"])
    admin = Signer(SigningKey.load(net["keys"]["admin"]), client)
    org1 = SigningKey.load(net["keys"]["org1"])
    from ledger.resolver.registry import PrefixCreate

    admin.send("prefix.create", PrefixCreate("88.100.1", org1.id))
    cmd = [sys.executable, "-m", "ledger.cli", "id", "import", str(csv), "--dir", net["dir"], "--batch", "200"]
    before = client.status()["height"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Killed (-9) as soon as the import's first block commits: on a quiet machine the rows take ~2 s in all.
    wait_until(lambda: client.status()["height"] > before, 60, "the import under way", interval=0.01)
    os.kill(node["pid"], signal.SIGKILL)

    def bounce() -> None:
        time.sleep(2)
        subprocess.run([sys.executable, "-m", "ledger.cli", "devnet", "up", "--dir", net["dir"], "--detach",
                        "--ethereum", "none"], check=True, capture_output=True)

    bouncer = threading.Thread(target=bounce)
    bouncer.start()
    out, err = proc.communicate(timeout=300)
    bouncer.join()
    assert proc.returncode == 0, err
    tally = json.loads(out.strip().splitlines()[-1])
    assert tally["imported"] + tally["skipped"] == ROWS and tally["failed"] == 0, tally
    assert "waiting:" in err  # it said what it waited for while the node was down
    try:
        found = sum(1 for i in range(0, ROWS, 150) if client.resolve(f"88.100.1/R-{i:05d}"))
    finally:
        devnet_down(net)
    assert found == len(range(0, ROWS, 150))
