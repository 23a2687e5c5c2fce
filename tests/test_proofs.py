"""Answers carry proofs that `ledger verify` checks offline against the genesis file, and every field of an
answer is bound to its proof: editing any one of them (except what the answer lists as `unproven`) makes
`ledger verify` exit non-zero and name the check that failed."""

from __future__ import annotations

import copy
import hashlib
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
from ledger.nft.assets import AssetLease, AssetMint
from ledger.nft.rights import LicenceGrant, compute_licence_id
from ledger.resolver.registry import IdRegister, IdUpdate, ValueSpec
from ledger.tx import make_tx, tx_to_plain
from tests.nodeutil import CHAIN_ID, Home, make_home

YEAR_MS = 365 * 24 * 3600 * 1000


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return make_home(tmp_path_factory.mktemp("proofs"), prefixes=(("88.100.1", "org1"),))


@pytest.fixture(scope="module")
def client(home: Home) -> Iterator[TestClient]:
    """One node with an identifier updated once, a token bound to it, leased, and a licence on it."""
    with TestClient(create_app(home.path)) as c:
        now = c.get("/v1/blocks/latest").json()["header"]["timestamp"]
        steps: list[tuple[SigningKey, str, Any]] = [
            (home.org1, "id.register", IdRegister("88.100.1/EQ-1", (ValueSpec(1, "URL", "https://old"),))),
            (home.org1, "id.update", IdUpdate("88.100.1/EQ-1", (ValueSpec(1, "URL", "https://new"),
                                                                ValueSpec(2, "EMAIL", "ops@example.com")))),
            (home.org1, "asset.mint", AssetMint("PUMP-1", "equipment", "https://meta/1",
                                                hashlib.sha256(b"m").digest(), "", "88.100.1/EQ-1")),
            (home.org1, "asset.lease", AssetLease("PUMP-1", home.org2.id, now + YEAR_MS)),
            (home.org1, "licence.grant", LicenceGrant("PUMP-1", "", home.org2.id, ("maintenance",), 0,
                                                      now + YEAR_MS, False, "", b"")),
        ]
        nonces: dict[str, int] = {}
        for key, kind, payload in steps:
            nonces[key.id] = nonces.get(key.id, 0) + 1
            r = c.post("/v1/tx?wait=true", json=tx_to_plain(make_tx(key, CHAIN_ID, nonces[key.id], kind, payload)))
            assert r.json()["ok"] is True, r.json()
            c.licence_id = compute_licence_id(bytes.fromhex(r.json()["tx_id"]))  # type: ignore[attr-defined]
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
    assert code == 0 and out["valid"] and out["present"] and out["kind"] == "identifier"
    assert out["record"]["values"][0]["value"] == "https://new"


def test_past_answer_proves_the_old_value(client: TestClient, home: Home, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    created = client.get("/v1/resolve/88.100.1/EQ-1").json()["record"]["created_height"]
    doc = client.get(f"/v1/resolve/88.100.1/EQ-1?proof=true&height={created}").json()
    code, out = verify(tmp_path, doc, home.path / "genesis.json", capsys)
    assert code == 0 and out["height"] == created and out["record"]["values"][0]["value"] == "https://old"


def test_absence_answer_is_proven(client: TestClient, home: Home, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    r = client.get("/v1/resolve/88.100.1/NOPE?proof=true")
    assert r.status_code == 404
    code, out = verify(tmp_path, r.json(), home.path / "genesis.json", capsys)
    assert code == 0 and out["present"] is False and out["key"] == "id/88.100.1/NOPE"


def test_the_issues_tamperings_fail_naming_the_check(client: TestClient, home: Home, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    genesis = home.path / "genesis.json"
    found = client.get("/v1/resolve/88.100.1/EQ-1?proof=true").json()
    as_absent = {k: v for k, v in found.items() if k != "record"}
    as_absent.update(error="not_found", message="88.100.1/EQ-1 is not registered")
    code, out = verify(tmp_path, as_absent, genesis, capsys)
    assert (code, out["valid"], out["reason"]) == (1, False, "answer_presence")

    shown = client.get("/v1/assets/PUMP-1?proof=true&history=true").json()
    shown = {"id": "PUMP-1", "owner": shown["asset"]["owner"], "kind": "equipment", "burned": False, **shown}
    assert verify(tmp_path, shown, genesis, capsys)[0] == 0
    for edit, reason in [({"id": "PUMP-2"}, "answer_key"), ({"user_of": ""}, "answer_derived"),
                         ({"history": shown["history"][:1]}, "answer_derived")]:
        code, out = verify(tmp_path, {**shown, **edit}, genesis, capsys)
        assert (code, out["reason"]) == (1, reason), edit

    absent = client.get("/v1/resolve/88.100.1/NOPE?proof=true").json()
    code, out = verify(tmp_path, {**absent, "message": "88.100.1/NOPE was deleted"}, genesis, capsys)
    assert (code, out["reason"]) == (1, "answer_derived")


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
    assert code == 1 and out["reason"] == "certificate_signers"


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


ANSWERS = [
    "/v1/resolve/88.100.1/EQ-1?proof=true",
    "/v1/resolve/88.100.1/NOPE?proof=true",
    "/api/handles/88.100.1/EQ-1?proof=true",
    "/api/handles/88.100.1/EQ-1?proof=true&type=EMAIL",
    "/api/handles/88.100.1/NOPE?proof=true",
    "/v1/assets/PUMP-1?proof=true&history=true",
    "/v1/licences/{licence}?proof=true",
    "/v1/rights/check?token=PUMP-1&holder={org2}&purpose=maintenance",
    "/v1/rights/check?token=PUMP-1&holder={org2}&purpose=resale",
]


@pytest.mark.parametrize("path", ANSWERS)
def test_every_edited_field_fails_verification(client: TestClient, home: Home, tmp_path: Path, path: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever single field of an answer is edited (a proof field, or a claim around it), `ledger verify`
    refuses it; and so does adding a field, or removing one. A rights check's `at` and `purpose` are the
    question: an edited question whose proven answer is the same is a true statement, so they are skipped
    (`holder` and `token` edits fail: the proof does not cover the other holder's or token's records)."""
    url = path.format(licence=client.licence_id, org2=home.org2.id)  # type: ignore[attr-defined]
    doc = client.get(url).json()
    genesis = home.path / "genesis.json"
    code, out = verify(tmp_path, doc, genesis, capsys)
    assert code == 0, out
    passed = []
    for where, value in _leaves(doc):
        if "allowed" in doc and where in {("at",), ("purpose",)}:
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
    for name in [k for k in doc if k != "proof"]:
        if verify(tmp_path, {k: v for k, v in doc.items() if k != name}, genesis, capsys)[0] == 0:
            passed.append(("removed", name))
    if verify(tmp_path, {**doc, "note": "trust me"}, genesis, capsys)[0] == 0:
        passed.append(("added", "note"))
    assert passed == [], f"edits that still verify: {passed}"


def test_unproven_fields_are_reported_not_checked(client: TestClient, home: Home, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    doc = client.get("/v1/resolve/88.100.1/EQ-1?proof=true").json()
    doc["unproven"] = {"input": "anything at all"}
    code, out = verify(tmp_path, doc, home.path / "genesis.json", capsys)
    assert code == 0 and out["unproven"] == {"input": "anything at all"}
