"""Validator-set changes in the state machine: add, remove, rotate as admin actions, their activation
height, one change at a time, and certificates of fetched blocks checked against the set of their height.

Ledger-level, in-process, over a MemoryStore (the `Chain` of test_chain_state: real blocks, certificates
and state roots)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from ledger.anchor.records import AnchorRecord
from ledger.anchor.settings import AnchoringSettings
from ledger.chain import CommitVote, InvalidBlock, compute_block_hash
from ledger.chaindb import ChainDB, ExecutedBlock
from ledger.crypto import DOMAIN_COMMIT, SigningKey
from ledger.genesis import Genesis, genesis_to_plain
from ledger.governance import compute_proposal_id, get_proposal
from ledger.ledger_app import LedgerApp
from ledger.members import member_key
from ledger.proofs import InvalidProof, build_state_proof, parse_header, verify_state_proof
from ledger.store import MemoryStore
from ledger.tx import Reject, compute_tx_id
from ledger.validators import (
    ACTIVATION_DELAY,
    ValidatorAdd,
    ValidatorRemove,
    ValidatorRotate,
    change_count,
    set_at,
    validators_at,
)
from tests.test_chain_state import ADMIN, CHAIN, ORG1, V0, VALIDATORS, Chain, make_genesis, sign_cert
from tests.test_governance import A1, A2, GovChain, gov_genesis
from tests.vectors import independent_verifier as independent

V1, V2, V3 = VALIDATORS[1:]
NEW = SigningKey.from_seed(b"validator-new")


def ids(chain: Chain, height: int) -> list[str]:
    return [v.id for v in validators_at(chain.db.latest, height, chain.genesis)]


def empty_blocks(chain: Chain, count: int) -> None:
    for _ in range(count):
        chain.run()


def test_an_added_validator_certifies_from_commit_height_plus_the_delay() -> None:
    chain = Chain(make_genesis(validators=VALIDATORS))
    assert chain.run1(ADMIN, "validator.add", ValidatorAdd(NEW.public_key, "10.0.0.5", 7005)) == ""
    committed = chain.db.height
    active = committed + ACTIVATION_DELAY
    four = [k.id for k in VALIDATORS]
    assert ids(chain, active - 1) == four
    assert ids(chain, active) == [*four, NEW.id]
    added = set_at(chain.db.latest, active, chain.genesis).validators[-1]
    # The transaction carries the new validator's address, so the others can dial it.
    assert (added.public_key, added.host, added.port) == (NEW.public_key, "10.0.0.5", 7005)
    assert set_at(chain.db.latest, active, chain.genesis).committed_height == committed


def test_only_admins_change_the_set() -> None:
    chain = Chain(make_genesis(validators=VALIDATORS))
    assert chain.run1(ORG1, "validator.add", ValidatorAdd(NEW.public_key, "h", 1)) == Reject.UNAUTHORIZED
    assert chain.run1(ORG1, "validator.remove", ValidatorRemove(V1.id)) == Reject.UNAUTHORIZED
    assert change_count(chain.db.latest) == 0


def test_one_change_at_a_time() -> None:
    chain = Chain(make_genesis(validators=VALIDATORS))
    assert chain.run1(ADMIN, "validator.remove", ValidatorRemove(V3.id)) == ""
    # While the removal has not taken effect, the next change waits.
    assert chain.run1(ADMIN, "validator.remove", ValidatorRemove(V2.id)) == Reject.LOCKED
    empty_blocks(chain, ACTIVATION_DELAY - 2)
    assert chain.db.height + 1 == set_at(chain.db.latest, 10**9, chain.genesis).active_from
    assert chain.run1(ADMIN, "validator.remove", ValidatorRemove(V2.id)) == ""
    final = chain.db.height + ACTIVATION_DELAY
    assert ids(chain, final) == [V0.id, V1.id]
    assert change_count(chain.db.latest) == 2


@pytest.mark.parametrize(("kind", "payload", "reason"), [
    ("validator.add", ValidatorAdd(V1.public_key, "h", 1), Reject.ALREADY_EXISTS),
    ("validator.add", ValidatorAdd(b"\x01" * 31, "h", 1), Reject.INVALID_VALUE),
    ("validator.add", ValidatorAdd(NEW.public_key, "", 1), Reject.INVALID_VALUE),
    ("validator.add", ValidatorAdd(NEW.public_key, "a host", 1), Reject.INVALID_VALUE),
    ("validator.add", ValidatorAdd(NEW.public_key, "h", 0), Reject.INVALID_VALUE),
    ("validator.add", ValidatorAdd(NEW.public_key, "h", 65536), Reject.INVALID_VALUE),
    ("validator.remove", ValidatorRemove(NEW.id), Reject.NOT_FOUND),
    ("validator.rotate", ValidatorRotate(NEW.id, ORG1.public_key), Reject.NOT_FOUND),
    ("validator.rotate", ValidatorRotate(V1.id, V2.public_key), Reject.ALREADY_EXISTS),
])
def test_invalid_changes_are_refused(kind: str, payload: object, reason: str) -> None:
    chain = Chain(make_genesis(validators=VALIDATORS))
    assert chain.run1(ADMIN, kind, payload) == reason
    assert change_count(chain.db.latest) == 0


def test_the_last_validator_stays() -> None:
    chain = Chain()
    assert chain.run1(ADMIN, "validator.remove", ValidatorRemove(V0.id)) == Reject.INVALID_VALUE


def test_a_rotated_validator_keeps_its_place_and_address() -> None:
    chain = Chain(make_genesis(validators=VALIDATORS))
    assert chain.run1(ADMIN, "validator.add", ValidatorAdd(NEW.public_key, "h5", 5)) == ""
    empty_blocks(chain, ACTIVATION_DELAY)
    replacement = SigningKey.from_seed(b"validator-new-2")
    assert chain.run1(ADMIN, "validator.rotate", ValidatorRotate(NEW.id, replacement.public_key)) == ""
    rotated = set_at(chain.db.latest, chain.db.height + ACTIVATION_DELAY, chain.genesis)
    assert [v.id for v in rotated.validators] == [*(k.id for k in VALIDATORS), replacement.id]
    assert (rotated.validators[-1].host, rotated.validators[-1].port, rotated.change) == ("h5", 5, "rotate")


def test_with_a_threshold_a_change_waits_for_the_approvals() -> None:
    chain = GovChain(gov_genesis(admins=3, approvals=2))
    raw = chain.tx(A1, "validator.add", ValidatorAdd(NEW.public_key, "h", 9))
    assert chain.run(raw) == [""]
    assert change_count(chain.db.latest) == 0
    proposal = get_proposal(chain.db.latest, _proposal_id(raw))
    assert proposal is not None
    assert chain.approve(A2, proposal.id) == ""
    assert change_count(chain.db.latest) == 1
    # The change counts from the approving block, where it ran.
    assert set_at(chain.db.latest, 10**9, chain.genesis).active_from == chain.db.height + ACTIVATION_DELAY


def _proposal_id(raw: bytes) -> str:
    return compute_proposal_id(compute_tx_id(raw))


def test_a_validator_added_can_send_system_transactions() -> None:
    chain = Chain(make_genesis(validators=VALIDATORS))
    machine = chain.db.machine
    assert machine.sender_lookup(chain.db.latest, NEW.id) is None
    assert chain.run1(ADMIN, "validator.add", ValidatorAdd(NEW.public_key, "h", 9)) == ""
    info = machine.sender_lookup(chain.db.latest, NEW.id)
    assert info is not None and info.roles == ("validator",)


def _replay(source: ChainDB, genesis_validators: Sequence[SigningKey], signers_at: dict[int, Sequence[SigningKey]],
            ) -> tuple[LedgerApp, int]:
    """Apply `source`'s blocks to a fresh chain as catch-up does, each with a certificate by
    `signers_at[height]` (default: the genesis validators); the height reached before a refusal."""
    fresh = ChainDB(MemoryStore(), source.genesis)
    app = LedgerApp(fresh, clock_ms=lambda: 0)
    for h in range(1, source.height + 1):
        block = source.get_block(h)
        assert block is not None
        try:
            app.apply_certified(block, sign_cert(CHAIN, block.header, signers_at.get(h, genesis_validators)))
        except InvalidBlock:
            return app, h - 1
    return app, source.height


def test_catch_up_checks_each_certificate_against_the_set_of_its_height() -> None:
    chain = Chain(make_genesis(validators=VALIDATORS))
    assert chain.run1(ADMIN, "validator.remove", ValidatorRemove(V3.id)) == ""
    active = chain.db.height + ACTIVATION_DELAY
    empty_blocks(chain, ACTIVATION_DELAY + 1)
    three = VALIDATORS[:3]
    # Certified by the set of each height: all of it applies.
    _, reached = _replay(chain.db, VALIDATORS[:3], {})
    assert reached == chain.db.height
    # From the activation height on, the removed validator's signature no longer counts: V3 with two
    # others is not a quorum of the three left (3 of 3 needed).
    forged = {h: [V1, V2, V3] for h in range(active, chain.db.height + 1)}
    _, reached = _replay(chain.db, three, forged)
    assert reached == active - 1


# === proofs across changes =====================================================================


class SetChain(Chain):
    """A Chain whose blocks are certified by every validator of the set in force at their height."""

    def commit(self, executed: ExecutedBlock) -> None:
        height = executed.block.header.height
        signers = [k for k in (*VALIDATORS, NEW) if k.id in self.db.validator_keys_at(height)]
        self.db.commit(executed, sign_cert(CHAIN, executed.block.header, signers))


def _changed_twice() -> tuple[SetChain, int, int]:
    """Four validators; NEW added, then V3 removed: (chain, first height of each new set)."""
    chain = SetChain(make_genesis(validators=VALIDATORS))
    assert chain.run1(ADMIN, "validator.add", ValidatorAdd(NEW.public_key, "h", 9)) == ""
    added = chain.db.height + ACTIVATION_DELAY
    empty_blocks(chain, ACTIVATION_DELAY)
    assert chain.run1(ADMIN, "validator.remove", ValidatorRemove(V3.id)) == ""
    removed = chain.db.height + ACTIVATION_DELAY
    empty_blocks(chain, ACTIVATION_DELAY + 1)
    return chain, added, removed


def test_a_proof_after_two_changes_verifies_with_only_the_genesis() -> None:
    chain, added, removed = _changed_twice()
    proof = build_state_proof(chain.db, member_key(ORG1.id))
    assert len(proof["validator_sets"]) == 2 and proof["type"] == "ledger-state-proof/v3"
    assert verify_state_proof(json.loads(json.dumps(proof)), chain.genesis).height == chain.db.height
    # The verifier written from docs/proofs.md alone agrees.
    assert independent.verify(json.loads(json.dumps(proof)), genesis_to_plain(chain.genesis))["valid"]
    # Between the two changes the proof carries the first only; before any, none (the older form).
    assert len(build_state_proof(chain.db, member_key(ORG1.id), removed - 1)["validator_sets"]) == 1
    before = build_state_proof(chain.db, member_key(ORG1.id), added - 1)
    assert "validator_sets" not in before and before["type"] == "ledger-state-proof/v2"
    verify_state_proof(build_state_proof(chain.db, member_key(ORG1.id), added - 1), chain.genesis)


def _removed_signature(proof: dict[str, Any]) -> dict[str, str]:
    """V3's commit signature over the proven header, after V3's removal took effect."""
    header = parse_header(proof["header"])
    vote = CommitVote(CHAIN, header.height, header.view, compute_block_hash(header))
    return {"validator": V3.id, "signature": V3.sign(DOMAIN_COMMIT, vote).hex()}


BROKEN: list[tuple[Callable[[dict[str, Any]], object], str]] = [
    (lambda p: (p.pop("validator_sets"), p.update(type="ledger-state-proof/v2")), "certificate_signers"),  # NEW signed
    (lambda p: p.pop("validator_sets"), "malformed_proof"),  # version 3 carries the changes
    (lambda p: p["validator_sets"].pop(0), "certificate_signers"),  # set 2's block: NEW signed it
    (lambda p: p["validator_sets"][0]["certificate"]["signatures"].__delitem__(slice(0, 2)), "certificate_quorum"),
    (lambda p: p["certificate"]["signatures"].insert(0, _removed_signature(p)), "certificate_signers"),
    (lambda p: p["validator_sets"][1].update(entry=p["validator_sets"][0]["entry"]), "validator_set_link"),
    (lambda p: p["validator_sets"].append(p["validator_sets"][1]), "validator_set_link"),
]


@pytest.mark.parametrize(("tamper", "code"), BROKEN)
def test_a_proof_with_a_broken_chain_of_changes_fails(tamper: Callable[[dict[str, Any]], object], code: str) -> None:
    chain, _, _ = _changed_twice()
    proof = json.loads(json.dumps(build_state_proof(chain.db, member_key(ORG1.id))))
    tamper(proof)
    with pytest.raises(InvalidProof) as failed:
        verify_state_proof(proof, chain.genesis)
    assert failed.value.code == code, failed.value.message
    assert independent.verify(proof, genesis_to_plain(chain.genesis)) == {"valid": False, "reason": code}


def proofs_after_changes() -> tuple[Genesis, list[tuple[dict[str, Any], str]]]:
    """A proof after two changes and broken copies of it, each with the verdict `ledger.proofs` gives
    ("valid" or the failure code): for the other verifiers (the browser's: tests/test_web_browser.py)."""
    chain, _, _ = _changed_twice()
    proof = json.loads(json.dumps(build_state_proof(chain.db, member_key(ORG1.id))))
    cases: list[tuple[dict[str, Any], str]] = [(proof, "valid")]
    for tamper, code in BROKEN:
        broken = json.loads(json.dumps(proof))
        tamper(broken)
        cases.append((broken, code))
    for doc, code in cases:
        try:
            verify_state_proof(json.loads(json.dumps(doc)), chain.genesis)
            assert code == "valid"
        except InvalidProof as exc:
            assert exc.code == code
    return chain.genesis, cases


def _anchored_then_changed() -> tuple[SetChain, int]:
    """Four validators anchoring; height `anchored` anchored, then NEW added, and the anchor's record made
    effective only after NEW certifies blocks (by attestations of V0 and NEW: f+1 of five)."""
    settings = AnchoringSettings(31337, "0x" + "5f" * 20, ("0x" + "11" * 20,))
    chain = SetChain(replace(make_genesis(validators=VALIDATORS), anchoring=settings))
    chain.run()
    anchored = chain.db.height
    record = AnchorRecord(anchored, chain.db.head_hash, 31337, settings.contract, b"\x07" * 32, 12,
                          settings.submitters[0])
    assert chain.run1(ADMIN, "validator.add", ValidatorAdd(NEW.public_key, "h", 9)) == ""
    empty_blocks(chain, ACTIVATION_DELAY)
    assert chain.run(chain.tx(V0, "anchor.attest", record), chain.tx(NEW, "anchor.attest", record)) == ["", ""]
    chain.run()
    return chain, anchored


def test_a_proof_whose_anchor_record_lies_beyond_a_later_set_change_verifies() -> None:
    chain, anchored = _anchored_then_changed()
    proof = json.loads(json.dumps(build_state_proof(chain.db, member_key(ORG1.id), anchored, anchor=True)))
    # The proven block is genesis's set's, its anchor's record the new set's: the proof carries the change.
    assert proof["type"] == "ledger-state-proof/v3" and len(proof["validator_sets"]) == 1
    assert proof["anchor"]["record"]["header"]["height"] > anchored + ACTIVATION_DELAY
    verified = verify_state_proof(proof, chain.genesis)
    assert verified.anchor is not None and verified.anchor.height == anchored
    assert independent.verify(proof, genesis_to_plain(chain.genesis))["valid"]
    # Without the change, the record's certificate (NEW signed it) does not check against genesis's set.
    proof.pop("validator_sets")
    proof["type"] = "ledger-state-proof/v2"
    with pytest.raises(InvalidProof) as failed:
        verify_state_proof(proof, chain.genesis)
    assert failed.value.code == "anchor_certificate"
