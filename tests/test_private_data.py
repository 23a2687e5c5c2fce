"""Private data in the state machine: encryption keys, node organisations, collections, commitments, purges;
the sealed-box helper; the genesis `node_orgs` section (hash and block 0 as a verifier from the page computes).

Ledger-level, in-process (the real state machine and modules over an overlay)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.chaindb import default_modules
from ledger.codec import decode, encode
from ledger.crypto import SigningKey
from ledger.genesis import (
    Genesis,
    GenesisMember,
    GenesisValidator,
    InvalidGenesis,
    check_genesis,
    genesis_state,
)
from ledger.members import lookup_sender
from ledger.private.module import CollectionCreate, EncKeySet, NodeOrgSet, PrivatePurge, PrivatePut
from ledger.private.records import (
    NodeOrg,
    commitment,
    get_collection,
    get_enc_key,
    get_entry,
    get_node_org,
)
from ledger.sealed import SealedBox, SealError, generate_key, open_sealed, seal
from ledger.state import Overlay, StateMachine, TxResult, get_nonce, nonce_key
from ledger.tx import make_tx
from tests.test_proof_vectors import assert_independent_block0

CHAIN = "private-test"
T0 = 1_700_000_000_000
ADMIN, ORG1, ORG2, ORG3 = (SigningKey.from_seed(s) for s in (b"p-admin", b"p-org1", b"p-org2", b"p-org3"))
NODES = [SigningKey.from_seed(f"p-node{i}".encode()) for i in range(3)]


class DictView:
    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)


def private_genesis(node_orgs: tuple[NodeOrg, ...] | None = None) -> Genesis:
    return Genesis(
        CHAIN, T0, tuple(GenesisValidator(f"node{i}", k.public_key) for i, k in enumerate(NODES)),
        members=(GenesisMember("admin", ADMIN.public_key, ("admin",)), GenesisMember("org1", ORG1.public_key, ()),
                 GenesisMember("org2", ORG2.public_key, ()), GenesisMember("org3", ORG3.public_key, ())),
        prefixes=(), node_orgs=node_orgs,
    )


class Ledger:
    def __init__(self, genesis: Genesis | None = None) -> None:
        genesis = genesis or private_genesis()
        self.state = Overlay(DictView(genesis_state(genesis)))
        self.machine = StateMachine(CHAIN, default_modules(genesis), lookup_sender)
        self.height = 0

    def send(self, key: SigningKey, kind: str, payload: Any) -> TxResult:
        self.height += 1
        tx = make_tx(key, CHAIN, get_nonce(self.state, key.id) + 1, kind, payload)
        [result] = self.machine.execute_block(self.state, [encode(tx)], self.height, T0 + self.height,
                                              prev_hash=bytes(32))
        return result

    def ok(self, key: SigningKey, kind: str, payload: Any) -> None:
        result = self.send(key, kind, payload)
        assert result.ok, (result.reason, result.message)

    def refused(self, key: SigningKey, kind: str, payload: Any, reason: str) -> None:
        before = dict(self.state.changes)
        result = self.send(key, kind, payload)
        assert (result.ok, result.reason) == (False, reason), result.message
        changed = {k for k in set(before) | set(self.state.changes) if before.get(k) != self.state.changes.get(k)}
        assert changed <= {nonce_key(key.id)}, changed


# --- the sealed box ------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=2048), st.binary(max_size=64), st.integers(1, 3))
def test_a_sealed_box_opens_for_each_recipient_and_gives_the_plaintext(plaintext: bytes, associated: bytes,
                                                                      recipients: int) -> None:
    keys = [generate_key() for _ in range(recipients)]
    sealed = seal(plaintext, [public for _, public in keys], associated)
    for private, _ in keys:
        assert open_sealed(sealed, private, associated) == plaintext
    assert plaintext not in sealed or len(plaintext) < 4  # short strings may occur by chance


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=512), st.data())
def test_a_sealed_box_altered_anywhere_does_not_open(plaintext: bytes, data: st.DataObject) -> None:
    private, public = generate_key()
    box = decode(SealedBox, seal(plaintext, [public], b"terms"))
    part = data.draw(st.sampled_from(["ciphertext", "nonce", "wrapped_key", "ephemeral", "wrap_nonce"]))
    wrap = box.wraps[0]
    fields = {"ciphertext": box.ciphertext, "nonce": box.nonce, "wrapped_key": wrap.wrapped_key,
              "ephemeral": wrap.ephemeral, "wrap_nonce": wrap.nonce}
    target = fields[part]
    i = data.draw(st.integers(0, len(target) - 1))
    fields[part] = target[:i] + bytes([target[i] ^ 1]) + target[i + 1:]
    altered = SealedBox(
        (type(wrap)(wrap.recipient, fields["ephemeral"], fields["wrap_nonce"], fields["wrapped_key"]),),
        fields["nonce"], fields["ciphertext"])
    with pytest.raises(SealError):
        open_sealed(encode(altered), private, b"terms")


def test_a_sealed_box_does_not_open_with_other_associated_data_or_another_key() -> None:
    private, public = generate_key()
    other, _ = generate_key()
    sealed = seal(b"price 100", [public], b"offer-1")
    with pytest.raises(SealError):
        open_sealed(sealed, private, b"offer-2")
    with pytest.raises(SealError, match="not addressed"):
        open_sealed(sealed, other, b"offer-1")


# --- members' encryption keys ----------------------------------------------------------------------------


def test_a_member_registers_its_encryption_key_and_a_malformed_one_is_refused() -> None:
    ledger = Ledger()
    _, public = generate_key()
    ledger.ok(ORG1, "member.enc_key", EncKeySet(public))
    assert get_enc_key(ledger.state, ORG1.id) == public
    ledger.refused(ORG1, "member.enc_key", EncKeySet(b"short"), "invalid_value")
    assert get_enc_key(ledger.state, ORG2.id) is None


# --- node organisations and the genesis section ------------------------------------------------------------


def test_genesis_names_node_organisations_and_an_admin_action_changes_them() -> None:
    ledger = Ledger(private_genesis((NodeOrg(NODES[1].id, "org1"),)))
    assert get_node_org(ledger.state, NODES[1].id) == ORG1.id
    assert get_node_org(ledger.state, NODES[2].id) is None
    ledger.ok(ADMIN, "node.org", NodeOrgSet(NODES[2].id, "org2"))
    assert get_node_org(ledger.state, NODES[2].id) == ORG2.id
    ledger.refused(ORG1, "node.org", NodeOrgSet(NODES[0].id, "org1"), "unauthorized")
    ledger.refused(ADMIN, "node.org", NodeOrgSet(NODES[0].id, "nobody"), "not_found")
    ledger.refused(ADMIN, "node.org", NodeOrgSet("node0", "org1"), "invalid_value")


def test_a_genesis_naming_an_unknown_organisation_or_a_node_twice_is_refused() -> None:
    with pytest.raises(InvalidGenesis, match="not a genesis member"):
        check_genesis(private_genesis((NodeOrg(NODES[0].id, "org9"),)))
    with pytest.raises(InvalidGenesis, match="twice"):
        check_genesis(private_genesis((NodeOrg(NODES[0].id, "org1"), NodeOrg(NODES[0].id, "org2"))))


def test_without_node_orgs_the_genesis_hashes_as_before_and_with_them_a_verifier_from_the_page_agrees(
        tmp_path: Path) -> None:
    without = private_genesis()
    fields = [without.chain_id, without.timestamp, without.validators, without.members, without.prefixes]
    from ledger.crypto import sha256
    assert without.hash() == sha256(encode(fields))  # the five original fields only
    with_orgs = private_genesis((NodeOrg(NODES[0].id, "org1"), NodeOrg(NODES[1].id, "org2")))
    assert with_orgs.hash() != without.hash()
    for genesis in (without, with_orgs):
        assert_independent_block0(genesis, tmp_path)


# --- collections, commitments, purges ----------------------------------------------------------------------


def with_collection() -> Ledger:
    ledger = Ledger()
    ledger.ok(ADMIN, "collection.create", CollectionCreate("deals", ("org2", "org1")))
    return ledger


def test_an_admin_creates_a_collection_of_member_organisations() -> None:
    ledger = with_collection()
    collection = get_collection(ledger.state, "deals")
    assert collection is not None and collection.members == tuple(sorted((ORG1.id, ORG2.id)))
    ledger.refused(ORG1, "collection.create", CollectionCreate("mine", ("org1",)), "unauthorized")
    ledger.refused(ADMIN, "collection.create", CollectionCreate("deals", ("org3",)), "already_exists")
    ledger.refused(ADMIN, "collection.create", CollectionCreate("bad/name", ("org1",)), "invalid_value")
    ledger.refused(ADMIN, "collection.create", CollectionCreate("empty", ()), "invalid_value")
    ledger.refused(ADMIN, "collection.create", CollectionCreate("ghosts", ("org9",)), "not_found")


def test_a_member_commits_to_private_data_and_only_the_commitment_is_state() -> None:
    ledger = with_collection()
    salt, value = bytes(range(32)), b"price: 1234 EUR"
    digest = commitment("deals", "k1", salt, value)
    ledger.ok(ORG1, "private.put", PrivatePut("deals", "k1", digest))
    entry = get_entry(ledger.state, "deals", "k1")
    assert entry is not None and (entry.commitment, entry.writer, entry.purged) == (digest, ORG1.id, False)
    assert not any(value in v for v in ledger.state.changes.values() if v is not None)
    ledger.refused(ORG3, "private.put", PrivatePut("deals", "k2", digest), "unauthorized")
    ledger.refused(ORG1, "private.put", PrivatePut("nowhere", "k2", digest), "not_found")
    ledger.refused(ORG1, "private.put", PrivatePut("deals", "k2", b"short"), "invalid_value")


def test_a_member_purges_an_entry_whose_commitment_stays() -> None:
    ledger = with_collection()
    digest = commitment("deals", "k1", bytes(32), b"v")
    ledger.ok(ORG1, "private.put", PrivatePut("deals", "k1", digest))
    ledger.refused(ORG3, "private.purge", PrivatePurge("deals", "k1"), "unauthorized")
    ledger.ok(ORG2, "private.purge", PrivatePurge("deals", "k1"))
    entry = get_entry(ledger.state, "deals", "k1")
    assert entry is not None and entry.purged and entry.commitment == digest
    ledger.refused(ORG2, "private.purge", PrivatePurge("deals", "k1"), "inactive")
    # A purged key takes a new value; a live one does not (its old bytes would outlive any purge).
    again = commitment("deals", "k1", bytes(32), b"v2")
    ledger.ok(ORG1, "private.put", PrivatePut("deals", "k1", again))
    ledger.refused(ORG1, "private.put", PrivatePut("deals", "k1", digest), "already_exists")
    ledger.refused(ORG2, "private.purge", PrivatePurge("deals", "k9"), "not_found")


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=64), st.binary(min_size=32, max_size=32))
def test_the_commitment_binds_the_value_and_the_salt(a: bytes, b: bytes, salt: bytes) -> None:
    if a != b:
        assert commitment("c", "k", salt, a) != commitment("c", "k", salt, b)
    assert commitment("c", "k", salt, a) != commitment("c", "k", bytes(a ^ 0xFF for a in salt), a)
    assert commitment("c", "k", salt, a) != commitment("c", "k2", salt, a)


# --- signed reads ------------------------------------------------------------------------------------------


def test_a_read_request_counts_once_within_its_time_for_its_entry_and_signer_only() -> None:
    from ledger.private.reads import MAX_SKEW_MS, ReadChecker, sign_read

    now = T0
    checker = ReadChecker(CHAIN)
    token = sign_read(ORG1, ORG1.id, CHAIN, "deals", "k1", now)
    assert checker.problem(token, ORG2.public_key, ORG1.id, "deals", "k1", now) is not None  # another key
    assert checker.problem(token, ORG1.public_key, ORG1.id, "deals", "k2", now) is not None  # another entry
    assert checker.problem(token, ORG1.public_key, ORG1.id, "deals", "k1", now + MAX_SKEW_MS + 1) is not None
    assert checker.problem(token, ORG1.public_key, ORG1.id, "deals", "k1", now) is None
    assert "used already" in (checker.problem(token, ORG1.public_key, ORG1.id, "deals", "k1", now + 1) or "")
    other_chain = sign_read(ORG1, ORG1.id, "other", "deals", "k1", now)
    assert checker.problem(other_chain, ORG1.public_key, ORG1.id, "deals", "k1", now) is not None
    assert checker.problem(None, ORG1.public_key, ORG1.id, "deals", "k1", now) is not None
    assert checker.problem("12.zz", ORG1.public_key, ORG1.id, "deals", "k1", now) == "the read request is malformed"
