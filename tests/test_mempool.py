"""The one admission path (ledger.mempool): every refusal reason, the verified cache, forwarding,
block pre-verification, and agreement with the execution rule (StateMachine.check_envelope)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

import ledger.mempool
import ledger.state
from ledger.anchor.records import AnchorRecord
from ledger.chain import CommitCertificate
from ledger.chaindb import ChainDB, ExecutedBlock
from ledger.codec import decode, encode
from ledger.config import NodeConfig
from ledger.crypto import DOMAIN_TX, SigningKey, verify_many, verify_parallel
from ledger.driver import MSG_FORWARD
from ledger.genesis import Genesis, GenesisMember, GenesisPrefix, GenesisValidator
from ledger.members import MembersModule
from ledger.mempool import GAP_WAIT_S, MAX_FORWARDED_PER_MESSAGE, Admission, Mempool
from ledger.node import Node
from ledger.resolver.registry import IdRegister, ValueSpec
from ledger.state import VerifiedCache
from ledger.store import MemoryStore
from ledger.tx import MAX_TX_BYTES, SignedTx, TxBody, TxRejected, compute_tx_id, make_tx
from tests.nodeutil import CHAIN_ID, make_home

CHAIN = "mempool-test"
T0 = 1_767_225_600_000
VALIDATOR = SigningKey.from_seed(b"mempool-validator")
ADMIN = SigningKey.from_seed(b"mempool-admin")
ORG1 = SigningKey.from_seed(b"mempool-org1")
ORG2 = SigningKey.from_seed(b"mempool-org2")
STRANGER = SigningKey.from_seed(b"mempool-stranger")
GENESIS = Genesis(
    chain_id=CHAIN,
    timestamp=T0,
    validators=(GenesisValidator("node0", VALIDATOR.public_key),),
    members=(
        GenesisMember("admin", ADMIN.public_key, ("admin",)),
        GenesisMember("org1", ORG1.public_key, ("registrar",)),
        GenesisMember("org2", ORG2.public_key, ("registrar",)),
    ),
    prefixes=(GenesisPrefix("88.100.1", ORG1.id),),
)
URL = (ValueSpec(1, "URL", "https://twin.example/x"),)


def new_chain(**kwargs: Any) -> ChainDB:
    return ChainDB(MemoryStore(), GENESIS, verified=VerifiedCache(10_000), **kwargs)


def register(key: SigningKey, nonce: int, suffix: str = "", chain_id: str = CHAIN) -> bytes:
    return encode(make_tx(key, chain_id, nonce, "id.register", IdRegister(f"88.100.1/EQ-{nonce}{suffix}", URL)))


def forged(raw: bytes, signer: SigningKey) -> bytes:
    """The same tx, signed by `signer` instead of its sender."""
    tx = decode(SignedTx, raw)
    return encode(SignedTx(tx.chain_id, tx.kind, tx.sender, tx.nonce, tx.payload, signer.sign(DOMAIN_TX, tx.body())))


def unsigned(raw: bytes) -> bytes:
    """The same tx with its signature (the last 64 bytes of the encoding) zeroed."""
    return raw[:-64] + bytes(64)


def commit(chain: ChainDB, raws: Sequence[bytes]) -> ExecutedBlock:
    executed = chain.build_block(list(raws), 0, chain.head.timestamp + 1000, VALIDATOR.id)
    chain.commit(executed, CommitCertificate(executed.block.header.height, 0, executed.block_hash, ()))
    return executed


def reasons(admissions: list[Admission]) -> list[str]:
    return [a.reason if not a.accepted else "" for a in admissions]


# --------------------------------------------------------------------------------------------------
# Refusals, one reason each
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("malformed", "malformed"),
        ("oversized", "oversized"),
        ("wrong_chain", "wrong_chain"),
        ("unknown_sender", "unknown_sender"),
        ("validator_sends_a_member_kind", "unauthorized"),
        ("bad_signature", "bad_signature"),
        ("signed_by_another_member", "bad_signature"),
    ],
)
def test_a_refused_tx_is_not_pending_and_not_remembered(case: str, reason: str) -> None:
    chain = new_chain()
    pool = Mempool(chain)
    raw = {
        "malformed": lambda: b"\x96\xa1",
        "oversized": lambda: register(ORG1, 1, "x" * MAX_TX_BYTES),
        "wrong_chain": lambda: register(ORG1, 1, chain_id="other-chain"),
        "unknown_sender": lambda: register(STRANGER, 1),
        "validator_sends_a_member_kind": lambda: register(VALIDATOR, 1),
        "bad_signature": lambda: unsigned(register(ORG1, 1)),
        "signed_by_another_member": lambda: forged(register(ORG1, 1), ORG2),
    }[case]()
    (a,) = pool.admit([raw])
    assert not a.accepted and a.reason == reason, a
    assert len(pool) == 0 and not pool.is_pending(a.tx_id)
    assert chain.verified is not None and chain.verified.get(compute_tx_id(raw)) is None


def test_a_replayed_nonce_is_refused_and_a_nonce_ahead_is_admitted() -> None:
    chain = new_chain()
    commit(chain, [register(ORG1, 1)])
    pool = Mempool(chain)
    # Nonce 1 is consumed: a different tx with it can never execute.
    assert reasons(pool.admit([register(ORG1, 1, "-other")])) == ["replayed_nonce"]
    # Nonce 4 leaves a gap that pending txs (2, 3) may fill before it executes.
    assert reasons(pool.admit([register(ORG1, 4), register(ORG1, 2)])) == ["", ""]


def test_duplicates_pending_committed_and_within_one_batch_are_refused() -> None:
    chain = new_chain()
    pool = Mempool(chain)
    a, b = register(ORG1, 1), register(ORG1, 2)
    # Repeated within one batch: the first copy is admitted.
    assert reasons(pool.admit([a, a])) == ["", "duplicate"]
    # Pending here already.
    assert reasons(pool.admit([a])) == ["duplicate"]
    # Committed: refused as a duplicate (not as a replayed nonce), and no longer pending.
    executed = commit(chain, [a])
    pool.remove_committed(r.tx_id for r in executed.results)
    assert not pool.is_pending(compute_tx_id(a))
    assert reasons(pool.admit([a, b])) == ["duplicate", ""]


def test_a_full_mempool_refuses_until_a_commit_makes_room() -> None:
    chain = new_chain()
    pool = Mempool(chain, limit=2)
    raws = [register(ORG1, n) for n in (1, 2, 3)]
    assert reasons(pool.admit(raws)) == ["", "", "mempool_full"]
    assert chain.verified is not None and chain.verified.get(compute_tx_id(raws[2])) is None
    executed = commit(chain, raws[:1])
    pool.remove_committed(r.tx_id for r in executed.results)
    assert reasons(pool.admit(raws[2:])) == [""]


def test_a_kind_no_module_of_this_chain_handles_is_refused_as_execution_would() -> None:
    chain = new_chain(modules=[MembersModule()])  # id.register is a known kind, but not handled here
    raw = register(ORG1, 1)
    assert reasons(Mempool(chain).admit([raw])) == ["unknown_kind"]
    assert commit(chain, [raw]).results[0].reason == "unknown_kind"


def test_results_are_in_input_order_across_checks_made_before_and_after_verification() -> None:
    chain = new_chain()
    commit(chain, [register(ORG2, 1)])
    pool = Mempool(chain)
    batch = [
        register(ORG1, 1),
        forged(register(ORG1, 2), ORG2),  # refused after verification
        b"\x00",  # refused before
        register(ORG2, 1, "-again"),  # refused before: nonce 1 of org2 is consumed
        register(ORG1, 3),
    ]
    admissions = pool.admit(batch)
    assert reasons(admissions) == ["", "bad_signature", "malformed", "replayed_nonce", ""]
    assert [a.tx_id for a in admissions if a.accepted] == [compute_tx_id(batch[0]), compute_tx_id(batch[4])]


# --------------------------------------------------------------------------------------------------
# Acceptance feeds execution
# --------------------------------------------------------------------------------------------------


def _count_execution_verifications(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = ledger.state.verify_digest

    def counting(public_key: bytes, digest: bytes, signature: bytes) -> bool:
        calls[0] += 1
        return real(public_key, digest, signature)

    monkeypatch.setattr(ledger.state, "verify_digest", counting)
    return calls


def test_an_admitted_tx_is_not_verified_again_when_it_executes(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = new_chain()
    raws = [register(ORG1, n) for n in (1, 2, 3)]
    assert reasons(Mempool(chain).admit(raws)) == ["", "", ""]
    calls = _count_execution_verifications(monkeypatch)
    executed = commit(chain, raws)
    assert [r.ok for r in executed.results] == [True, True, True]
    assert calls == [0]
    # A tx that did not come through admission is verified by execution itself.
    commit(chain, [register(ORG1, 4)])
    assert calls == [1]


# --------------------------------------------------------------------------------------------------
# Forwarded transactions take the same path
# --------------------------------------------------------------------------------------------------


def test_forwarded_txs_are_admitted_like_client_txs(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    node = Node(NodeConfig.load(home.path))
    try:
        good = register(home.org1, 1, chain_id=CHAIN_ID)
        bad = unsigned(register(home.org2, 1, chain_id=CHAIN_ID))
        node._on_peer_message("peer", bytes([MSG_FORWARD]) + msgpack.packb([good, bad], use_bin_type=True))
        assert node.mempool.is_pending(compute_tx_id(good))
        assert not node.mempool.is_pending(compute_tx_id(bad))
        rejected = node.metrics.registry.get_sample_value("ledger_tx_rejected_total", {"reason": "bad_signature"})
        assert rejected == 1
        # A forwarded batch above the limit is dropped whole, unread.
        flood = [b"\x00"] * (MAX_FORWARDED_PER_MESSAGE + 1)
        node._on_peer_message("peer", bytes([MSG_FORWARD]) + msgpack.packb(flood, use_bin_type=True))
        assert node.metrics.registry.get_sample_value("ledger_tx_rejected_total", {"reason": "malformed"}) is None
    finally:
        asyncio.run(node.stop())


def test_pending_txs_whose_nonce_another_tx_used_are_outdated() -> None:
    chain = new_chain()
    pool = Mempool(chain)
    stale, later, other = register(ORG1, 1, "-stale"), register(ORG1, 2), register(ORG2, 1)
    assert reasons(pool.admit([stale, later, other])) == ["", "", ""]
    assert pool.outdated([ORG1.id, ORG2.id]) == []
    commit(chain, [register(ORG1, 1)])  # the sender's nonce 1, taken by another of its txs
    assert pool.outdated([ORG1.id, ORG2.id]) == [(compute_tx_id(stale), stale)]
    pool.refuse([compute_tx_id(stale)], "replayed_nonce", "used")
    assert pool.outdated([ORG1.id]) == [] and len(pool) == 2


def test_a_node_refuses_and_unqueues_pending_txs_whose_nonce_a_committed_block_used(tmp_path: Path) -> None:
    """Admitted while the node was behind (the client read an old nonce), such a tx can never execute:
    when the block that used its nonce arrives (ordered, or by catch-up), the client is told
    `replayed_nonce` at once, and the replica stops queueing it (it would have caused view changes)."""
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    node = Node(NodeConfig.load(home.path))
    try:
        stale, later = register(home.org1, 1, "-stale", chain_id=CHAIN_ID), register(home.org1, 2, chain_id=CHAIN_ID)
        assert [a.accepted for a in node.mempool.admit([stale, later])] == [True, True]
        node.driver.submit([stale, later])
        assert node.replica.pending == 2
        executed = node.chain.build_block([register(home.org1, 1, chain_id=CHAIN_ID)], 0,
                                          node.chain.head.timestamp + 1000, node.key.id)
        node.chain.commit(executed, CommitCertificate(1, 0, executed.block_hash, ()))
        node.on_committed(executed)
        refusal = node.mempool.refusal(compute_tx_id(stale))
        assert refusal is not None and refusal.reason == "replayed_nonce"
        assert not node.mempool.is_pending(compute_tx_id(stale)) and node.mempool.is_pending(compute_tx_id(later))
        assert node.replica.pending == 1
    finally:
        asyncio.run(node.stop())


def test_when_consensus_gives_up_a_tx_its_senders_later_ones_come_back_with_it() -> None:
    """Ordered without their predecessor, the later nonces would fail `nonce_gap` for good (their ids used
    up): they are refused `unordered` with it, so the client sends all again, and they go on in order."""
    chain = new_chain()
    pool = Mempool(chain)
    n1, n2, n3, n5 = (register(ORG1, n) for n in (1, 2, 3, 5))
    other = register(ORG2, 1)
    assert reasons(pool.admit([n1, n2, n3, n5, other])) == [""] * 5
    assert pool.take_released() == [n1, n2, n3, other] and pool.gapped() == 1  # nonce 5 waits for 4
    withdrawn, refusals = pool.give_up([compute_tx_id(n2)], "unordered")
    assert withdrawn == [n3]  # n1 is before it; org2's tx and the waiting nonce 5 never depended on it
    assert [(r.tx_id, r.reason) for r in refusals] == [(compute_tx_id(r), "unordered") for r in (n2, n3)]
    assert "earlier nonce" in refusals[1].message
    assert [pool.is_pending(compute_tx_id(r)) for r in (n1, n2, n3, n5, other)] == [True, False, False, True, True]
    assert reasons(pool.admit([n2, n3])) == ["", ""] and pool.take_released() == [n2, n3]
    executed = commit(chain, [n1, n2, n3])
    assert [r.reason for r in executed.results] == ["", "", ""]


def test_a_node_unqueues_a_senders_later_txs_when_consensus_gives_up_on_one(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    node = Node(NodeConfig.load(home.path))
    try:
        n1, n2, n3 = (register(home.org1, n, chain_id=CHAIN_ID) for n in (1, 2, 3))
        assert [a.accepted for a in node.mempool.admit([n1, n2, n3])] == [True] * 3
        node.driver.submit(node.mempool.take_released())
        assert node.replica.pending == 3
        node.driver.withdraw([n1])  # the replica dropped it, and says so:
        node.on_dropped([n1], "unordered")
        assert node.replica.pending == 0
        assert [node.mempool.refusal(compute_tx_id(r)).reason for r in (n1, n2, n3)] == ["unordered"] * 3  # type: ignore[union-attr]
    finally:
        asyncio.run(node.stop())


# --------------------------------------------------------------------------------------------------
# Block pre-verification shares the checks and the parallel verification
# --------------------------------------------------------------------------------------------------


class RecordingPool(ThreadPoolExecutor):
    """A thread pool that notes the size of each chunk it is given."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.chunks: list[int] = []

    def map(self, fn: Callable[..., Any], *iterables: Any, **kwargs: Any) -> Any:
        (items,) = iterables
        items = list(items)
        self.chunks.extend(len(c) for c in items)
        return super().map(fn, items, **kwargs)


