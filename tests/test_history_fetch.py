"""Full history after state sync, in-process: the blocks below the snapshot fetched from peers and checked without
trusting them (ledger/snapshot/history.py, ChainDB.check_history / add_history / finish_history).

The source is a MemoryStore chain with real certificates and two validator-set changes (so certificates below
the snapshot are checked against the set of their own height); the joining store is filled by the real state
sync; HTTP is httpx's MockTransport calling the function the `/v1/sync/blocks` route calls. One multi-process
test is in tests/test_state_sync_process.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.chain import Block, CommitCertificate, InvalidBlock, compute_block_hash
from ledger.chain_history import NOT_EXECUTED
from ledger.chaindb import HEAD_KEY, ChainDB, HistoryNotHeld, NotHeld
from ledger.codec import CodecError, decode, encode
from ledger.members import member_key
from ledger.net.sync import BlockBatch, BlockRequest, CertifiedBlock, serve_blocks
from ledger.proofs import build_state_proof
from ledger.snapshot.history import HistoryFetch
from ledger.snapshot.statesync import state_sync
from ledger.state import StateMachine
from ledger.store import NS, LevelDBStore, height_key
from ledger.tx import compute_tx_id
from ledger.validators import validator_sender_lookup
from tests.test_chain_state import ORG1
from tests.test_state_sync import Peer
from tests.test_validator_set import SetChain, _changed_twice, empty_blocks

Entries = list[tuple[Block, CommitCertificate]]


@pytest.fixture(scope="module")
def source() -> SetChain:
    """Two set changes, then a block carrying a copy of the first change's transaction (it fails: its nonce is
    used), and a few more blocks."""
    chain, _, _ = _changed_twice()
    first = _first_tx(chain.db)
    chain.run(first)
    empty_blocks(chain, 3)
    return chain


def _first_tx(db: ChainDB) -> bytes:
    return next(block.txs[0] for h in range(1, db.height + 1) if (block := db.get_block(h)) and block.txs)


@pytest.fixture
def synced(source: SetChain, tmp_path: Path) -> Iterator[ChainDB]:
    """A store filled by state sync from `source` at its head."""
    state_sync(tmp_path, source.genesis, ["http://p"], client=httpx.Client(transport=httpx.MockTransport(
        Peer(source.db))))
    store = LevelDBStore(tmp_path / "ledger.db")
    try:
        yield ChainDB(store, source.genesis)
    finally:
        store.close()


class BlockPeer:
    """A peer's `/v1/sync/blocks` (what the route calls); `lie` rewrites the batch it answers."""

    def __init__(self, chain: ChainDB, lie: Callable[[Entries], Entries] | None = None) -> None:
        self.chain = chain
        self.lie = lie
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/sync/blocks"
        self.requests += 1
        q = request.url.params
        batch = serve_blocks(self.chain, BlockRequest(int(q["from"]), int(q["max"])))
        if self.lie is not None and batch.blocks:
            lied = self.lie([(e.block, e.certificate) for e in batch.blocks])
            batch = BlockBatch(batch.head_height, tuple(CertifiedBlock(b, c) for b, c in lied))
        return httpx.Response(200, content=encode(batch))


def _run(fetch: HistoryFetch, peers: dict[str, Callable[[httpx.Request], httpx.Response]]) -> HistoryFetch:
    async def run() -> HistoryFetch:
        async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: peers[f"http://{r.url.host}"](r))) as c:
            fetch._client = c
            await fetch.run()
        return fetch

    return asyncio.run(run())


def _fetch(chain: ChainDB, peers: dict[str, Callable[[httpx.Request], httpx.Response]], batch: int = 4
           ) -> HistoryFetch:
    """Run a whole fetch (and replay) over `peers` (asked in this order first)."""
    async def sleep(_: float) -> None:
        pass

    return _run(HistoryFetch(chain, list(peers), batch, sleep=sleep), peers)


