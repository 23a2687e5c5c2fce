"""Certificates, the chain database, state proofs, transactions and the state modules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.chain import (
    Block,
    BlockHeader,
    CommitCertificate,
    CommitVote,
    InvalidBlock,
    ValidatorSignature,
    check_certificate,
    compute_block_hash,
    compute_commit_vote,
    is_valid_certificate,
)
from ledger.chaindb import ChainDB, ExecutedBlock, GenesisMismatch
from ledger.codec import encode
from ledger.consensus.actions import Broadcast, Deliver
from ledger.consensus.messages import (
    Commit,
    Prepare,
    PrePrepare,
    Vote,
    decode_body,
    decode_envelope,
    encode_envelope,
    sign_message,
)
from ledger.consensus.replica import Replica
from ledger.consensus.settings import ReplicaConfig
from ledger.crypto import DOMAIN_COMMIT, DOMAIN_PREPARE, DOMAIN_TX, SigningKey
from ledger.genesis import Genesis, GenesisMember, GenesisPrefix, GenesisValidator
from ledger.ledger_app import LedgerApp
from ledger.members import (
    MemberAdd,
    MemberRemove,
    MemberRotateKey,
    MemberSetRoles,
    get_member,
    member_key,
)
from ledger.resolver.registry import (
    IdDelete,
    IdRegister,
    IdUpdate,
    PrefixCreate,
    ValueSpec,
    get_identifier,
    get_prefix,
    identifier_key,
)
from ledger.smt import EMPTY, SparseMerkleTree, verify_proof
from ledger.state import VerifiedCache, get_nonce, nonce_key
from ledger.store import NS, MemoryStore, Store
from ledger.tx import SignedTx, TxBody, make_tx

CHAIN = "test-chain"
T0 = 1_700_000_000_000

VALIDATORS = [SigningKey.from_seed(f"validator-{i}".encode()) for i in range(4)]
V0 = VALIDATORS[0]
ADMIN = SigningKey.from_seed(b"admin")
ORG1 = SigningKey.from_seed(b"org1")
ORG2 = SigningKey.from_seed(b"org2")
OUTSIDER = SigningKey.from_seed(b"outsider")
NEWCOMER = SigningKey.from_seed(b"newcomer")

URL = (ValueSpec(1, "URL", "https://example.org/a"),)

ENVELOPE_REASONS = {
    "malformed", "oversized", "wrong_chain", "unknown_kind", "invalid_payload", "unknown_sender",
    "bad_signature", "replayed_nonce", "nonce_gap",
}
HANDLER_REASONS = {"unauthorized", "not_found", "already_exists", "invalid_value"}


def make_genesis(
    validators: Sequence[SigningKey] = (V0,),
    prefixes: Sequence[tuple[str, SigningKey]] = (),
    chain_id: str = CHAIN,
    timestamp: int = T0,
) -> Genesis:
    return Genesis(
        chain_id,
        timestamp,
        validators=tuple(GenesisValidator(f"v{i}", k.public_key) for i, k in enumerate(validators)),
        members=(
            GenesisMember("admin", ADMIN.public_key, ("admin",)),
            GenesisMember("org1", ORG1.public_key, ("registrar",)),
            GenesisMember("org2", ORG2.public_key, ()),
        ),
        prefixes=tuple(GenesisPrefix(p, k.id) for p, k in prefixes),
    )


def sign_cert(
    chain_id: str, header: BlockHeader, signers: Sequence[SigningKey], domain: bytes = DOMAIN_COMMIT
) -> CommitCertificate:
    """A certificate as the replica builds it: commit votes, sorted by validator id."""
    vote = compute_commit_vote(chain_id, header)
    sigs = sorted(
        (ValidatorSignature(k.id, k.sign(domain, vote)) for k in signers), key=lambda s: s.validator
    )
    return CommitCertificate(header.height, header.view, vote.block_hash, tuple(sigs))


def signed_as(sender: str, signer: SigningKey, nonce: int, kind: str, payload: Any, chain_id: str = CHAIN) -> bytes:
    """A tx naming `sender` but signed by `signer` (rotated keys, forgeries)."""
    body = TxBody(chain_id, kind, sender, nonce, encode(payload))
    return encode(SignedTx(chain_id, kind, sender, nonce, body.payload, signer.sign(DOMAIN_TX, body)))


class Chain:
    """A ChainDB over a MemoryStore, committing blocks certified by the single validator; it keeps
    the verifications of its executions, as a node's does."""

    def __init__(self, genesis: Genesis | None = None, store: Store | None = None) -> None:
        self.genesis = genesis or make_genesis(prefixes=(("88", ORG1),))
        self.db = ChainDB(store if store is not None else MemoryStore(), self.genesis, verified=VerifiedCache(10_000))

    def nonce(self, key: SigningKey) -> int:
        return get_nonce(self.db.latest, key.id) + 1

    def tx(self, key: SigningKey, kind: str, payload: Any, nonce: int | None = None) -> bytes:
        return encode(make_tx(key, CHAIN, self.nonce(key) if nonce is None else nonce, kind, payload))

    def build(self, raws: Sequence[bytes]) -> ExecutedBlock:
        return self.db.build_block(list(raws), view=0, timestamp=self.db.head.timestamp + 1000, proposer=V0.id)

    def commit(self, executed: ExecutedBlock) -> None:
        self.db.commit(executed, sign_cert(CHAIN, executed.block.header, [V0]))

    def run(self, *raws: bytes) -> list[str]:
        """Commit one block of `raws`; the reasons ('' for success), in order."""
        executed = self.build(raws)
        self.commit(executed)
        return [r.reason for r in executed.results]

    def run1(self, key: SigningKey, kind: str, payload: Any, nonce: int | None = None) -> str:
        return self.run(self.tx(key, kind, payload, nonce))[0]


@pytest.fixture
def chain() -> Chain:
    return Chain()


# === certificates ==============================================================================


@pytest.fixture
def four() -> tuple[Genesis, BlockHeader, dict[str, bytes]]:
    genesis = make_genesis(validators=VALIDATORS)
    db = ChainDB(MemoryStore(), genesis)
    executed = db.build_block([], view=2, timestamp=T0 + 1, proposer=V0.id)
    return genesis, executed.block.header, genesis.validator_keys()


def test_quorum_certificate_is_accepted(four: tuple[Genesis, BlockHeader, dict[str, bytes]]) -> None:
    _, header, validators = four
    for signers in (VALIDATORS[:3], VALIDATORS[1:], VALIDATORS):
        cert = sign_cert(CHAIN, header, signers)
        check_certificate(cert, CHAIN, header, validators)
        assert is_valid_certificate(cert, CHAIN, header, validators)


def _resign(cert: CommitCertificate, sigs: Sequence[ValidatorSignature]) -> CommitCertificate:
    return replace(cert, signatures=tuple(sigs))