def _claims(n: int) -> list[tuple[bytes, bytes, bytes]]:
    digest = b"\x07" * 32
    sig = ORG1.sign_digest(digest)
    return [(ORG1.public_key, digest, sig if i % 3 else bytes(64)) for i in range(n)]


def test_verify_parallel_splits_into_one_chunk_per_worker_and_keeps_order() -> None:
    items = _claims(200)
    with RecordingPool(2) as pool:
        assert verify_parallel(items, pool, 2) == verify_many(items)
        assert pool.chunks == [100, 100]
        # A few items are verified inline: the pool is not used.
        assert verify_parallel(items[:10], pool, 2) == verify_many(items[:10])
        assert pool.chunks == [100, 100]
    assert verify_parallel(items, None, 2) == verify_many(items)


def _anchor_record(nonce: int) -> bytes:
    rec = AnchorRecord(nonce, b"\x01" * 32, 31337, "0x" + "ab" * 20, b"\x02" * 32, 9, "0x" + "cd" * 20)
    return encode(make_tx(VALIDATOR, CHAIN, nonce, "anchor.attest", rec))


def test_block_preverification_caches_what_admission_would_accept(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = new_chain()
    pool = Mempool(chain, verify_threads=2)
    try:
        good = [register(ORG1, n) for n in range(1, 70)]
        anchor = _anchor_record(1)  # a validator's system tx: the validator-aware sender rules apply
        refused = [forged(register(ORG2, 1), ORG1), register(STRANGER, 1), b"\x00"]
        block = [*good, anchor, *refused]
        pool.preverify(block)
        assert chain.verified is not None
        assert all(chain.verified.get(compute_tx_id(r)) is not None for r in [*good, anchor])
        assert all(chain.verified.get(compute_tx_id(r)) is None for r in refused)
        assert len(pool) == 0  # verified, not admitted
        calls = _count_execution_verifications(monkeypatch)
        results = commit(chain, block).results
        assert [r.reason for r in results[-3:]] == ["bad_signature", "unknown_sender", "malformed"]
        assert all(r.ok for r in results[:-4]), results
        assert results[-4].reason == "inactive"  # the attestation's envelope passed; this chain does not anchor
        assert calls == [1]  # only the forgery, whose sender is a member, reaches verification
    finally:
        pool.close()


def test_block_preverification_without_threads_leaves_verification_to_execution() -> None:
    chain = new_chain()
    Mempool(chain, verify_threads=1).preverify([register(ORG1, n) for n in range(1, 70)])
    assert chain.verified is not None and chain.verified.get(compute_tx_id(register(ORG1, 1))) is None


def test_the_node_preverifies_blocks_with_its_mempool(tmp_path: Path) -> None:
    node = Node(NodeConfig.load(make_home(tmp_path).path))
    try:
        assert node.app.preverify == node.mempool.preverify
        assert node.replica.config.max_pending_txs == node.mempool.limit
    finally:
        asyncio.run(node.stop())


# --------------------------------------------------------------------------------------------------
# Admission and execution agree
# --------------------------------------------------------------------------------------------------

_AGREE_CHAIN = new_chain()
commit(_AGREE_CHAIN, [register(ORG1, 1)])  # org1's next nonce is 2
_KEYS = {k.id: k for k in (ORG1, ORG2, VALIDATOR, STRANGER, ADMIN)}
_ANCHOR_PAYLOAD = encode(AnchorRecord(1, b"\x01" * 32, 1, "0x", b"\x02" * 32, 1, "0x"))


@st.composite
def mutated_txs(draw: st.DrawFn) -> bytes:
    """Org1's next tx with some fields changed, signed by its sender, by another key or by no one,
    maybe with one byte of the encoding flipped."""
    def field(original: Any, mutation: st.SearchStrategy[Any]) -> Any:
        return draw(mutation) if draw(st.booleans()) else original

    chain_id = field(CHAIN, st.just("other-chain"))
    kind = field("id.register", st.sampled_from(["anchor.attest", "member.add", "no.such.kind"]))
    sender = field(ORG1.id, st.sampled_from(sorted(_KEYS)))
    nonce = field(2, st.integers(min_value=0, max_value=4))
    payload = field(encode(IdRegister("88.100.1/p", URL)), st.one_of(st.just(_ANCHOR_PAYLOAD), st.binary(max_size=40)))
    body = TxBody(chain_id, kind, sender, nonce, payload)
    how = draw(st.sampled_from(["sender", "other", "garbage"]))
    if how == "garbage" or (how == "sender" and sender not in _KEYS):
        signature = draw(st.binary(min_size=64, max_size=64))
    else:
        signer = _KEYS[sender] if how == "sender" else draw(st.sampled_from(list(_KEYS.values())))
        signature = signer.sign(DOMAIN_TX, body)
    raw = encode(SignedTx(chain_id, kind, sender, nonce, payload, signature))
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        at = draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw = raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1 :]
    return raw