def _assert_same_history(mine: ChainDB, source: ChainDB) -> None:
    """Every block below the base as the source has it, with its certificate, hash index and history nodes; and
    (the replay done) the state of every height, its peaks and the outcome of every transaction."""
    assert mine.blocks_from == 0 and mine.base == 0
    top = source.height
    for height in range(top + 1):
        assert mine.get_block(height) == source.get_block(height), height
        assert mine.get_certificate(height) == source.get_certificate(height), height
        assert mine.history_proof(height, top + 1) == source.history_proof(height, top + 1), height
        assert mine.state_root_at(height) == source.state_root_at(height), height
        assert mine.store.get(NS.HISTORY_PEAKS + height_key(height)) == \
            source.store.get(NS.HISTORY_PEAKS + height_key(height)), height
    assert dict(mine.store.iterate(NS.TX)) == dict(source.store.iterate(NS.TX))


def test_a_full_fetch_and_replay_make_an_archive_node_like_the_source(source: SetChain, synced: ChainDB) -> None:
    base = synced.base
    assert base == source.db.height and synced.blocks_from == base
    live = (synced.store.get(HEAD_KEY), dict(synced.store.iterate(NS.STATE_LATEST)))
    fetch = _fetch(synced, {"http://honest": BlockPeer(source.db)})
    _assert_same_history(synced, source.db)
    assert (synced.store.get(HEAD_KEY), dict(synced.store.iterate(NS.STATE_LATEST))) == live  # the head's keys
    assert fetch.state == "done" and fetch.fetched == base - 1 and fetch.refused == 0
    assert fetch.replayed == base and synced.replayed_height() == base - 1
    # Proofs at old heights, as the source gives them (the set changes' blocks now answer from state too).
    for height in (1, base // 2, base - 1):
        assert build_state_proof(synced, member_key(ORG1.id), height) == \
            build_state_proof(source.db, member_key(ORG1.id), height)
    # Reopened, the store knows it is an archive (nothing to fetch or replay again).
    reopened = ChainDB(synced.store, source.genesis)
    assert (reopened.blocks_from, reopened.base) == (0, 0)
    again = _fetch(reopened, {"http://honest": BlockPeer(source.db)})
    assert (again.fetched, again.replayed) == (0, 0)


def test_a_replay_killed_halfway_resumes_from_the_last_slice_written(source: SetChain, synced: ChainDB) -> None:
    base = synced.base
    synced_blocks = BlockPeer(source.db)
    fetch = HistoryFetch(synced, ["http://p"])
    fetch._replay = _no_replay  # type: ignore[method-assign]  # fetch the blocks only
    _run(fetch, {"http://p": synced_blocks})
    assert synced.replay_older(5) == 5 and synced.replay_older(5) == 10
    reopened = ChainDB(synced.store, source.genesis)  # (a kill -9: each slice was written synced)
    assert reopened.replayed_height() == 10 and reopened.base == base
    fetch = _fetch(reopened, {"http://p": synced_blocks})
    assert fetch.replayed == base - 11
    _assert_same_history(reopened, source.db)


def test_a_replay_whose_state_root_differs_from_the_header_stops_and_changes_nothing(source: SetChain,
                                                                                     synced: ChainDB) -> None:
    """Were this node's execution to differ from the chain's (a bug), the replay stops loudly; the base stays."""
    base = synced.base
    fetch = HistoryFetch(synced, ["http://p"])
    synced._replay_machine = StateMachine(source.genesis.chain_id, [], validator_sender_lookup(source.genesis))
    _run(fetch, {"http://p": BlockPeer(source.db)})
    assert fetch.state == "replay_failed" and synced.base == base
    first_tx_height = next(h for h in range(1, base) if (b := source.db.get_block(h)) and b.txs)
    assert synced.replayed_height() < first_tx_height
    with pytest.raises(NotHeld):
        synced.require_state(first_tx_height)


async def _no_replay() -> None:
    pass


def test_blocks_answer_from_the_oldest_fetched_while_the_fetch_is_under_way(source: SetChain, synced: ChainDB
                                                                           ) -> None:
    base = synced.base
    entries = [(b, c) for h in range(base - 3, base) if (b := source.db.get_block(h)) and
               (c := source.db.get_certificate(h))]
    synced.add_history(synced.check_history(entries))
    assert synced.blocks_from == base - 3
    # Their transactions are indexed at their first occurrence; the outcome is not claimed before the replay.
    first = compute_tx_id(_first_tx(source.db))
    theirs, mine = source.db.get_tx_location(first), synced.get_tx_location(first)
    assert theirs is not None and mine is not None and theirs.height < base - 3 <= mine.height
    assert (mine.ok, mine.reason) == (False, NOT_EXECUTED)
    synced.require_held(base - 3)
    with pytest.raises(HistoryNotHeld, match=f"holds blocks from {base - 3} on") as refused:
        synced.require_held(base - 4)
    assert refused.value.oldest == base - 3
    with pytest.raises(HistoryNotHeld) as no_state:
        synced.require_state(base - 1)
    assert no_state.value.oldest == base
    with pytest.raises(HistoryNotHeld):  # the accumulator's nodes below the base come with the last batch
        synced.history_proof(base - 1, base)


# --- lying peers ---------------------------------------------------------------------------------------------------


def _changed_tx(entries: Entries) -> Entries:
    """A transaction of a block exchanged for another (the header left as it was)."""
    out = list(entries)
    for i, (block, cert) in enumerate(out):
        if block.txs:
            out[i] = (Block(block.header, (block.txs[0][:-1] + bytes([block.txs[0][-1] ^ 1]), *block.txs[1:])), cert)
            return out
    block, cert = out[-1]
    out[-1] = (Block(block.header, (b"\x01",)), cert)
    return out


def _changed_header(entries: Entries) -> Entries:
    """A header field changed (the timestamp)."""
    block, cert = entries[0]
    return [(Block(replace(block.header, timestamp=block.header.timestamp + 1), block.txs), cert), *entries[1:]]


def _weak_certificate(entries: Entries) -> Entries:
    """The right blocks, with certificates short of a quorum (a stored certificate is served again)."""
    return [(block, replace(cert, signatures=cert.signatures[:1])) for block, cert in entries]


def _fork() -> SetChain:
    """The source's history up to the copied transaction, then other blocks: certified by the same validator sets."""
    chain, _, _ = _changed_twice()
    empty_blocks(chain, 4)
    return chain


OTHER = _fork()


def _other_chain(entries: Entries) -> Entries:
    """The blocks of the same heights from another chain with the same genesis, each certified by a quorum of
    the validators of its height: only the hash chain tells them apart."""
    out = []
    for block, _ in entries:
        h = block.header.height
        other, cert = OTHER.db.get_block(h), OTHER.db.get_certificate(h)
        assert other is not None and cert is not None
        out.append((other, cert))
    return out


LIES = {
    "changed-tx": _changed_tx,
    "changed-header": _changed_header,
    "weak-certificate": _weak_certificate,
    "another-chain": _other_chain,
    "reversed": lambda e: list(reversed(e)),
    "a-gap": lambda e: e[:1] + e[2:],
    "shifted": lambda e: e[1:] + e[:1],
}


@pytest.mark.parametrize("lie", LIES.values(), ids=LIES.keys())
def test_a_lying_peer_is_refused_and_another_asked(lie: Callable[[Entries], Entries], source: SetChain,
                                                   synced: ChainDB) -> None:
    liar, honest = BlockPeer(source.db, lie), BlockPeer(source.db)
    fetch = _fetch(synced, {"http://liar": liar, "http://honest": honest})  # the liar asked first
    _assert_same_history(synced, source.db)
    by_url = {s.url: s for s in fetch.sources}
    assert by_url["http://liar"].refused >= 1 and by_url["http://honest"].refused == 0
    assert fetch.refused == by_url["http://liar"].refused


def test_peers_without_the_blocks_or_down_are_passed_over(source: SetChain, synced: ChainDB, tmp_path: Path) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"\xc1 not msgpack")

    # A state-synced peer holds nothing below its own base: it answers no blocks.
    fetch = _fetch(synced, {"http://down": down, "http://garbage": garbage, "http://synced": BlockPeer(synced),
                            "http://honest": BlockPeer(source.db)})
    _assert_same_history(synced, source.db)
    by_url = {s.url: s for s in fetch.sources}
    assert by_url["http://down"].errors >= 1 and by_url["http://garbage"].errors >= 1
    assert by_url["http://synced"].lacking >= 1