def test_certificate_rejections(four: tuple[Genesis, BlockHeader, dict[str, bytes]]) -> None:
    _, header, validators = four
    good = sign_cert(CHAIN, header, VALIDATORS[:3])
    sigs = list(good.signatures)
    outsider_sig = sign_cert(CHAIN, header, [OUTSIDER]).signatures[0]
    flipped = bytearray(sigs[1].signature)
    flipped[5] ^= 1
    other_header = replace(header, timestamp=header.timestamp + 1)
    cases: dict[str, tuple[CommitCertificate, str]] = {
        "two of four": (sign_cert(CHAIN, header, VALIDATORS[:2]), "quorum"),
        "no signatures": (_resign(good, []), "quorum"),
        "duplicate signer": (_resign(good, [sigs[0], sigs[0], sigs[1]]), "duplicated or unsorted"),
        "duplicate signer reaching four": (_resign(good, sorted([*sigs, sigs[2]], key=lambda s: s.validator)),
                                           "duplicated or unsorted"),
        "unsorted signers": (_resign(good, list(reversed(sigs))), "duplicated or unsorted"),
        "non-validator signer": (
            _resign(good, sorted([*sigs[:2], outsider_sig], key=lambda s: s.validator)), "non-validator"),
        "non-validator added to a quorum": (
            _resign(good, sorted([*sigs, outsider_sig], key=lambda s: s.validator)), "non-validator"),
        "bad signature": (_resign(good, [sigs[0], replace(sigs[1], signature=bytes(flipped)), sigs[2]]),
                          "bad commit signature"),
        "signature by another validator's key": (
            _resign(good, [sigs[0], replace(sigs[1], signature=sigs[2].signature), sigs[2]]), "bad commit signature"),
        "another block": (sign_cert(CHAIN, other_header, VALIDATORS[:3]), "does not name this block"),
        "another height": (replace(good, height=header.height + 1), "does not name this block"),
        "another view": (replace(good, view=header.view + 1), "does not name this block"),
        "another domain": (sign_cert(CHAIN, header, VALIDATORS[:3], domain=DOMAIN_PREPARE), "bad commit signature"),
        "another chain id": (sign_cert("other-chain", header, VALIDATORS[:3]), "bad commit signature"),
    }
    for name, (cert, message) in cases.items():
        with pytest.raises(InvalidBlock, match=message):
            check_certificate(cert, CHAIN, header, validators)
        assert not is_valid_certificate(cert, CHAIN, header, validators), name


def test_votes_for_another_view_do_not_certify(four: tuple[Genesis, BlockHeader, dict[str, bytes]]) -> None:
    """Signatures over the same block hash but a different view in the vote do not count."""
    _, header, validators = four
    vote = CommitVote(CHAIN, header.height, header.view + 1, compute_block_hash(header))
    sigs = sorted((ValidatorSignature(k.id, k.sign(DOMAIN_COMMIT, vote)) for k in VALIDATORS[:3]),
                  key=lambda s: s.validator)
    cert = CommitCertificate(header.height, header.view, compute_block_hash(header), tuple(sigs))
    with pytest.raises(InvalidBlock, match="bad commit signature"):
        check_certificate(cert, CHAIN, header, validators)


# === ChainDB ===================================================================================


def test_genesis_block_is_deterministic() -> None:
    a = ChainDB(MemoryStore(), make_genesis(prefixes=(("88", ORG1),)))
    b = ChainDB(MemoryStore(), make_genesis(prefixes=(("88", ORG1),)))
    assert a.height == b.height == 0
    assert a.head_hash == b.head_hash
    assert a.head.state_root == b.head.state_root
    assert a.head.prev_hash == make_genesis(prefixes=(("88", ORG1),)).hash()
    # The genesis state is there: members and the initial prefix.
    assert get_member(a.latest, ADMIN.id) is not None
    assert get_prefix(a.latest, "88") is not None and get_prefix(a.latest, "88").owner == ORG1.id  # type: ignore[union-attr]
    # A different genesis gives a different block 0.
    c = ChainDB(MemoryStore(), make_genesis(prefixes=(("88", ORG2),)))
    assert c.head_hash != a.head_hash and c.head.state_root != a.head.state_root
    d = ChainDB(MemoryStore(), make_genesis(prefixes=(("88", ORG1),), timestamp=T0 + 1))
    assert d.head_hash != a.head_hash


def test_reopening_with_another_genesis_raises() -> None:
    store = MemoryStore()
    ChainDB(store, make_genesis())
    with pytest.raises(GenesisMismatch):
        ChainDB(store, make_genesis(chain_id="other-chain"))
    with pytest.raises(GenesisMismatch):
        ChainDB(store, make_genesis(validators=VALIDATORS[:2]))


def test_reopening_a_store_restores_the_head(chain: Chain) -> None:
    chain.run(chain.tx(ORG1, "id.register", IdRegister("88/a", URL)))
    chain.run(chain.tx(ORG1, "id.register", IdRegister("88/b", URL)))
    reopened = ChainDB(chain.db.store, chain.genesis)
    assert reopened.height == 2
    assert reopened.head_hash == chain.db.head_hash
    assert reopened.history.root() == chain.db.history.root()
    # The reopened db extends the chain exactly like the original would.
    raws = [encode(make_tx(ORG1, CHAIN, 3, "id.register", IdRegister("88/c", URL)))]
    a = chain.db.build_block(raws, view=0, timestamp=T0 + 10_000, proposer=V0.id)
    b = reopened.build_block(raws, view=0, timestamp=T0 + 10_000, proposer=V0.id)
    assert encode(a.block) == encode(b.block)


def test_a_reopened_store_reads_the_top_of_its_state_tree_once_and_then_builds_without_it(chain: Chain) -> None:
    chain.run(*[chain.tx(ORG1, "id.register", IdRegister(f"88/w{i}", URL), nonce=i + 1) for i in range(40)])
    reads: list[bytes] = []

    class Counting(MemoryStore):
        def get(self, key: bytes) -> bytes | None:
            if key.startswith((NS.STATE_NODE, NS.STATE_NODE_AT)):
                reads.append(key)
            return super().get(key)

    store = Counting()
    store.write_batch(list(chain.db.store.iterate(b"")))
    reopened = ChainDB(store, chain.genesis)
    reads.clear()
    warmed = reopened.warm_state_tree()
    assert warmed == len(reads) == len(set(reads)) > 40  # every node of this small tree, once
    top = set(reads)
    reads.clear()
    raws = [encode(make_tx(ORG1, CHAIN, 41, "id.register", IdRegister("88/after", URL)))]
    built = reopened.build_block(raws, view=0, timestamp=T0 + 10_000, proposer=V0.id)
    assert built.block == chain.db.build_block(raws, view=0, timestamp=T0 + 10_000, proposer=V0.id).block
    assert not top & set(reads)
    assert ChainDB(MemoryStore(), chain.genesis).warm_state_tree() > 0  # genesis's own state


def _two_dbs() -> tuple[Chain, ChainDB]:
    proposer = Chain()
    follower = ChainDB(MemoryStore(), proposer.genesis)
    return proposer, follower


