"""Equivocation leaves evidence (issue 12): two contradicting signed messages of one validator are
checked as anyone can check them offline, recorded in the ledger once, and shown per validator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ledger.config import NodeConfig
from ledger.consensus.evidence import InvalidEvidence, check_equivocation, order_pair
from ledger.consensus.messages import (
    Checkpoint,
    Commit,
    Envelope,
    Prepare,
    PrePrepare,
    Vote,
    encode_envelope,
    sign_message,
)
from ledger.crypto import SigningKey
from ledger.evidence import KIND, EquivocationEvidence, evidence_count, list_evidence
from ledger.node import Node
from tests.nodeutil import make_home
from tests.test_chain_state import ORG2, V0, Chain, make_genesis

CHAIN = "test-chain"
KEYS = [V0, *(SigningKey.from_seed(f"ev-{i}".encode()) for i in range(1, 4))]
VALIDATORS = {k.id: k.public_key for k in KEYS}
A, B = b"\xaa" * 32, b"\xbb" * 32


def _pair(first: object, second: object, signer: SigningKey = KEYS[1], chain: str = CHAIN) -> tuple[bytes, bytes]:
    return order_pair(sign_message(signer, chain, first), sign_message(signer, chain, second))


@pytest.mark.parametrize("bodies", [
    (PrePrepare(3, 7, A, A), PrePrepare(3, 7, B, A)),
    (Prepare(3, 7, A), Prepare(3, 7, B)),
    (Commit(3, 7, A), Commit(3, 7, B)),
    (Vote(7, 1, A), Vote(7, 2, B)),  # a vote's slot is its height, whatever view it names
])
def test_a_genuine_pair_proves_an_equivocation(bodies: tuple[object, object]) -> None:
    first, second = _pair(*bodies)
    found = check_equivocation(first, second, CHAIN, VALIDATORS)
    assert found.validator == KEYS[1].id and found.height == 7


def test_pairs_that_prove_nothing_are_refused() -> None:
    genuine = _pair(Prepare(3, 7, A), Prepare(3, 7, B))
    other_signer = sign_message(KEYS[2], CHAIN, Prepare(3, 7, B))
    cases = {
        "same block": _pair(Prepare(3, 7, A), Prepare(3, 7, A)),
        "other view": _pair(Prepare(3, 7, A), Prepare(4, 7, B)),
        "other height": _pair(Prepare(3, 7, A), Prepare(3, 8, B)),
        "other kinds": _pair(Prepare(3, 7, A), Commit(3, 7, B)),
        "checkpoints": _pair(Checkpoint(10, A), Checkpoint(10, B)),
        "two senders": order_pair(sign_message(KEYS[1], CHAIN, Prepare(3, 7, A)), other_signer),
        "other chain": _pair(Prepare(3, 7, A), Prepare(3, 7, B), chain="other"),
        "order": (genuine[1], genuine[0]),
        "outsider": _pair(Prepare(3, 7, A), Prepare(3, 7, B), signer=SigningKey.from_seed(b"outsider")),
        "garbage": (b"\x01", genuine[1]),
    }
    forged = sign_message(KEYS[1], CHAIN, Prepare(3, 7, B))
    forged = Envelope(forged.kind, forged.sender, forged.body, b"\x00" * 64, b"")
    cases["bad signature"] = order_pair(sign_message(KEYS[1], CHAIN, Prepare(3, 7, A)), forged)
    attached = sign_message(KEYS[1], CHAIN, PrePrepare(3, 7, B, A), b"block")
    cases["attachment"] = tuple(sorted((encode_envelope(sign_message(KEYS[1], CHAIN, PrePrepare(3, 7, A, A))),
                                        encode_envelope(attached))))  # type: ignore[assignment]
    for name, (first, second) in cases.items():
        with pytest.raises(InvalidEvidence):
            check_equivocation(first, second, CHAIN, VALIDATORS)
            pytest.fail(f"{name}: accepted")


def _evidence_chain() -> Chain:
    return Chain(make_genesis(validators=KEYS))


def test_the_ledger_records_an_equivocation_once_and_counts_it_per_validator() -> None:
    chain = _evidence_chain()
    first, second = _pair(Commit(3, 7, A), Commit(3, 7, B))
    # A validator that is not a member sends it with its node key; so may any member.
    assert chain.run1(KEYS[2], KIND, EquivocationEvidence(first, second)) == ""
    assert chain.run1(ORG2, KIND, EquivocationEvidence(first, second)) == "already_exists"
    assert chain.run1(ORG2, KIND, EquivocationEvidence(*_pair(Vote(7, 0, A), Vote(7, 0, B)))) == ""
    bogus = _pair(Commit(3, 7, A), Commit(3, 8, B))
    assert chain.run1(ORG2, KIND, EquivocationEvidence(*bogus)) == "invalid_value"
    assert evidence_count(chain.db.latest, KEYS[1].id) == 2
    assert evidence_count(chain.db.latest, KEYS[2].id) == 0
    records = list_evidence(chain.db.latest, KEYS[1].id)
    assert [(r.kind, r.view, r.height, r.reporter) for r in records] == [
        ("commit", 3, 7, KEYS[2].id), ("vote", 0, 7, ORG2.id)]
    assert (records[0].first, records[0].second) == (first, second)


def test_a_node_submits_the_evidence_its_replica_reports(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    node = Node(NodeConfig.load(home.path), on_fatal=lambda exc: None)
    me = home.validator
    first, second = _pair(Prepare(0, 1, A), Prepare(0, 1, B), signer=me, chain=home.genesis.chain_id)

    async def run() -> None:
        node.on_evidence(first, second)
        node.on_evidence(first, second)  # reported again while pending: the same transaction
        assert len(node.mempool) == 1
        for _ in range(50):
            node.driver.tick()
            if evidence_count(node.chain.latest, me.id):
                break

    try:
        asyncio.run(run())
        records = list_evidence(node.chain.latest, me.id)
        assert [(r.kind, r.height, r.reporter) for r in records] == [("prepare", 1, me.id)]
        # The node key's nonces stay in one sequence with other system transactions.
        admission = node.submit_system(KIND, EquivocationEvidence(*_pair(Commit(0, 2, A), Commit(0, 2, B),
                                                                         signer=me,
                                                                         chain=home.genesis.chain_id)))
        assert admission.accepted and node.mempool.is_pending(admission.tx_id)
    finally:
        asyncio.run(node.stop())


def test_the_api_shows_a_validators_evidence(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from ledger.api.server import create_app

    home = make_home(tmp_path)
    node = Node(NodeConfig.load(home.path), on_fatal=lambda exc: None)
    me = home.validator
    first, second = _pair(Vote(4, 0, A), Vote(4, 0, B), signer=me, chain=home.genesis.chain_id)
    with TestClient(create_app(node=node)) as client:
        assert client.get(f"/v1/evidence/{me.id}").json()["count"] == 0
        node.submit_system(KIND, EquivocationEvidence(first, second))
        for _ in range(50):
            node.driver.tick()
        answer = client.get(f"/v1/evidence/{me.id}").json()
        assert answer["count"] == 1 and answer["records"][0]["kind"] == "vote"
        assert bytes.fromhex(answer["records"][0]["first"]) == first
        marked = {v["id"]: v["equivocations"] for v in client.get("/v1/network").json()["validators"]}
        assert marked == {me.id: 1}
        assert client.get("/v1/evidence/not-an-id").status_code == 400  # the API answers malformed input with 400