def _admission_verdict(raw: bytes) -> str:
    (a,) = Mempool(_AGREE_CHAIN).admit([raw])
    return "" if a.accepted else a.reason


def _execution_verdict(raw: bytes) -> str:
    try:
        _AGREE_CHAIN.machine.check_envelope(_AGREE_CHAIN.latest, raw, compute_tx_id(raw), None)
    except TxRejected as exc:
        return exc.reason.value
    return ""


@settings(max_examples=300, deadline=None)
@given(raw=mutated_txs())
def test_admission_accepts_exactly_what_execution_accepts_at_the_same_state(raw: bytes) -> None:
    admitted, executed = _admission_verdict(raw), _execution_verdict(raw)
    # Admission lets a nonce run ahead (the sender's pending txs fill the gap); nothing else differs.
    assert (admitted == "") == (executed in ("", "nonce_gap")), (admitted, executed)
    # Both refuse for the same reason, except that admission checks the nonce before the signature
    # (it verifies last, in bulk) where execution checks the signature first.
    if admitted not in ("", "replayed_nonce", "bad_signature"):
        assert admitted == executed


@pytest.mark.parametrize(
    "verdict",
    ["", "unknown_sender", "unauthorized", "unknown_kind", "bad_signature", "replayed_nonce", "wrong_chain",
     "invalid_payload", "malformed"],
)
def test_the_mutations_reach_every_verdict_of_the_shared_checks(verdict: str) -> None:
    """Else the property above would say little."""
    quick = settings(max_examples=2000, phases=[Phase.generate], database=None)
    raw = find(mutated_txs(), lambda r: _admission_verdict(r) == verdict, settings=quick)
    assert _admission_verdict(raw) == verdict