def test_executing_a_built_block_reproduces_it_byte_for_byte() -> None:
    proposer, follower = _two_dbs()
    for step in range(3):
        raws = [
            proposer.tx(ORG1, "id.register", IdRegister(f"88/s{step}", URL)),
            proposer.tx(ORG2, "id.register", IdRegister(f"88/x{step}", URL)),  # fails: unauthorized
            b"garbage",
        ]
        built = proposer.build(raws)
        executed = follower.execute_block(built.block)
        assert executed.block.header == built.block.header
        assert encode(executed.block) == encode(built.block)
        assert executed.block_hash == built.block_hash
        assert executed.results == built.results
        assert [r.reason for r in built.results] == ["", "unauthorized", "malformed"]
        cert = sign_cert(CHAIN, built.block.header, [V0])
        proposer.db.commit(built, cert)
        follower.commit(executed, cert)
    assert follower.head_hash == proposer.db.head_hash
    assert follower.head.state_root == proposer.db.head.state_root


def test_execute_block_rejects_tampered_headers() -> None:
    proposer, follower = _two_dbs()
    proposer.run(proposer.tx(ORG1, "id.register", IdRegister("88/first", URL)))
    LedgerApp(follower, lambda: T0).apply_certified(
        proposer.db.get_block(1), proposer.db.get_certificate(1)  # type: ignore[arg-type]
    )
    built = proposer.build([proposer.tx(ORG1, "id.register", IdRegister("88/second", URL))])
    block, h = built.block, built.block.header
    tampered = {
        "state_root": Block(replace(h, state_root=b"\x01" * 32), block.txs),
        "tx_root": Block(replace(h, tx_root=b"\x02" * 32), block.txs),
        "prev_hash": Block(replace(h, prev_hash=b"\x03" * 32), block.txs),
        "history_root": Block(replace(h, history_root=b"\x04" * 32), block.txs),
        "height": Block(replace(h, height=h.height + 1), block.txs),
        "height again": Block(replace(h, height=h.height - 1), block.txs),
        "timestamp before parent": Block(replace(h, timestamp=T0 - 1), block.txs),
        "tx removed": Block(h, ()),
        "tx added": Block(h, (*block.txs, b"garbage")),
    }
    for name, bad in tampered.items():
        with pytest.raises(InvalidBlock):
            follower.execute_block(bad)
        assert follower.height == 1, name
    # The untampered block still executes to the same header.
    assert follower.execute_block(block).block_hash == built.block_hash


def test_apply_certified_block_checks_the_certificate() -> None:
    proposer, follower = _two_dbs()
    catch_up = LedgerApp(follower, lambda: T0)
    proposer.run(proposer.tx(ORG1, "id.register", IdRegister("88/a", URL)))
    block = proposer.db.get_block(1)
    good = proposer.db.get_certificate(1)
    assert block is not None and good is not None
    bad_certs = [
        sign_cert(CHAIN, block.header, [OUTSIDER]),
        sign_cert("other-chain", block.header, [V0]),
        CommitCertificate(1, 0, good.block_hash, ()),
        replace(good, signatures=(replace(good.signatures[0], signature=b"\x00" * 64),)),
    ]
    for cert in bad_certs:
        with pytest.raises(InvalidBlock):
            catch_up.apply_certified(block, cert)
        assert follower.height == 0
        assert get_identifier(follower.latest, "88/a") is None
    catch_up.apply_certified(block, good)
    assert follower.height == 1 and follower.head_hash == proposer.db.head_hash
    assert get_identifier(follower.latest, "88/a") is not None
    assert follower.get_certificate(1) == good


def test_commit_refuses_blocks_that_do_not_extend_the_head(chain: Chain) -> None:
    first = chain.build([chain.tx(ORG1, "id.register", IdRegister("88/a", URL))])
    sibling = chain.build([])
    chain.commit(first)
    with pytest.raises(InvalidBlock):
        chain.commit(sibling)
    # A certificate for another block is refused too.
    nxt = chain.build([])
    with pytest.raises(InvalidBlock):
        chain.db.commit(nxt, sign_cert(CHAIN, first.block.header, [V0]))
    assert chain.db.height == 1


def test_blocks_built_on_a_pending_parent_commit_in_order(chain: Chain) -> None:
    first = chain.build([chain.tx(ORG1, "id.register", IdRegister("88/a", URL))])
    raw2 = encode(make_tx(ORG1, CHAIN, 2, "id.register", IdRegister("88/b", URL)))
    second = chain.db.build_block([raw2], view=0, timestamp=T0 + 5000, proposer=V0.id, parent=first)
    assert second.block.header.height == 2 and second.block.header.prev_hash == first.block_hash
    assert [r.reason for r in second.results] == [""]
    # A follower with nothing cached re-executes the pipeline to the same blocks.
    follower = ChainDB(MemoryStore(), chain.genesis)
    f1 = follower.execute_block(first.block)
    f2 = follower.execute_block(second.block, parent=f1)
    assert (f1.block_hash, f2.block_hash) == (first.block_hash, second.block_hash)
    for db, e1, e2 in ((chain.db, first, second), (follower, f1, f2)):
        db.commit(e1, sign_cert(CHAIN, e1.block.header, [V0]))
        db.commit(e2, sign_cert(CHAIN, e2.block.header, [V0]))
    reopened = ChainDB(follower.store, chain.genesis)
    assert reopened.head_hash == chain.db.head_hash
    for height, present in ((1, {"88/a"}), (2, {"88/a", "88/b"})):
        for handle in ("88/a", "88/b"):
            key = identifier_key(handle)
            _h, value, proof = reopened.prove(key, height)
            assert (value is not None) == (handle in present)
            assert verify_proof(reopened.state_root_at(height), key, value, proof)  # type: ignore[arg-type]


def test_a_pipeline_of_pending_blocks_needs_no_cached_tree_nodes(chain: Chain) -> None:
    """A block built on a pending parent walks the parent's new tree nodes, which are written only when the
    parent commits: the chain serves them itself, whatever its tree's cache has dropped."""
    db = chain.db
    db.smt = SparseMerkleTree(db._get_tree_node, cache_size=0, root_birth=db._root_birth)  # a cache that keeps nothing
    pending: list[ExecutedBlock] = []
    for i in range(3):
        raw = encode(make_tx(ORG1, CHAIN, i + 1, "id.register", IdRegister(f"88/p{i}", URL)))
        parent = pending[-1] if pending else None
        pending.append(db.build_block([raw], view=0, timestamp=T0 + 1000 * (i + 1), proposer=V0.id, parent=parent))
    assert [r.reason for e in pending for r in e.results] == ["", "", ""]
    # A follower executes the same pipeline with no cache either, then both commit it.
    follower = ChainDB(MemoryStore(), chain.genesis)
    follower.smt = SparseMerkleTree(follower._get_tree_node, cache_size=0, root_birth=follower._root_birth)
    followed: list[ExecutedBlock] = []
    for e in pending:
        followed.append(follower.execute_block(e.block, parent=followed[-1] if followed else None))
    for database, blocks in ((db, pending), (follower, followed)):
        for e in blocks:
            database.commit(e, sign_cert(CHAIN, e.block.header, [V0]))
        assert database._pending == {}  # committed: served by the store from now on
    assert follower.head_hash == db.head_hash
    for i in range(3):
        key = identifier_key(f"88/p{i}")
        _h, value, proof = follower.prove(key, 3)
        assert value is not None and verify_proof(follower.state_root_at(3), key, value, proof)


