"""Anchoring and evidence follow the validator set of each height (issue 12): after a set change, the
attestations an anchor needs, the anchoring turn, and whose equivocations count are those of the new set.

Ledger-level, in-process, over a MemoryStore (the `Chain` of test_chain_state: real blocks and state)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace

from devnet.add_node import with_submitter
from devnet.remove_node import without_submitter
from ledger.anchor.service import AnchorService
from ledger.anchor.settings import AnchoringSettings
from ledger.api.routes.anchors import anchoring
from ledger.consensus.messages import Commit, Prepare, Vote
from ledger.crypto import SigningKey
from ledger.evidence import KIND, EquivocationEvidence, evidence_count
from ledger.genesis import Genesis
from ledger.validators import ACTIVATION_DELAY, ValidatorAdd, ValidatorRemove
from tests.anchorfake import CONTRACT, FakeChain
from tests.test_anchor_service import _cfg
from tests.test_chain_state import ADMIN, CHAIN, ORG2, VALIDATORS, Chain, make_genesis
from tests.test_evidence import A, B, _pair

V3 = VALIDATORS[3]
NEW = SigningKey.from_seed(b"validator-follow-new")
SUBMITTER = "0x" + "11" * 20


def _changed(kind: str, payload: object, genesis: Genesis | None = None) -> tuple[Chain, int]:
    """A 4-validator chain after one change has taken effect; the change's first height."""
    chain = Chain(genesis or make_genesis(validators=VALIDATORS))
    assert chain.run1(ADMIN, kind, payload) == ""
    active = chain.db.height + ACTIVATION_DELAY
    while chain.db.height + 1 < active:
        chain.run()
    return chain, active


def _service(chain: Chain, key: SigningKey, view: int) -> AnchorService:
    """The anchoring service of validator `key` beside `chain`, in consensus view `view` (the node is the
    service's boundary: its chain is real, its replica only a view number)."""
    node = SimpleNamespace(chain=chain.db, key=key, genesis=chain.genesis, replica=SimpleNamespace(view=view))
    fake = FakeChain()

    async def build() -> AnchorService:  # the service makes its asyncio objects on a running loop
        return AnchorService(node, _cfg(), client_factory=lambda contract, chain_id: fake.client(SUBMITTER))

    return asyncio.run(build())


def test_attestations_needed_follow_f_of_the_new_set() -> None:
    chain, _ = _changed("validator.remove", ValidatorRemove(V3.id))
    # Three validators: f = 0, one attestation makes an anchor effective (four needed two).
    answer = asyncio.run(anchoring(SimpleNamespace(chain=chain.db, genesis=chain.genesis)))  # type: ignore[arg-type]
    assert answer["attestations_needed"] == 1


def test_the_anchoring_turn_rotates_over_the_current_set_only() -> None:
    chain, _ = _changed("validator.remove", ValidatorRemove(V3.id))
    # View 3, nothing anchored: index 3 of four would name the removed validator; of three it wraps to the first.
    status = _service(chain, VALIDATORS[0], view=3).status()
    assert status["designated"] == VALIDATORS[0].id


def test_an_added_validator_takes_its_turn_at_anchoring() -> None:
    chain, _ = _changed("validator.add", ValidatorAdd(NEW.public_key, "10.0.0.5", 7005))
    service = _service(chain, NEW, view=4)
    assert service.current_validators() == [*(k.id for k in VALIDATORS), NEW.id]
    assert service.status()["designated"] == NEW.id


def test_a_removed_validator_neither_attests_nor_anchors() -> None:
    settings = AnchoringSettings(31337, CONTRACT, (SUBMITTER,))  # anchoring configured, as genesis would
    chain, _ = _changed("validator.remove", ValidatorRemove(V3.id),
                        replace(make_genesis(validators=VALIDATORS), anchoring=settings))
    service = _service(chain, V3, view=0)
    asyncio.run(service.step())
    assert service.note is not None and "not in the validator set" in service.note
    assert service.attestations == 0 and service.outgoing.sent == 0


def test_evidence_counts_against_the_set_of_the_slots_height() -> None:
    chain, added_from = _changed("validator.add", ValidatorAdd(NEW.public_key, "10.0.0.5", 7005))
    # The added validator's equivocations count from the height it certifies, not before.
    later = _pair(Prepare(0, added_from, A), Prepare(0, added_from, B), signer=NEW, chain=CHAIN)
    assert chain.run1(ORG2, KIND, EquivocationEvidence(*later)) == ""
    earlier = _pair(Vote(added_from - 1, 0, A), Vote(added_from - 1, 0, B), signer=NEW, chain=CHAIN)
    assert chain.run1(ORG2, KIND, EquivocationEvidence(*earlier)) == "invalid_value"
    assert evidence_count(chain.db.latest, NEW.id) == 1


def test_a_removed_validators_signatures_after_its_removal_are_no_evidence() -> None:
    chain, removed_from = _changed("validator.remove", ValidatorRemove(V3.id))
    before = _pair(Commit(0, removed_from - 1, A), Commit(0, removed_from - 1, B), signer=V3, chain=CHAIN)
    assert chain.run1(ORG2, KIND, EquivocationEvidence(*before)) == ""
    after = _pair(Commit(0, removed_from, A), Commit(0, removed_from, B), signer=V3, chain=CHAIN)
    assert chain.run1(ORG2, KIND, EquivocationEvidence(*after)) == "invalid_value"
    assert evidence_count(chain.db.latest, V3.id) == 1


def test_the_devnet_adds_and_drops_a_submitter_in_the_certified_settings() -> None:
    certified = {"eth_chain_id": 31337, "contract": CONTRACT, "submitters": [SUBMITTER]}
    other = "0x" + "22" * 20
    assert with_submitter(certified, other) == AnchoringSettings(31337, CONTRACT, (SUBMITTER, other))
    assert with_submitter(certified, SUBMITTER) is None and with_submitter(None, other) is None
    both = {**certified, "submitters": [SUBMITTER, other]}
    assert without_submitter(both, SUBMITTER) == AnchoringSettings(31337, CONTRACT, (other,))
    # Not listed, no anchoring, or the last submitter: nothing to send.
    assert without_submitter(certified, other) is None and without_submitter(None, other) is None
    assert without_submitter(certified, SUBMITTER) is None
