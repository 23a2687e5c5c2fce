"""Anchors that take a quorum, in the state machine: f+1 alike attestations make an anchor effective; one
lying validator's never do; the root must be the ledger's own block hash; the chain, contract and submitter
must be the certified ones (genesis `anchoring`, changed only through governance).

In process over a MemoryStore (the `Chain` of test_chain_state: real blocks, certificates, state roots)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.anchor.records import (
    AnchorRecord,
    get_anchor_record,
    get_votes,
    latest_effective_height,
    recorded_block_hash,
)
from ledger.anchor.settings import AnchoringSettings
from ledger.anchor.settings import get_settings as get_anchoring
from ledger.chaindb import ChainDB
from ledger.crypto import SigningKey, sha256
from ledger.genesis import Genesis, GenesisMember, InvalidGenesis, load_genesis, save_genesis
from ledger.governance import GovernanceSettings, ProposalVote, compute_proposal_id
from ledger.resolver.registry import IdRegister, PrefixCreate
from ledger.store import MemoryStore
from ledger.tx import compute_tx_id
from tests.test_chain_state import ADMIN, ORG1, URL, Chain, make_genesis

SEVEN = [SigningKey.from_seed(f"attest-validator-{i}".encode()) for i in range(7)]
FOUR = SEVEN[:4]
CONTRACT = "0x" + "c0" * 20
OTHER_CONTRACT = "0x" + "66" * 20
SUBMITTERS = tuple("0x" + f"{i:02x}" * 20 for i in range(1, 5))
ANCHORING = AnchoringSettings(31337, CONTRACT, SUBMITTERS)
ADMIN2 = SigningKey.from_seed(b"attest-admin-2")


def genesis(validators: list[SigningKey] = FOUR, anchoring: AnchoringSettings | None = ANCHORING,
            governance: GovernanceSettings | None = None) -> Genesis:
    base = make_genesis(validators=validators, prefixes=(("88", ORG1),))
    members = base.members
    if governance is not None:
        members = (*members, GenesisMember("admin2", ADMIN2.public_key, ("admin",)))
    return replace(base, members=members, governance=governance, anchoring=anchoring)


class AnchorChain(Chain):
    def __init__(self, validators: list[SigningKey] = FOUR, **kw: object) -> None:
        super().__init__(genesis(validators, **kw))  # type: ignore[arg-type]
        self.validators = validators

    def work(self, n: int = 1) -> int:
        """n blocks of ordinary work; the head height."""
        for _ in range(n):
            name = f"88/w{self.db.height}"
            assert self.run1(ORG1, "id.register", IdRegister(name, URL)) == ""
        return self.db.height

    def block_hash(self, height: int) -> bytes:
        block = self.db.get_block(height)
        assert block is not None
        from ledger.chain import compute_block_hash

        return compute_block_hash(block.header)

    def claim(self, height: int, **changes: object) -> AnchorRecord:
        base = AnchorRecord(height, self.block_hash(height), 31337, CONTRACT, sha256(b"tx%d" % height), 100 + height,
                            SUBMITTERS[0])
        return replace(base, **changes)  # type: ignore[arg-type]

    def attest(self, key: SigningKey, claim: AnchorRecord) -> str:
        return self.run1(key, "anchor.attest", claim)


def test_f_plus_1_matching_attestations_make_an_anchor_effective() -> None:
    c = AnchorChain()
    h = c.work(3)
    claim = c.claim(h)
    assert c.attest(FOUR[0], claim) == ""
    # One attestation is a vote, nothing more: no effective record, anchor/latest unmoved.
    assert get_anchor_record(c.db.latest, h) is None and latest_effective_height(c.db.latest) == 0
    assert [v.validator for v in get_votes(c.db.latest, h)] == [FOUR[0].id]
    assert c.attest(FOUR[1], claim) == ""  # f+1 = 2 of 4
    assert get_anchor_record(c.db.latest, h) == claim
    assert latest_effective_height(c.db.latest) == h
    assert get_votes(c.db.latest, h) == ()  # the votes are settled
    # The height is done: later attestations of it, or of lower heights, are refused.
    assert c.attest(FOUR[2], claim) == "already_exists"
    assert c.attest(FOUR[2], c.claim(h - 1)) == "already_exists"


def test_one_lying_validator_never_makes_an_anchor_take_effect() -> None:
    c = AnchorChain()
    liar = FOUR[3]
    for h in range(1, 6):
        c.work()
        # Every kind of lie one validator can tell, again and again: each is at most one vote.
        fake_tx = c.claim(h, tx_hash=sha256(b"never sent"), eth_block=999)
        assert c.attest(liar, fake_tx) == ""
        assert c.attest(liar, fake_tx) == ""
        assert c.attest(liar, c.claim(h, submitter=SUBMITTERS[3], eth_block=7)) == ""
        assert c.attest(liar, c.claim(h, contract=OTHER_CONTRACT)) == "invalid_value"
        assert c.attest(liar, c.claim(h, block_hash=sha256(b"not our block"))) == "invalid_value"
        # a height whose block is not committed yet (the liar's own proposal, say)
        assert c.attest(liar, replace(c.claim(h), height=c.db.height + 1)) == "invalid_value"
    view = c.db.latest
    assert latest_effective_height(view) == 0
    assert all(get_anchor_record(view, h) is None for h in range(1, c.db.height + 1))
    assert all(len(get_votes(view, h)) <= 1 for h in range(1, c.db.height + 1))
    # An honest validator's attestation of the genuine anchor takes effect with any other honest one's.
    h = c.work()
    genuine = c.claim(h)
    assert c.attest(FOUR[0], genuine) == "" and c.attest(FOUR[1], genuine) == ""
    assert latest_effective_height(c.db.latest) == h


def test_a_hash_that_is_not_the_ledgers_block_hash_is_refused() -> None:
    c = AnchorChain()
    h = c.work(2)
    for key in FOUR[:3]:  # however many validators attest it
        assert c.attest(key, c.claim(h, block_hash=c.block_hash(h - 1))) == "invalid_value"
    assert get_votes(c.db.latest, h) == () and latest_effective_height(c.db.latest) == 0
    # The state machine knows each block's hash: every block records its parent's.
    assert recorded_block_hash(c.db.latest, h) == c.block_hash(h)
    assert recorded_block_hash(c.db.latest, 0) == c.block_hash(0)


def test_a_contract_chain_or_submitter_not_certified_is_refused() -> None:
    c = AnchorChain()
    h = c.work(2)
    for bad in (c.claim(h, contract=OTHER_CONTRACT), c.claim(h, eth_chain_id=1),
                c.claim(h, contract=CONTRACT.upper().replace("0X", "0x")),  # one address, one written form
                c.claim(h, submitter="0x" + "99" * 20)):
        for key in FOUR:
            assert c.attest(key, bad) == "invalid_value", bad
    assert get_votes(c.db.latest, h) == () and latest_effective_height(c.db.latest) == 0


def test_only_validators_attest() -> None:
    c = AnchorChain()
    h = c.work()
    assert c.attest(ORG1, c.claim(h)) == "unauthorized"
    assert c.attest(ADMIN, c.claim(h)) == "unauthorized"


def test_a_later_vote_replaces_an_earlier_one_and_split_votes_converge() -> None:
    c = AnchorChain()
    h = c.work(2)
    first, moved = c.claim(h), c.claim(h, eth_block=500)  # the same transaction, after a reorg moved it
    assert c.attest(FOUR[0], first) == ""
    assert c.attest(FOUR[1], moved) == ""
    assert latest_effective_height(c.db.latest) == 0  # one vote each
    assert c.attest(FOUR[0], moved) == ""  # validator 0 reads it again: the transaction is in block 500 now
    assert get_anchor_record(c.db.latest, h) == moved


def test_a_ledger_without_anchoring_settings_refuses_attestations_and_keeps_no_block_hashes() -> None:
    c = AnchorChain(anchoring=None)
    h = c.work(2)
    assert c.attest(FOUR[0], c.claim(h)) == "inactive"
    assert recorded_block_hash(c.db.latest, h) is None and get_anchoring(c.db.latest) is None


def test_anchoring_settings_change_only_by_governance() -> None:
    c = AnchorChain(governance=GovernanceSettings(2, 3_600_000))
    h = c.work(2)
    new = AnchoringSettings(11155111, OTHER_CONTRACT, SUBMITTERS[:3])
    # A validator, or a member who is no admin, cannot change them.
    assert c.run1(FOUR[0], "anchor.settings", new) == "unauthorized"
    assert c.run1(ORG1, "anchor.settings", new) == "unauthorized"
    # One admin of two needed makes a proposal; nothing changes yet.
    raw = c.tx(ADMIN, "anchor.settings", new)
    assert c.run(raw) == [""]
    assert get_anchoring(c.db.latest) == ANCHORING
    assert c.attest(FOUR[0], c.claim(h, eth_chain_id=11155111, contract=OTHER_CONTRACT)) == "invalid_value"
    # A malformed setting is refused when proposed.
    assert c.run1(ADMIN2, "anchor.settings", replace(new, contract=new.contract.upper())) == "invalid_value"
    # The second admin's approval runs it: from then on the new contract is the certified one.
    assert c.run1(ADMIN2, "governance.approve", ProposalVote(compute_proposal_id(compute_tx_id(raw)))) == ""
    assert get_anchoring(c.db.latest) == new
    h = c.work()
    moved = c.claim(h, eth_chain_id=11155111, contract=OTHER_CONTRACT)
    assert c.attest(FOUR[0], c.claim(h)) == "invalid_value"  # the old contract no longer counts
    assert c.attest(FOUR[0], moved) == "" and c.attest(FOUR[1], moved) == ""
    assert get_anchor_record(c.db.latest, h) == moved


def test_a_plain_ledger_sets_anchoring_with_one_admin_command() -> None:
    c = AnchorChain(anchoring=None)
    c.work()
    assert c.run1(ADMIN, "anchor.settings", ANCHORING) == ""
    assert get_anchoring(c.db.latest) == ANCHORING
    h = c.work()  # block hashes are kept from the first block after the settings
    assert c.attest(FOUR[0], c.claim(h)) == "" and c.attest(FOUR[2], c.claim(h)) == ""
    assert latest_effective_height(c.db.latest) == h
    assert c.attest(FOUR[0], c.claim(1)) == "already_exists"


def test_followers_re_execute_attested_blocks_to_the_same_header() -> None:
    c = AnchorChain()
    h = c.work(2)
    follower = ChainDB(MemoryStore(), c.genesis)
    for height in range(1, c.db.height + 1):
        block = c.db.get_block(height)
        assert block is not None
        follower.commit(follower.execute_block(block), c.db.get_certificate(height))  # type: ignore[arg-type]
    for key in FOUR[:2]:
        executed = c.build([c.tx(key, "anchor.attest", c.claim(h))])
        c.commit(executed)
        replayed = follower.execute_block(executed.block)
        assert replayed.block.header == executed.block.header
        follower.commit(replayed, c.db.get_certificate(c.db.height))  # type: ignore[arg-type]
    assert get_anchor_record(follower.latest, h) == c.claim(h)


def test_genesis_anchoring_section(tmp_path: Path) -> None:
    plain = make_genesis(validators=FOUR)
    with_section = replace(plain, anchoring=ANCHORING)
    path = tmp_path / "genesis.json"
    save_genesis(with_section, path)
    doc = json.loads(path.read_text())
    assert doc["anchoring"] == {"eth_chain_id": 31337, "contract": CONTRACT, "submitters": list(SUBMITTERS)}
    assert "governance" not in doc
    assert load_genesis(path) == with_section
    # A file without the section hashes as it always did; with it, as the longer record (governance null).
    from ledger.codec import encode, to_plain

    five = [getattr(plain, f) for f in ("chain_id", "timestamp", "validators", "members", "prefixes")]
    assert plain.hash() == sha256(encode(five))
    assert with_section.hash() == sha256(encode([*five, None, ANCHORING]))
    assert to_plain(with_section)["anchoring"]["contract"] == CONTRACT
    # Block 0 of the section holds the settings; without it, no anchoring key at all.
    assert get_anchoring(ChainDB(MemoryStore(), with_section).latest) == ANCHORING
    assert get_anchoring(ChainDB(MemoryStore(), plain).latest) is None
    for bad in (replace(ANCHORING, contract="0x5FbDB2315678afecb367f032d93F642f64180aa3"),
                replace(ANCHORING, submitters=()), replace(ANCHORING, submitters=SUBMITTERS[:1] * 2),
                replace(ANCHORING, eth_chain_id=0)):
        save_genesis(replace(plain, anchoring=bad), path)
        with pytest.raises(InvalidGenesis, match="anchoring"):
            load_genesis(path)


# --- properties ---------------------------------------------------------------------------------------------

LIES = st.sampled_from(["genuine", "tx", "block", "submitter", "contract", "root", "height"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([0, 1]), st.integers(1, 4), LIES), min_size=1, max_size=24))
def test_f_validators_never_make_an_anchor_take_effect_whatever_they_send(
        moves: list[tuple[int, int, str]]) -> None:
    """Seven validators, f = 2 of them liars sending any mix of attestations, genuine or not: no anchor ever
    takes effect without an honest validator's attestation (here there is none)."""
    c = AnchorChain(validators=SEVEN)
    c.work(4)
    liars = SEVEN[5:]
    for who, height, lie in moves:
        claim = c.claim(height)
        claim = {
            "genuine": claim, "tx": replace(claim, tx_hash=sha256(b"x")), "block": replace(claim, eth_block=1),
            "submitter": replace(claim, submitter=SUBMITTERS[3]), "contract": replace(claim, contract=OTHER_CONTRACT),
            "root": replace(claim, block_hash=hashlib.sha256(b"r").digest()), "height": replace(claim, height=99),
        }[lie]
        c.attest(liars[who], claim)
        assert latest_effective_height(c.db.latest) == 0
    assert all(get_anchor_record(c.db.latest, h) is None for h in range(1, c.db.height + 1))