def test_a_block_that_fails_its_check_leaves_no_nodes_held(chain: Chain) -> None:
    """A lying proposer's block whose state root is wrong is refused, and the chain holds none of its tree
    nodes for blocks built on it."""
    good = chain.build([chain.tx(ORG1, "id.register", IdRegister("88/a", URL))])
    forged = Block(replace(good.block.header, state_root=bytes(32)), good.block.txs)
    follower = ChainDB(MemoryStore(), chain.genesis)
    with pytest.raises(InvalidBlock):
        follower.execute_block(forged)
    assert follower._pending == {}
    follower.execute_block(good.block)
    assert list(follower._pending) == [1]


def test_history_proofs_verify_against_later_headers(chain: Chain) -> None:
    for i in range(10):
        chain.run(chain.tx(ORG1, "id.register", IdRegister(f"88/h{i}", URL)))
    hashes = [compute_block_hash(chain.db.get_block(h).header) for h in range(11)]  # type: ignore[union-attr]
    for size in (1, 2, 3, 4, 5, 7, 8, 9, 10):
        root = chain.db.get_block(size).header.history_root  # type: ignore[union-attr]
        # The header commits to exactly the hashes of blocks 0..size-1.
        assert root == merkle.merkle_root(hashes[:size])
        for i in range(size):
            proof = chain.db.history_proof(i, size)
            assert merkle.verify_inclusion(merkle.leaf_hash(hashes[i]), i, size, proof, root)
            # The proof is for this block at this position only.
            assert not merkle.verify_inclusion(merkle.leaf_hash(hashes[i + 1]), i, size, proof, root)
            if size > 1:
                assert not merkle.verify_inclusion(merkle.leaf_hash(hashes[i]), (i + 1) % size, size, proof, root)


# === state proofs =============================================================================


def _check_proof(db: ChainDB, key: bytes, height: int, expected: bytes | None) -> None:
    h, value, proof = db.prove(key, height)
    assert h == height
    assert value == expected
    root = db.state_root_at(height)
    assert root is not None and root == db.get_block(height).header.state_root  # type: ignore[union-attr]
    assert verify_proof(root, key, value, proof)
    # The proof does not vouch for any other value.
    assert not verify_proof(root, key, b"forged", proof)
    if value is not None:
        assert not verify_proof(root, key, None, proof)


def test_state_proofs_at_current_and_older_heights(chain: Chain) -> None:
    key = identifier_key("88/doc")
    chain.run(chain.tx(ORG1, "id.register", IdRegister("88/doc", URL)))  # height 1
    v1 = chain.db.latest.get(key)
    chain.run(chain.tx(ORG1, "id.register", IdRegister("88/other", URL)))  # height 2
    chain.run(chain.tx(ORG1, "id.update", IdUpdate("88/doc", (ValueSpec(1, "URL", "https://new.example"),))))
    v3 = chain.db.latest.get(key)
    chain.run(chain.tx(ORG1, "id.delete", IdDelete("88/other")))  # height 4
    assert v1 is not None and v3 is not None and v1 != v3
    # Present keys, now and at older heights: a value changed later proves its old value there.
    _check_proof(chain.db, key, 4, v3)
    _check_proof(chain.db, key, 3, v3)
    _check_proof(chain.db, key, 2, v1)
    _check_proof(chain.db, key, 1, v1)
    _h, _v, old_proof = chain.db.prove(key, 1)
    assert not verify_proof(chain.db.state_root_at(1), key, v3, old_proof)  # type: ignore[arg-type]
    # Absent keys: before creation, after deletion, never written.
    _check_proof(chain.db, key, 0, None)
    other = identifier_key("88/other")
    _check_proof(chain.db, other, 2, chain.db.view_at(2).get(other))
    assert chain.db.view_at(2).get(other) is not None
    _check_proof(chain.db, other, 4, None)
    _check_proof(chain.db, b"never/written", 4, None)
    _check_proof(chain.db, member_key(ADMIN.id), 0, chain.db.latest.get(member_key(ADMIN.id)))
    # The default height is the head.
    assert chain.db.prove(key)[0] == 4
    with pytest.raises(KeyError):
        chain.db.prove(key, 5)


# === transactions =============================================================================


def test_transaction_rejection_reasons(chain: Chain) -> None:
    reg = IdRegister("88/a", URL)
    assert chain.run(encode(make_tx(ORG1, "other-chain", 1, "id.register", reg))) == ["wrong_chain"]
    assert chain.run(encode(make_tx(ORG1, CHAIN, 1, "no.such.kind", reg))) == ["unknown_kind"]
    good = chain.tx(ORG1, "id.register", reg)
    assert chain.run(b"\x00garbage", b"", good[:-1], good + b"\x00") == ["malformed"] * 4
    assert chain.run(encode(make_tx(ORG1, CHAIN, 0, "id.register", reg))) == ["malformed"]  # nonces start at 1
    huge = IdRegister("88/big", (ValueSpec(1, "DESC", "x" * (64 * 1024)),))
    assert chain.run(chain.tx(ORG1, "id.register", huge)) == ["oversized"]
    # A payload that is not the canonical encoding of the kind's record.
    body = TxBody(CHAIN, "id.register", ORG1.id, 1, b"\xc0")
    bad_payload = SignedTx(CHAIN, "id.register", ORG1.id, 1, b"\xc0", ORG1.sign(DOMAIN_TX, body))
    assert chain.run(encode(bad_payload)) == ["invalid_payload"]
    assert chain.run(chain.tx(OUTSIDER, "id.register", reg)) == ["unknown_sender"]
    assert chain.run(signed_as(ORG1.id, ORG2, 1, "id.register", reg)) == ["bad_signature"]
    assert chain.run(chain.tx(ORG1, "id.register", reg, nonce=3)) == ["nonce_gap"]
    # None of the above consumed a nonce or registered anything.
    assert get_nonce(chain.db.latest, ORG1.id) == 0
    assert get_identifier(chain.db.latest, "88/a") is None

    # The same signed tx twice in one block, then again in a later block.
    tx1 = chain.tx(ORG1, "id.register", reg)
    assert chain.run(tx1, tx1) == ["", "replayed_nonce"]
    assert chain.run(tx1) == ["replayed_nonce"]
    tx2 = chain.tx(ORG1, "id.register", IdRegister("88/b", URL))
    assert chain.run(tx2) == [""]
    # A lower nonce than the next one, with otherwise fresh content.
    assert chain.run(chain.tx(ORG1, "id.register", IdRegister("88/c", URL), nonce=1)) == ["replayed_nonce"]

    assert chain.run1(ORG1, "prefix.create", PrefixCreate("77", ORG1.id)) == "unauthorized"  # not admin
    assert chain.run1(ORG2, "id.register", IdRegister("88/z", URL)) == "unauthorized"  # not the owner
    assert chain.run1(ORG1, "id.register", reg) == "already_exists"
    assert chain.run1(ADMIN, "prefix.create", PrefixCreate("88", ADMIN.id)) == "already_exists"
    assert chain.run1(ORG1, "id.update", IdUpdate("88/missing", URL)) == "not_found"
    assert chain.run1(ORG1, "id.delete", IdDelete("88/missing")) == "not_found"
    assert chain.run1(ORG1, "id.register", IdRegister("99/a", URL)) == "not_found"  # no such prefix
    # ORG1's failed payloads consumed their nonces (5 failures after 2 successes), and nothing else.
    assert get_nonce(chain.db.latest, ORG1.id) == 7
    assert get_nonce(chain.db.latest, ORG2.id) == 1
    assert get_identifier(chain.db.latest, "88/z") is None
    assert get_identifier(chain.db.latest, "88/missing") is None
    assert get_prefix(chain.db.latest, "77") is None
    assert get_prefix(chain.db.latest, "88").owner == ORG1.id  # type: ignore[union-attr]


