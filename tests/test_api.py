"""The HTTP API of a real node (LevelDB, ticker, replica) served in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from fastapi.testclient import TestClient

from ledger.api.server import create_app
from ledger.codec import encode
from ledger.crypto import SigningKey
from ledger.resolver.registry import IdRegister, IdUpdate, PrefixCreate, ValueSpec
from ledger.tx import SignedTx, make_tx, tx_to_plain
from tests.nodeutil import CHAIN_ID, Home, make_home


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path, prefixes=(("88.100.1", "org1"),))


@pytest.fixture
def client(home: Home) -> Iterator[TestClient]:
    with TestClient(create_app(home.path)) as c:
        yield c


def register(key: SigningKey, nonce: int, handle: str, url: str = "https://twin.example/x") -> SignedTx:
    return make_tx(key, CHAIN_ID, nonce, "id.register", IdRegister(handle, (ValueSpec(1, "URL", url),)))


def post_json(client: TestClient, body: Any, wait: bool = True) -> Any:
    return client.post("/v1/tx", params={"wait": str(wait).lower()}, content=json.dumps(body),
                       headers={"content-type": "application/json"})


def state(client: TestClient) -> tuple[int, str]:
    s = client.get("/v1/status").json()
    return s["height"], s["state_root"]


def test_status_reports_head_and_consensus_fields(client: TestClient, home: Home) -> None:
    s = client.get("/v1/status").json()
    for field in ("node_id", "height", "view", "primary", "block_hash", "state_root", "peers", "anchoring"):
        assert field in s
    assert s["node_id"] == home.validator.id == s["primary"]
    assert s["height"] == 0


def test_json_tx_commits_and_is_queryable(client: TestClient, home: Home) -> None:
    tx = register(home.org1, 1, "88.100.1/EQ-1")
    r = post_json(client, tx_to_plain(tx))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "committed" and body["ok"] is True
    got = client.get(f"/v1/tx/{body['tx_id']}").json()
    assert got["status"] == "committed" and got["height"] == body["height"]
    assert got["tx"]["payload"]["handle"] == "88.100.1/EQ-1"
    block = client.get(f"/v1/blocks/{body['height']}").json()
    assert block["txs"][body["index"]]["tx_id"] == body["tx_id"]
    assert client.get("/v1/blocks/latest").json()["height"] == body["height"]
    assert len(block["certificate"]["signatures"]) == 1


def test_msgpack_batch_commits_all(client: TestClient, home: Home) -> None:
    txs = [encode(register(home.org1, n, f"88.100.1/B-{n}")) for n in range(1, 51)]
    r = client.post("/v1/tx?wait=true", content=msgpack.packb(txs, use_bin_type=True),
                    headers={"content-type": "application/msgpack"})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["ok"] for x in results] == [True] * 50
    assert client.get("/api/handles/88.100.1/B-50").json()["responseCode"] == 1


def test_execution_failure_is_reported_with_reason(client: TestClient, home: Home) -> None:
    # org2 does not own 88.100.1: the tx is ordered but fails, and changes nothing but its nonce.
    r = post_json(client, tx_to_plain(register(home.org2, 1, "88.100.1/EQ-X")))
    body = r.json()
    assert body["status"] == "committed" and body["ok"] is False and body["reason"] == "unauthorized"
    assert client.get("/api/handles/88.100.1/EQ-X").status_code == 404


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("bad_signature", 400, "bad_signature"),
        ("unknown_sender", 400, "unknown_sender"),
        ("wrong_chain", 400, "wrong_chain"),
        ("unknown_kind", 400, "unknown_kind"),
        ("oversized_tx", 413, "oversized"),
        ("malformed_msgpack_tx", 400, "malformed"),
        ("non_canonical_tx", 400, "malformed"),
    ],
)
def test_bad_transactions_get_a_typed_4xx_and_store_nothing(
    client: TestClient, home: Home, case: str, status: int, reason: str
) -> None:
    before = state(client)
    good = register(home.org1, 1, "88.100.1/EQ-BAD")
    raw: bytes
    if case == "bad_signature":
        raw = encode(SignedTx(*(getattr(good, f) for f in ("chain_id", "kind", "sender", "nonce", "payload")),
                              bytes(64)))
    elif case == "unknown_sender":
        raw = encode(register(SigningKey.from_seed(b"stranger"), 1, "88.100.1/EQ-BAD"))
    elif case == "wrong_chain":
        raw = encode(make_tx(home.org1, "other-chain", 1, "id.register", IdRegister("88.100.1/EQ-BAD", ())))
    elif case == "unknown_kind":
        raw = encode(make_tx(home.org1, CHAIN_ID, 1, "no.such.kind", PrefixCreate("x", "y")))
    elif case == "oversized_tx":
        raw = encode(register(home.org1, 1, "88.100.1/EQ-BAD", "https://x/" + "a" * 70_000))
    elif case == "malformed_msgpack_tx":
        raw = b"\x96\xa1"
    else:  # the nonce as a long-form uint16: same value, different bytes
        raw = _long_form_nonce(good)
    r = client.post("/v1/tx?wait=true", content=msgpack.packb(raw, use_bin_type=True),
                    headers={"content-type": "application/msgpack"})
    assert r.status_code == status, r.text
    assert r.json()["error"] == reason
    assert state(client) == before


def _long_form_nonce(tx: SignedTx) -> bytes:
    """The same tx with its nonce (1) written as a uint16 instead of a fixint: not canonical."""
    items = [tx.chain_id, tx.kind, tx.sender]
    head = msgpack.packb(items, use_bin_type=True)[1:]
    tail = msgpack.packb([tx.payload, tx.signature], use_bin_type=True)[1:]
    return b"\x96" + head + b"\xcd\x00\x01" + tail


def test_replayed_and_duplicate_transactions_are_refused(client: TestClient, home: Home) -> None:
    tx = register(home.org1, 1, "88.100.1/EQ-R")
    assert post_json(client, tx_to_plain(tx)).json()["ok"] is True
    dup = post_json(client, tx_to_plain(tx))
    assert dup.status_code == 409 and dup.json()["error"] == "duplicate"
    replay = post_json(client, tx_to_plain(register(home.org1, 1, "88.100.1/EQ-OTHER")))
    assert replay.status_code == 400 and replay.json()["error"] == "replayed_nonce"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'{"kind": "id.register", "payload": {"handle": 5}}', "application/json"),
        (b"\xc1\xc1", "application/msgpack"),
        (msgpack.packb({"a": 1}), "application/msgpack"),
        (b"", "application/json"),
        (b"[]", "application/json"),
    ],
)
def test_malformed_bodies_get_json_4xx(client: TestClient, body: bytes, content_type: str) -> None:
    before = state(client)
    r = client.post("/v1/tx", content=body, headers={"content-type": content_type})
    assert 400 <= r.status_code < 500
    assert "error" in r.json()
    assert state(client) == before


def test_oversized_request_is_refused_before_reading(client: TestClient) -> None:
    r = client.post("/v1/tx", content=b"x" * (16 * 1024 * 1024 + 1), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "oversized"


def test_bad_paths_and_params_are_json(client: TestClient) -> None:
    assert client.get("/v1/tx/nothex").status_code == 400
    r = client.get("/v1/tx/" + "00" * 32)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert client.get("/v1/blocks/99").status_code == 404
    assert client.get("/v1/blocks/-1").status_code == 400
    r = client.get("/v1/blocks/abc")
    assert r.status_code == 400 and r.json()["error"] == "malformed"


def test_metrics_and_docs(client: TestClient, home: Home) -> None:
    post_json(client, tx_to_plain(register(home.org1, 1, "88.100.1/EQ-M")))
    text = client.get("/metrics").text
    assert "ledger_height 1.0" in text
    assert "ledger_tx_committed_total 1.0" in text
    assert 'ledger_consensus_total{event="dropped_bad_signature"} 0.0' in text
    # The timeouts that watch the primary, as the pace of deliveries stretches them (none yet: as configured).
    assert 'ledger_consensus_pace{what="request_timeout_ms"} 1500.0' in text, text
    assert client.get("/docs").status_code == 200
    assert "/v1/tx" in client.get("/openapi.json").json()["paths"]


def test_member_endpoint_reports_nonce(client: TestClient, home: Home) -> None:
    post_json(client, tx_to_plain(register(home.org1, 1, "88.100.1/EQ-N")))
    m = client.get(f"/v1/members/{home.org1.id}").json()
    assert m["nonce"] == 1 and m["roles"] == ["issuer", "registrar"]
    assert client.get("/v1/members/" + "0" * 40).status_code == 404
    assert client.get("/v1/members/nobody").json()["error"] == "malformed"  # not an id: 400, as documented


def test_resolve_as_of_a_past_height(client: TestClient, home: Home) -> None:
    first = post_json(client, tx_to_plain(register(home.org1, 1, "88.100.1/EQ-H", "https://old"))).json()
    update = make_tx(home.org1, CHAIN_ID, 2, "id.update", IdUpdate("88.100.1/EQ-H", (ValueSpec(1, "URL", "https://new"),)))
    post_json(client, tx_to_plain(update))
    now = client.get("/v1/resolve/88.100.1/EQ-H").json()
    then = client.get(f"/v1/resolve/88.100.1/EQ-H?height={first['height']}").json()
    assert now["record"]["values"][0]["value"] == "https://new"
    assert then["record"]["values"][0]["value"] == "https://old"
    assert client.get(f"/v1/resolve/88.100.1/EQ-H?height={first['height'] - 1}").status_code == 404
    assert client.get("/v1/resolve/no-slash").status_code == 400