def test_prefix_work_is_not_needed_for_anchoring() -> None:
    """(A ledger with nothing but anchoring in it still keeps block hashes and takes attestations.)"""
    c = AnchorChain()
    assert c.run1(ADMIN, "prefix.create", PrefixCreate("77", ORG1.id)) == ""
    assert c.attest(FOUR[0], c.claim(1)) == "" and c.attest(FOUR[1], c.claim(1)) == ""
    assert latest_effective_height(c.db.latest) == 1


def test_attestations_count_against_the_validator_set_in_force() -> None:
    from ledger.anchor.records import AnchorModule

    c = AnchorChain()
    (module,) = [m for m in c.db.machine.block_hooks if isinstance(m, AnchorModule)]
    h = c.work(2)
    claim = c.claim(h)
    assert c.attest(FOUR[0], claim) == ""
    # The set in force changes (as a governance set change will make it): FOUR[0] leaves and a newcomer joins
    # (still 4, f+1 = 2), so FOUR[0]'s vote no longer counts and one more vote is not f+1.
    module.validators_at = lambda view, height: {k.id for k in FOUR[1:]} | {SEVEN[4].id}
    assert c.attest(FOUR[1], claim) == ""
    assert get_anchor_record(c.db.latest, h) is None
    assert [v.validator for v in get_votes(c.db.latest, h)] == [FOUR[1].id]
    assert c.attest(FOUR[2], claim) == ""
    assert get_anchor_record(c.db.latest, h) == claim