def test_tx_index_records_outcomes(chain: Chain) -> None:
    ok_tx = chain.tx(ORG1, "id.register", IdRegister("88/a", URL))
    bad_tx = chain.tx(ORG2, "id.register", IdRegister("88/b", URL))
    executed = chain.build([ok_tx, bad_tx, ok_tx])
    chain.commit(executed)
    first, second, replay = executed.results
    loc = chain.db.get_tx_location(first.tx_id)
    assert loc is not None and (loc.height, loc.index, loc.ok) == (1, 0, True)
    loc2 = chain.db.get_tx_location(second.tx_id)
    assert loc2 is not None and (loc2.index, loc2.ok, loc2.reason) == (1, False, "unauthorized")
    # The replayed copy does not hide the original outcome.
    assert replay.tx_id == first.tx_id and not replay.ok


# --- property: a failed transaction changes nothing ---------------------------------------------

SENDERS = [ADMIN, ORG1, ORG2, OUTSIDER]
HANDLES = ["88/a", "88/b", "88/a", "88/b", "99/a", "88.1/x", "88/../x"]
PREFIXES = ["88", "99", "88.1", "99.5", "bad prefix"]
VALUE_SETS = [
    URL,
    (ValueSpec(1, "URL", "https://b.example"), ValueSpec(2, "EMAIL", "a@b.c")),
    (ValueSpec(3, "DESC", "c"),),
    (ValueSpec(100, "URL", "x"),),
    (),
]
ROLE_SETS = [(), ("admin",), ("registrar",), ("bogus",)]
KINDS = ["prefix.create", "id.register", "id.update", "id.delete", "member.add", "member.roles", "member.remove"]


@dataclass(frozen=True)
class Op:
    sender: int
    kind: str
    arg: int
    arg2: int
    nonce_mode: str
    sig_mode: str


op_st = st.builds(
    Op,
    st.sampled_from([0, 0, 0, 1, 1, 1, 1, 2, 3]),  # mostly the admin and the owner of 88
    st.sampled_from(KINDS),
    st.integers(0, 99),
    st.integers(0, 99),
    st.sampled_from(["next"] * 8 + ["replay", "gap"]),
    st.sampled_from(["ok"] * 12 + ["forged", "wrong_chain", "garbage"]),
)


def _payload(op: Op) -> Any:
    member_ids = [k.id for k in (ADMIN, ORG1, ORG2, OUTSIDER, NEWCOMER)]
    if op.kind == "prefix.create":
        return PrefixCreate(PREFIXES[op.arg % len(PREFIXES)], member_ids[op.arg2 % len(member_ids)])
    handle = HANDLES[op.arg % len(HANDLES)]
    values = VALUE_SETS[op.arg2 % len(VALUE_SETS)]
    if op.kind == "id.register":
        return IdRegister(handle, values)
    if op.kind == "id.update":
        return IdUpdate(handle, values)
    if op.kind == "id.delete":
        return IdDelete(handle)
    if op.kind == "member.add":
        key = (NEWCOMER, ORG2, OUTSIDER)[op.arg % 3]
        return MemberAdd(f"m{op.arg}", key.public_key, ROLE_SETS[op.arg2 % len(ROLE_SETS)])
    target = member_ids[op.arg % len(member_ids)]
    if op.kind == "member.roles":
        return MemberSetRoles(target, ROLE_SETS[op.arg2 % len(ROLE_SETS)])
    return MemberRemove(target)


def _raw(op: Op, current_nonce: int) -> bytes:
    key = SENDERS[op.sender]
    nonce = {"next": current_nonce + 1, "replay": current_nonce, "gap": current_nonce + 2}[op.nonce_mode]
    payload = _payload(op)
    if op.sig_mode == "forged":
        return signed_as(key.id, SENDERS[(op.sender + 1) % len(SENDERS)], max(nonce, 1), op.kind, payload)
    if op.sig_mode == "wrong_chain":
        return encode(make_tx(key, "other-chain", nonce, op.kind, payload))
    if op.sig_mode == "garbage":
        return encode(make_tx(key, CHAIN, nonce, op.kind, payload))[:-3]
    return encode(make_tx(key, CHAIN, nonce, op.kind, payload))


def _flat_latest(db: ChainDB) -> dict[bytes, bytes]:
    return {k[len(NS.STATE_LATEST):]: v for k, v in db.store.iterate(NS.STATE_LATEST)}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(op_st, min_size=1, max_size=12), min_size=1, max_size=3))
def test_failed_transactions_change_nothing_but_the_senders_nonce(blocks: list[list[Op]]) -> None:
    chain = Chain()
    db = chain.db
    for ops in blocks:
        raws: list[bytes] = []
        before = chain.build(raws)
        for op in ops:
            sender = SENDERS[op.sender]
            raws.append(_raw(op, get_nonce(before.state_after, sender.id)))
            after = chain.build(raws)
            # Executing one more tx does not change the outcome of the earlier ones.
            assert after.results[:-1] == before.results
            result = after.results[-1]
            event(f"{op.kind}: {result.reason or 'ok'}")
            keys = set(before.changes) | set(after.changes)
            diff = {k for k in keys if before.state_after.get(k) != after.state_after.get(k)}
            nk = nonce_key(sender.id)
            if result.ok:
                assert result.reason == ""
                assert after.state_after.get(nk) == encode(get_nonce(before.state_after, sender.id) + 1)
            elif result.reason in HANDLER_REASONS:
                # A valid envelope: the nonce is consumed, nothing else changes.
                assert diff == {nk}
                assert after.state_after.get(nk) == encode(get_nonce(before.state_after, sender.id) + 1)
            else:
                assert result.reason in ENVELOPE_REASONS, result.reason
                assert diff == set()
            before = after
        chain.commit(before)
        # The authenticated tree holds exactly the flat latest-value index.
        flat = _flat_latest(db)
        root = db.head.state_root
        assert dict(db.smt.items(root)) == flat
        fresh_root, _ = SparseMerkleTree(lambda _b, _h: None).update(EMPTY, dict(flat))
        assert fresh_root == root == db.state_root_at(db.height)