def test_a_source_answering_fewer_blocks_than_asked_is_asked_for_fewer(source: SetChain, synced: ChainDB) -> None:
    """Like a reply cut at its byte bound: the fetch asks fewer at a time and still links every batch."""
    fetch = _fetch(synced, {"http://short": BlockPeer(source.db, lambda e: e[:2])}, batch=8)
    _assert_same_history(synced, source.db)
    assert fetch.refused == 0


# --- killed and resumed ------------------------------------------------------------------------------------------


class Killed(Exception):
    pass


def test_a_fetch_killed_halfway_resumes_where_it_stopped(source: SetChain, tmp_path: Path) -> None:
    state_sync(tmp_path, source.genesis, ["http://p"], client=httpx.Client(transport=httpx.MockTransport(
        Peer(source.db))))
    peer = BlockPeer(source.db)

    def dies_after_three(request: httpx.Request) -> httpx.Response:
        if peer.requests == 3:
            raise Killed
        return peer(request)

    store = LevelDBStore(tmp_path / "ledger.db")
    with pytest.raises(Killed):
        _fetch(ChainDB(store, source.genesis), {"http://p": dies_after_three}, batch=4)
    store.close()  # (a kill -9: every batch was written synced, with the oldest block held)
    store = LevelDBStore(tmp_path / "ledger.db")
    try:
        reopened = ChainDB(store, source.genesis)
        base = reopened.base
        assert reopened.blocks_from == base - 3 * 4
        peer.requests = 0
        fetch = _fetch(reopened, {"http://p": peer}, batch=4)
        assert fetch.started_from == base - 12 and fetch.fetched == base - 13
        assert peer.requests == -(-(base - 13) // 4)  # nothing asked twice
        _assert_same_history(reopened, source.db)
    finally:
        store.close()


# --- the check alone ------------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(st.data())
def test_any_changed_byte_of_an_offered_batch_is_refused(source: SetChain, synced: ChainDB, data: st.DataObject
                                                         ) -> None:
    base = synced.base
    entries = [(b, c) for h in range(base - 6, base) if (b := source.db.get_block(h)) and
               (c := source.db.get_certificate(h))]
    synced.check_history(entries)  # the honest batch passes
    index = data.draw(st.integers(0, len(entries) - 1))
    part = data.draw(st.sampled_from(["block", "cert"]))
    raw = bytearray(encode(entries[index][0] if part == "block" else entries[index][1]))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    try:
        changed = decode(Block if part == "block" else CommitCertificate, bytes(raw))
    except (CodecError, ValueError):
        return  # it does not decode: refused before any check
    tampered = list(entries)
    block, cert = tampered[index]
    tampered[index] = (changed, cert) if part == "block" else (block, changed)  # type: ignore[assignment]
    with pytest.raises(InvalidBlock):
        synced.check_history(tampered)


def test_a_batch_that_does_not_end_right_below_the_oldest_block_is_refused(source: SetChain, synced: ChainDB
                                                                          ) -> None:
    base = synced.base
    entries = [(b, c) for h in range(base - 5, base - 1) if (b := source.db.get_block(h)) and
               (c := source.db.get_certificate(h))]
    with pytest.raises(InvalidBlock, match="belongs"):
        synced.check_history(entries)  # honest blocks, one short of the oldest held
    with pytest.raises(InvalidBlock, match="no blocks"):
        synced.check_history([])
    block, cert = entries[0]
    assert compute_block_hash(block.header) == cert.block_hash