# --------------------------------------------------------------------------------------------------
# A sender's transactions go to consensus in nonce order
# --------------------------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_senders_transactions_arriving_out_of_order_go_to_consensus_in_nonce_order() -> None:
    chain = new_chain()
    pool = Mempool(chain)
    n1, n2, n3, n5 = (register(ORG1, n) for n in (1, 2, 3, 5))
    assert reasons(pool.admit([n3])) == [""] and pool.take_released() == []  # waits for nonce 2
    assert reasons(pool.admit([n2, n5])) == ["", ""] and pool.take_released() == []
    assert pool.gapped() == 3 and all(pool.is_pending(compute_tx_id(r)) for r in (n2, n3, n5))
    assert reasons(pool.admit([n1])) == [""]
    assert pool.take_released() == [n1, n2, n3]  # nonce 5 still waits for 4
    executed = commit(chain, [n1, n2, n3])
    assert [r.reason for r in executed.results] == ["", "", ""]  # no nonce_gap: the order they execute in
    pool.remove_committed(r.tx_id for r in executed.results)
    pool.advanced([ORG1.id])
    assert pool.take_released() == [] and pool.gapped() == 1
    n4 = register(ORG1, 4)
    assert reasons(pool.admit([n4])) == [""] and pool.take_released() == [n4, n5]
    assert pool.gapped() == 0