# === members ==================================================================================


def test_admin_adds_a_member_who_can_then_transact(chain: Chain) -> None:
    assert chain.run1(NEWCOMER, "id.register", IdRegister("55/a", URL)) == "unknown_sender"
    assert chain.run1(ADMIN, "member.add", MemberAdd("newcomer", NEWCOMER.public_key, ("registrar",))) == ""
    member = get_member(chain.db.latest, NEWCOMER.id)
    assert member is not None and member.active and member.roles == ("registrar",)
    assert chain.run1(ADMIN, "prefix.create", PrefixCreate("55", NEWCOMER.id)) == ""
    assert chain.run1(NEWCOMER, "id.register", IdRegister("55/a", URL)) == ""
    assert get_identifier(chain.db.latest, "55/a") is not None
    # A key is added once.
    assert chain.run1(ADMIN, "member.add", MemberAdd("again", NEWCOMER.public_key, ())) == "already_exists"


def test_non_admin_cannot_manage_members(chain: Chain) -> None:
    assert chain.run1(ORG1, "member.add", MemberAdd("n", NEWCOMER.public_key, ())) == "unauthorized"
    assert chain.run1(ORG1, "member.roles", MemberSetRoles(ORG1.id, ("admin",))) == "unauthorized"
    assert chain.run1(ORG1, "member.roles", MemberSetRoles(ORG2.id, ("admin",))) == "unauthorized"
    assert chain.run1(ORG2, "member.remove", MemberRemove(ORG1.id)) == "unauthorized"
    assert get_member(chain.db.latest, NEWCOMER.id) is None
    assert get_member(chain.db.latest, ORG1.id).roles == ("registrar",)  # type: ignore[union-attr]
    assert get_member(chain.db.latest, ORG1.id).active  # type: ignore[union-attr]


def test_roles_change_what_a_member_may_do(chain: Chain) -> None:
    assert chain.run1(ADMIN, "member.roles", MemberSetRoles(ORG2.id, ("admin", "issuer"))) == ""
    assert get_member(chain.db.latest, ORG2.id).roles == ("admin", "issuer")  # type: ignore[union-attr]
    assert chain.run1(ORG2, "prefix.create", PrefixCreate("66", ORG2.id)) == ""
    # An admin cannot drop its own admin role or remove itself.
    assert chain.run1(ADMIN, "member.roles", MemberSetRoles(ADMIN.id, ())) == "unauthorized"
    assert chain.run1(ADMIN, "member.remove", MemberRemove(ADMIN.id)) == "unauthorized"
    assert chain.run1(ADMIN, "member.roles", MemberSetRoles(ORG2.id, ())) == ""
    assert chain.run1(ORG2, "prefix.create", PrefixCreate("67", ORG2.id)) == "unauthorized"


def test_removed_member_is_an_unknown_sender(chain: Chain) -> None:
    assert chain.run1(ADMIN, "prefix.create", PrefixCreate("70", ORG2.id)) == ""
    assert chain.run1(ORG2, "id.register", IdRegister("70/a", URL)) == ""
    assert chain.run1(ADMIN, "member.remove", MemberRemove(ORG2.id)) == ""
    assert chain.run1(ORG2, "id.register", IdRegister("70/b", URL)) == "unknown_sender"
    assert get_identifier(chain.db.latest, "70/b") is None
    # Removing or changing a removed member finds nobody.
    assert chain.run1(ADMIN, "member.remove", MemberRemove(ORG2.id)) == "not_found"
    assert chain.run1(ADMIN, "member.roles", MemberSetRoles(ORG2.id, ())) == "not_found"
    assert chain.run1(ADMIN, "member.remove", MemberRemove(OUTSIDER.id)) == "not_found"


def test_rotated_key_replaces_the_old_one(chain: Chain) -> None:
    new_key = SigningKey.from_seed(b"org1-rotated")
    # A tx signed with the old key is verified (and cached) by a speculative build before the rotation.
    stale = signed_as(ORG1.id, ORG1, 2, "id.register", IdRegister("88/old", URL))
    chain.build([stale])
    assert chain.run1(ORG1, "member.rotate_key", MemberRotateKey(new_key.public_key)) == ""
    member = get_member(chain.db.latest, ORG1.id)
    assert member is not None and member.public_key == new_key.public_key and member.id == ORG1.id
    assert chain.run(stale) == ["bad_signature"]
    assert chain.run(signed_as(ORG1.id, ORG1, 2, "id.register", IdRegister("88/old2", URL))) == ["bad_signature"]
    assert chain.run(signed_as(ORG1.id, new_key, 2, "id.register", IdRegister("88/new", URL))) == [""]
    assert get_identifier(chain.db.latest, "88/new") is not None
    assert get_identifier(chain.db.latest, "88/old") is None
    # The new key does not become a member of its own.
    assert chain.run(encode(make_tx(new_key, CHAIN, 1, "id.register", IdRegister("88/n", URL)))) == ["unknown_sender"]
    assert chain.run1(ORG2, "member.rotate_key", MemberRotateKey(b"\x01" * 31)) == "invalid_value"


def test_unknown_roles_are_rejected(chain: Chain) -> None:
    assert chain.run1(ADMIN, "member.add", MemberAdd("n", NEWCOMER.public_key, ("superuser",))) == "invalid_value"
    assert get_member(chain.db.latest, NEWCOMER.id) is None
    assert chain.run1(ADMIN, "member.roles", MemberSetRoles(ORG1.id, ("registrar", "root"))) == "invalid_value"
    assert get_member(chain.db.latest, ORG1.id).roles == ("registrar",)  # type: ignore[union-attr]
    assert chain.run1(ADMIN, "member.add", MemberAdd("n", b"short", ())) == "invalid_value"
    assert chain.run1(ADMIN, "member.add", MemberAdd("bad\nname", NEWCOMER.public_key, ())) == "invalid_value"


# === registry =================================================================================


def test_prefix_hierarchy() -> None:
    chain = Chain(make_genesis())
    assert chain.run1(ORG1, "prefix.create", PrefixCreate("88", ORG1.id)) == "unauthorized"
    assert chain.run1(ADMIN, "prefix.create", PrefixCreate("88", ORG1.id)) == ""
    assert chain.run1(ORG1, "prefix.create", PrefixCreate("88.100", ORG2.id)) == ""
    assert chain.run1(ORG2, "prefix.create", PrefixCreate("88.100.1", ORG2.id)) == ""
    p = get_prefix(chain.db.latest, "88.100.1")
    assert p is not None and p.owner == ORG2.id and p.created_height == chain.db.height
    # Only the parent's owner creates under it: not the grand-parent's owner, nor the admin.
    assert chain.run1(ORG1, "prefix.create", PrefixCreate("88.100.2", ORG1.id)) == "unauthorized"
    assert chain.run1(ORG2, "prefix.create", PrefixCreate("88.200", ORG2.id)) == "unauthorized"
    assert chain.run1(ADMIN, "prefix.create", PrefixCreate("88.300", ADMIN.id)) == "unauthorized"
    # The owner must be an active member; the prefix well formed.
    assert chain.run1(ADMIN, "prefix.create", PrefixCreate("90", OUTSIDER.id)) == "not_found"
    for bad in ("", "88.", ".88", "8 8", "88/1", "a..b"):
        assert chain.run1(ADMIN, "prefix.create", PrefixCreate(bad, ADMIN.id)) == "invalid_value", bad
    assert chain.run1(ADMIN, "prefix.create", PrefixCreate("gs1:4012345", ORG1.id)) == ""
    assert get_prefix(chain.db.latest, "88.200") is None


