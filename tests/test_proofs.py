"""Resolution answers carry proofs that `ledger verify` checks offline against the genesis file."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ledger.api.server import create_app
from ledger.cli import main as ledger_main
from ledger.crypto import SigningKey
from ledger.genesis import GenesisValidator, save_genesis
from ledger.resolver.registry import IdRegister, IdUpdate, ValueSpec
from ledger.tx import make_tx, tx_to_plain
from tests.nodeutil import CHAIN_ID, Home, make_home


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path, prefixes=(("88.100.1", "org1"),))


@pytest.fixture
def client(home: Home) -> Iterator[TestClient]:
    with TestClient(create_app(home.path)) as c:
        for nonce, (kind, payload) in enumerate([
            ("id.register", IdRegister("88.100.1/EQ-1", (ValueSpec(1, "URL", "https://old"),))),
            ("id.update", IdUpdate("88.100.1/EQ-1", (ValueSpec(1, "URL", "https://new"),))),
        ], start=1):
            r = c.post("/v1/tx?wait=true", json=tx_to_plain(make_tx(home.org1, CHAIN_ID, nonce, kind, payload)))
            assert r.json()["ok"] is True
        yield c


def verify(tmp_path: Path, doc: Any, genesis: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    f = tmp_path / "answer.json"
    f.write_text(json.dumps(doc))
    code = ledger_main(["verify", str(f), "--genesis", str(genesis)])
    return code, json.loads(capsys.readouterr().out)


def test_current_answer_verifies(client: TestClient, home: Home, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    doc = client.get("/v1/resolve/88.100.1/EQ-1?proof=true").json()
    code, out = verify(tmp_path, doc, home.path / "genesis.json", capsys)
    assert code == 0 and out["valid"] and out["present"]
    assert out["record"]["values"][0]["value"] == "https://new"


def test_past_answer_proves_the_old_value(client: TestClient, home: Home, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    height = client.get("/v1/status").json()["height"] - 1
    doc = client.get(f"/v1/resolve/88.100.1/EQ-1?proof=true&height={height}").json()
    code, out = verify(tmp_path, doc, home.path / "genesis.json", capsys)
    assert code == 0 and out["height"] == height and out["record"]["values"][0]["value"] == "https://old"


def test_absence_is_proven(client: TestClient, home: Home, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    r = client.get("/v1/resolve/88.100.1/NOPE?proof=true")
    assert r.status_code == 404
    code, out = verify(tmp_path, r.json()["proof"], home.path / "genesis.json", capsys)
    assert code == 0 and out["present"] is False


def test_handle_answer_carries_a_top_level_proof(client: TestClient, home: Home, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    doc = client.get("/api/handles/88.100.1/EQ-1?proof=true").json()
    assert doc["responseCode"] == 1 and "proof" in doc
    code, _ = verify(tmp_path, doc, home.path / "genesis.json", capsys)
    assert code == 0


def _tampered(doc: dict[str, Any], how: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    proof = doc["proof"]
    if how == "record":
        doc["record"]["values"][0]["value"] = "https://evil"
    elif how == "value":
        proof["value"] = proof["value"].replace("6e6577", "6f6c64")  # "new" -> "old" inside the record
    elif how == "signature":
        sig = proof["certificate"]["signatures"][0]
        sig["signature"] = ("00" if sig["signature"][:2] != "00" else "11") + sig["signature"][2:]
    elif how == "state_root":
        proof["header"]["state_root"] = "00" * 32
    elif how == "identifier":
        doc["identifier"] = "88.100.1/EQ-2"
    elif how == "sibling":
        proof["smt"]["siblings"][0] = "ab" * 32
    return doc


@pytest.mark.parametrize("how", ["record", "value", "signature", "state_root", "identifier", "sibling"])
def test_tampering_is_detected(client: TestClient, home: Home, tmp_path: Path, how: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    doc = client.get("/v1/resolve/88.100.1/EQ-1?proof=true").json()
    code, out = verify(tmp_path, _tampered(doc, how), home.path / "genesis.json", capsys)
    assert code == 1 and out["valid"] is False


def test_proof_does_not_verify_against_another_validator_set(
    client: TestClient, home: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = client.get("/v1/resolve/88.100.1/EQ-1?proof=true").json()
    other = home.genesis.__class__(
        home.genesis.chain_id, home.genesis.timestamp,
        (GenesisValidator("impostor", SigningKey.from_seed(b"impostor").public_key),),
        home.genesis.members, home.genesis.prefixes,
    )
    save_genesis(other, tmp_path / "other-genesis.json")
    code, out = verify(tmp_path, doc, tmp_path / "other-genesis.json", capsys)
    assert code == 1 and "certificate" in out["reason"]


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    else:
        yield path, node


def _edited(value: Any) -> Any:
    """The value with one character (or digit) changed, keeping its JSON type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str) and value:
        last = value[-1]
        return value[:-1] + ("0" if last != "0" else "1")
    return "x" if value is None else value


@pytest.mark.parametrize("path", ["/v1/resolve/88.100.1/EQ-1?proof=true", "/api/handles/88.100.1/EQ-1?proof=true",
                                  "/v1/resolve/88.100.1/NOPE?proof=true"])
def test_every_edited_field_fails_verification(client: TestClient, home: Home, tmp_path: Path, path: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever single field of an answer is edited (a proof field, or a claim around the proof), `ledger
    verify` refuses it; fields that carry no claim (a message for people) are the only ones skipped."""
    doc = client.get(path).json()
    genesis = home.path / "genesis.json"
    code, _ = verify(tmp_path, doc, genesis, capsys)
    assert code == 0
    passed = []
    for where, value in _leaves(doc):
        if where in {("message",), ("error",)}:
            continue
        edited = copy.deepcopy(doc)
        target = edited
        for step in where[:-1]:
            target = target[step]
        target[where[-1]] = _edited(value)
        if edited == doc:
            continue
        code, _ = verify(tmp_path, edited, genesis, capsys)
        if code == 0:
            passed.append(where)
    assert passed == [], f"edits that still verify: {passed}"