def test_a_waiting_transaction_goes_on_when_its_predecessor_commits_through_another_node() -> None:
    chain = new_chain()
    pool = Mempool(chain)
    n2 = register(ORG1, 2)
    assert reasons(pool.admit([n2, register(ORG2, 3)])) == ["", ""]
    assert pool.take_released() == []
    commit(chain, [register(ORG1, 1)])  # sent to another validator, never seen here
    pool.advanced([ORG1.id, ORG2.id])
    assert pool.take_released() == [n2] and pool.gapped() == 1  # org2's nonce 3 still lacks 1 and 2


def test_a_transaction_whose_predecessor_never_comes_is_refused_and_can_be_sent_again() -> None:
    chain = new_chain()
    clock = _Clock()
    pool = Mempool(chain, clock=clock)
    n2 = register(ORG1, 2)
    assert reasons(pool.admit([n2])) == [""]
    clock.now += GAP_WAIT_S - 1
    assert pool.expire_gaps() == []
    clock.now += 1
    (refusal,) = pool.expire_gaps()
    assert (refusal.tx_id, refusal.reason) == (compute_tx_id(n2), "nonce_gap") and "nonce 1" in refusal.message
    assert not pool.is_pending(refusal.tx_id) and pool.refusal(refusal.tx_id) == refusal
    assert pool.gapped() == 0 and pool.take_released() == []
    # Never ordered, so the same signed bytes are not a duplicate: sent again after its predecessor, it goes on.
    n1 = register(ORG1, 1)
    assert reasons(pool.admit([n1, n2])) == ["", ""] and pool.take_released() == [n1, n2]