def test_only_the_prefix_owner_changes_identifiers() -> None:
    chain = Chain(make_genesis(prefixes=(("88", ORG1),)))
    assert chain.run1(ORG1, "prefix.create", PrefixCreate("88.100", ORG2.id)) == ""
    assert chain.run1(ORG2, "id.register", IdRegister("88.100/x", URL)) == ""
    assert chain.run1(ORG1, "id.register", IdRegister("88.100/y", URL)) == "unauthorized"
    assert chain.run1(ADMIN, "id.register", IdRegister("88.100/y", URL)) == "unauthorized"
    assert chain.run1(ORG1, "id.update", IdUpdate("88.100/x", VALUE_SETS[1])) == "unauthorized"
    assert chain.run1(ORG1, "id.delete", IdDelete("88.100/x")) == "unauthorized"
    record = get_identifier(chain.db.latest, "88.100/x")
    assert record is not None and [v.value for v in record.values] == ["https://example.org/a"]
    assert chain.run1(ORG2, "id.update", IdUpdate("88.100/x", VALUE_SETS[1])) == ""
    assert [v.type for v in get_identifier(chain.db.latest, "88.100/x").values] == ["URL", "EMAIL"]  # type: ignore[union-attr]
    assert chain.run1(ORG2, "id.delete", IdDelete("88.100/x")) == ""
    assert get_identifier(chain.db.latest, "88.100/x") is None
    assert chain.run1(ORG2, "id.delete", IdDelete("88.100/x")) == "not_found"


def test_update_stamps_only_changed_values(chain: Chain) -> None:
    specs = (ValueSpec(1, "URL", "https://a.example"), ValueSpec(2, "EMAIL", "x@y.z"), ValueSpec(3, "DESC", "d"))
    assert chain.run1(ORG1, "id.register", IdRegister("88/t", specs)) == ""
    t1, h1 = chain.db.head.timestamp, chain.db.height
    created = get_identifier(chain.db.latest, "88/t")
    assert created is not None and {v.timestamp for v in created.values} == {t1}
    chain.run()  # an empty block moves time on
    update = (
        ValueSpec(1, "URL", "https://a.example"),  # unchanged
        ValueSpec(2, "EMAIL", "new@y.z"),  # changed value
        ValueSpec(3, "HASH", "d"),  # changed type
        ValueSpec(4, "TWIN", "twin"),  # new
    )
    assert chain.run1(ORG1, "id.update", IdUpdate("88/t", update)) == ""
    t2, h2 = chain.db.head.timestamp, chain.db.height
    assert t2 > t1
    record = get_identifier(chain.db.latest, "88/t")
    assert record is not None
    assert {v.index: v.timestamp for v in record.values} == {1: t1, 2: t2, 3: t2, 4: t2}
    assert {v.index: v.value for v in record.values} == {1: "https://a.example", 2: "new@y.z", 3: "d", 4: "twin"}
    assert (record.created_height, record.updated_height, record.created_at) == (h1, h2, t1)


@pytest.mark.parametrize(
    "handle",
    ["88", "88/", "/x", "88/a\x00b", "88/a\nb", "88/tab\there", "88/..", "88/a/../b", "88/.", "88/./a",
     "88/" + "x" * 256, "8 8/x", "88./x"],
)
def test_invalid_identifiers_are_rejected(chain: Chain, handle: str) -> None:
    assert chain.run1(ORG1, "id.register", IdRegister(handle, URL)) == "invalid_value"
    assert chain.run1(ORG1, "id.update", IdUpdate(handle, URL)) == "invalid_value"
    assert chain.run1(ORG1, "id.delete", IdDelete(handle)) == "invalid_value"
    assert get_identifier(chain.db.latest, handle) is None


def test_identifier_limits_are_inclusive(chain: Chain) -> None:
    longest = "88/" + "x" * 255
    assert chain.run1(ORG1, "id.register", IdRegister(longest, URL)) == ""
    assert chain.run1(ORG1, "id.register", IdRegister("88/a/b.c/..x", URL)) == ""
    assert get_identifier(chain.db.latest, longest) is not None


@pytest.mark.parametrize(
    "values",
    [(), (ValueSpec(100, "URL", "x"),), (ValueSpec(0, "URL", "x"),), (ValueSpec(1, "FAX", "x"),),
     (ValueSpec(1, "URL", "a"), ValueSpec(1, "URL", "b")), (ValueSpec(1, "URL", "a\nb"),),
     (ValueSpec(1, "URL", "x" * 2049),)],
)
def test_invalid_values_are_rejected(chain: Chain, values: tuple[ValueSpec, ...]) -> None:
    assert chain.run1(ORG1, "id.register", IdRegister("88/v", values)) == "invalid_value"
    assert get_identifier(chain.db.latest, "88/v") is None


# === replica, n = 1 ===========================================================================


def _replica(chain: Chain, batch_size: int, batch_ticks: int) -> tuple[Replica, LedgerApp]:
    app = LedgerApp(chain.db, clock_ms=lambda: T0 + 60_000)
    config = ReplicaConfig(CHAIN, (V0.id,), batch_size=batch_size, batch_ticks=batch_ticks)
    return Replica(config, V0, app, chain.genesis.validator_keys()), app


def _registrations(n: int, start_nonce: int = 1) -> list[bytes]:
    return [
        encode(make_tx(ORG1, CHAIN, start_nonce + i, "id.register", IdRegister(f"88/r{start_nonce + i}", URL)))
        for i in range(n)
    ]


def test_replica_delivers_a_certified_block_for_a_full_batch(chain: Chain) -> None:
    replica, app = _replica(chain, batch_size=3, batch_ticks=5)
    raws = _registrations(3)
    assert replica.submit(raws[:2]) == []
    actions = replica.submit(raws[2:])
    assert len(actions) == 1 and isinstance(actions[0], Deliver)
    deliver = actions[0]
    assert deliver.block.txs == tuple(raws)
    assert deliver.block.header.height == 1 and deliver.block.header.proposer == V0.id
    check_certificate(deliver.certificate, CHAIN, deliver.block.header, chain.genesis.validator_keys())
    assert replica.pending == 0
    executed = app.commit(deliver.block, deliver.certificate)
    assert all(r.ok for r in executed.results)
    assert chain.db.height == 1 and get_identifier(chain.db.latest, "88/r3") is not None
    assert replica.tick() == []


def test_the_replica_s_records_before_a_delivery_ride_in_the_block_s_one_synced_write() -> None:
    """One fsync where there were two: the certificate record a replica persists just before each delivery
    is written with the block, atomically, and before anything that follows the delivery leaves."""
    from ledger.consensus.actions import Broadcast, Persist
    from ledger.driver import Driver
    from tests.test_driver import RecordingHost, RecordingLinks, RecordingStore

    events: list[str] = []
    chain = Chain(store=RecordingStore(events))
    replica, app = _replica(chain, batch_size=1, batch_ticks=5)
    [deliver] = replica.submit(_registrations(1))
    assert isinstance(deliver, Deliver)
    driver = Driver(replica, app, chain.db.store, RecordingLinks(events), RecordingHost(events))
    events.clear()
    driver.perform([Persist(b"certificate", b"c"), Persist(b"old", b""), deliver, Broadcast(b"after")])
    [write, *rest] = events
    assert write.startswith("write ") and write.endswith(" sync=True") and rest == ["committed 1", "broadcast"]
    assert Driver.persisted(chain.db.store) == {b"certificate": b"c"} and chain.db.height == 1
    # A block applied already (by catch-up) is not written again; the records still are, on their own.
    events.clear()
    driver.perform([Persist(b"certificate", b"c"), deliver, Broadcast(b"after")])
    assert events == ["write 1+0 sync=True", "broadcast"]


def test_replica_cuts_a_partial_batch_after_batch_ticks(chain: Chain) -> None:
    replica, app = _replica(chain, batch_size=10, batch_ticks=3)
    raws = _registrations(2)
    assert replica.submit(raws) == []
    assert replica.tick() == []
    assert replica.tick() == []
    actions = replica.tick()
    assert len(actions) == 1 and isinstance(actions[0], Deliver)
    assert actions[0].block.txs == tuple(raws)
    check_certificate(actions[0].certificate, CHAIN, actions[0].block.header, chain.genesis.validator_keys())
    app.commit(actions[0].block, actions[0].certificate)
    assert replica.pending == 0
    assert [replica.tick() for _ in range(5)] == [[]] * 5


def test_replica_delivers_nothing_with_nothing_pending(chain: Chain) -> None:
    replica, _ = _replica(chain, batch_size=2, batch_ticks=1)
    assert [replica.tick() for _ in range(10)] == [[]] * 10
    assert replica.submit([]) == []
    assert replica.step(V0.id, b"anything") == []
    assert chain.db.height == 0


def test_replica_batches_cut_in_one_call_commit_in_order(chain: Chain) -> None:
    replica, app = _replica(chain, batch_size=2, batch_ticks=1)
    actions = replica.submit(_registrations(4))
    delivers = [a for a in actions if isinstance(a, Deliver)]
    assert len(delivers) == 2
    for d in delivers:  # as the node performs them, in order
        app.commit(d.block, d.certificate)
    assert chain.db.height == 2
    assert get_identifier(chain.db.latest, "88/r4") is not None


# === block time and proposer, as backups check them ==========================================


@pytest.mark.parametrize(("lag_ms", "timely", "valid"), [
    (0, True, True), (29_000, True, True),
    (31_000, False, True),  # far behind our clock: refused on receipt, but a new view may force it again
    (31 * 60_000, False, True),  # (a decided block's age does not matter)
    (-31_000, False, False),  # far ahead: never
])
def test_backups_refuse_a_block_whose_time_is_far_from_their_clock(chain: Chain, lag_ms: int, timely: bool,
                                                                   valid: bool) -> None:
    built = chain.db.build_block(_registrations(1), view=0, timestamp=T0 + 1000, proposer=V0.id)
    follower = ChainDB(MemoryStore(), chain.genesis)
    app = LedgerApp(follower, clock_ms=lambda: T0 + 1000 + lag_ms)
    assert app.timely(built.block) is timely
    assert app.validate(built.block, None) is valid


def test_a_backup_judges_block_time_on_receipt_not_when_it_gets_to_execute_the_block() -> None:
    """Under load a backup takes a block in on time but executes it only once the pipeline lets it (here:
    after block 1 is delivered, 31 s later). The primary was on time; the backup's own delay is not held
    against it: the block is accepted and prepared, as a block received late (on its own clock) is not."""
    genesis = make_genesis(VALIDATORS, prefixes=(("88", ORG1),))
    primary = Chain(genesis)
    one = primary.db.build_block(_registrations(2), view=0, timestamp=T0 + 1000, proposer=V0.id)
    two = primary.db.build_block(_registrations(2, 3), view=0, timestamp=T0 + 1000, proposer=V0.id, parent=one)
    now = [T0 + 1000]
    app = LedgerApp(ChainDB(MemoryStore(), genesis), clock_ms=lambda: now[0])
    backup = VALIDATORS[1]
    config = ReplicaConfig(CHAIN, tuple(k.id for k in VALIDATORS), max_inflight=1)
    replica = Replica(config, backup, app, genesis.validator_keys())

    def deliver(key: SigningKey, body: Any, attachment: bytes = b"") -> list[Any]:
        return replica.step(key.id, encode_envelope(sign_message(key, CHAIN, body, attachment)))

    def prepared(actions: list[Any]) -> list[int]:
        bodies = [decode_body(decode_envelope(a.message)) for a in actions if isinstance(a, Broadcast)]
        return [b.height for b in bodies if isinstance(b, Prepare)]

    assert prepared(deliver(V0, PrePrepare(0, 1, one.block_hash, one.block.header.prev_hash), encode(one.block))) == [1]
    # Block 2 arrives on time, beyond the pipeline (one block in flight): it waits, unexecuted.
    assert deliver(V0, PrePrepare(0, 2, two.block_hash, one.block_hash), encode(two.block)) == []
    now[0] += 31_000  # more than the allowed skew
    deliver(VALIDATORS[2], Prepare(0, 1, one.block_hash))
    for key in (V0, VALIDATORS[2]):
        deliver(key, Commit(0, 1, one.block_hash))
    for key in (V0, VALIDATORS[2]):  # the certificate: 2f+1 votes with this backup's
        actions = deliver(key, Vote(1, 0, one.block_hash))
    assert [a.block.header.height for a in actions if isinstance(a, Deliver)] == [1]
    assert prepared(actions) == [2]  # block 2, executed now, is accepted
    assert replica.metrics["invalid_blocks"] == replica.metrics["untimely_blocks"] == 0
    # The same block received only now, 31 s after its time, is refused on receipt.
    late = LedgerApp(ChainDB(MemoryStore(), genesis), clock_ms=lambda: now[0])
    other = Replica(config, VALIDATORS[2], late, genesis.validator_keys())
    raw = encode_envelope(sign_message(V0, CHAIN, PrePrepare(0, 1, one.block_hash, one.block.header.prev_hash),
                                       encode(one.block)))
    assert other.step(V0.id, raw) == [] and other.metrics["untimely_blocks"] == 1