def test_each_waiting_transaction_is_refused_at_its_own_time() -> None:
    """Waits that began at different times end at different times: after refusing the first, the mempool still
    knows when the next is due (it does not look again before then)."""
    chain = new_chain()
    clock = _Clock()
    pool = Mempool(chain, clock=clock)
    first, second = register(ORG1, 3), register(ORG2, 5)
    assert reasons(pool.admit([first])) == [""]
    clock.now += GAP_WAIT_S / 2
    assert reasons(pool.admit([second])) == [""]
    clock.now += GAP_WAIT_S / 2
    assert [r.tx_id for r in pool.expire_gaps()] == [compute_tx_id(first)]
    clock.now += GAP_WAIT_S / 2 - 1
    assert pool.expire_gaps() == [] and pool.gapped() == 1
    clock.now += 1
    assert [r.tx_id for r in pool.expire_gaps()] == [compute_tx_id(second)]
    assert pool.gapped() == 0


def test_waiting_transactions_are_bounded_per_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger.mempool, "MAX_GAPPED_PER_SENDER", 2)
    pool = Mempool(new_chain())
    assert reasons(pool.admit([register(ORG1, n) for n in (3, 4)])) == ["", ""]
    assert reasons(pool.admit([register(ORG1, 5), register(ORG1, 3, "-twin"), register(ORG2, 9)])) == [
        "nonce_gap", "nonce_gap", ""]  # over the bound; a second tx for a waiting nonce; another sender's
    assert reasons(pool.admit([register(ORG1, 1), register(ORG1, 2)])) == ["", ""]
    assert len(pool.take_released()) == 4  # nonces 1 to 4, the ones that waited included
