"""State sync in-process: the chunk check, the offer check, and a store filled by state sync (over a MemoryStore
chain with real blocks and certificates, two validator-set changes; HTTP replaced by httpx's MockTransport
calling the functions the routes call). tests/test_state_sync_process.py runs it on real processes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.chain import ValidatorSignature
from ledger.chaindb import ChainDB, NotHeld
from ledger.codec import decode, encode
from ledger.members import member_key
from ledger.proofs import build_state_proof, verify_state_proof
from ledger.smt import EMPTY, SparseMerkleTree, node_hash
from ledger.snapshot.offer import (
    OfferRefused,
    SnapshotOffer,
    StateChunk,
    check_offer,
    check_state_agrees,
    make_offer,
)
from ledger.snapshot.statesync import StateSyncError, scratch_path, state_sync
from ledger.snapshot.treewalk import ChunkRefused, Cursor, children, leaf_entry, preorder_from, preorder_in
from ledger.store import NS, LevelDBStore
from ledger.validators import ValidatorAdd
from tests.test_chain_state import ADMIN, ORG1, VALIDATORS, make_genesis
from tests.test_validator_set import NEW, SetChain, _changed_twice, empty_blocks
from tests.tree_nodes import by_hash

# --- the chunk check ------------------------------------------------------------------------------------


def _tree(n: int) -> tuple[dict[bytes, bytes], bytes, dict[bytes, bytes]]:
    """(node store, root, entries) of a tree of `n` entries."""
    nodes: dict[bytes, bytes] = {}
    entries = {f"key-{i}".encode(): f"value-{i}".encode() * (1 + i % 3) for i in range(n)}
    root, new = SparseMerkleTree(by_hash(nodes)).update(EMPTY, entries)
    nodes.update(new)
    return nodes, root, entries


NODES, ROOT, ENTRIES = _tree(300)


def _walk(chunk_bytes: int) -> dict[bytes, bytes]:
    """The leaves a cursor accepts, asking the tree for chunks of about `chunk_bytes` from where it stands."""
    cursor = Cursor.start(ROOT)
    leaves: dict[bytes, bytes] = {}
    while not cursor.done:
        at = cursor.next
        chunk = preorder_from(by_hash(NODES), ROOT, at.depth, at.path, chunk_bytes)
        for _, enc in cursor.accept(chunk):
            if children(enc) is None:
                key, value = leaf_entry(enc)
                leaves[key] = value
    return leaves


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=20_000))
def test_the_tree_in_chunks_of_any_size_is_the_tree(chunk_bytes: int) -> None:
    assert _walk(chunk_bytes) == ENTRIES


def _chunks(chunk_bytes: int) -> list[tuple[Cursor, list[bytes]]]:
    """Every chunk of a walk, each with a copy of the cursor that asked for it."""
    cursor = Cursor.start(ROOT)
    out = []
    while not cursor.done:
        at = cursor.next
        chunk = preorder_from(by_hash(NODES), ROOT, at.depth, at.path, chunk_bytes)
        out.append((Cursor(list(cursor.stack)), chunk))
        cursor.accept(chunk)
    return out


CHUNKS = _chunks(2000)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_changed_byte_anywhere_in_a_chunk_is_refused_and_the_cursor_stays(data: st.DataObject) -> None:
    asked, chunk = data.draw(st.sampled_from(CHUNKS))
    cursor = Cursor(list(asked.stack))
    index = data.draw(st.integers(0, len(chunk) - 1))
    position = data.draw(st.integers(0, len(chunk[index]) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = bytearray(chunk[index])
    changed[position] ^= flip
    bad = [*chunk[:index], bytes(changed), *chunk[index + 1:]]
    before = cursor.stack
    with pytest.raises(ChunkRefused):
        cursor.accept(bad)
    assert cursor.stack == before
    cursor.accept(chunk)  # the honest chunk is still what it expects


@pytest.mark.parametrize("tamper", [
    lambda c: c[1:],  # the first node left out
    lambda c: c[:1] + c[2:],  # one in the middle left out
    lambda c: [c[1], c[0], *c[2:]],  # two swapped
    lambda c: [*c, c[-1]],  # one repeated
    lambda c: [],  # nothing
], ids=["first-missing", "middle-missing", "swapped", "repeated", "empty"])
def test_a_chunk_with_nodes_left_out_added_or_reordered_is_refused(tamper: Callable[[list[bytes]], list[bytes]]
                                                                   ) -> None:
    cursor, chunk = Cursor(list(CHUNKS[1][0].stack)), CHUNKS[1][1]
    assert len(chunk) > 2
    with pytest.raises(ChunkRefused):
        cursor.accept(tamper(chunk))


def test_nodes_beyond_the_end_of_the_tree_are_refused() -> None:
    cursor, chunk = Cursor(list(CHUNKS[-1][0].stack)), CHUNKS[-1][1]
    with pytest.raises(ChunkRefused, match="beyond the end"):
        cursor.accept([*chunk, chunk[0]])


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=100, max_value=5_000), st.lists(st.integers(0, 7), min_size=1, max_size=400))
def test_a_walk_split_into_parts_in_any_order_holds_every_node_once(chunk_bytes: int, moves: list[int]) -> None:
    """Cursors split off at any time and advanced in any order (as parallel fetchers do, each asking with its
    `within`) accept every node of the tree exactly once, and nothing a peer sends lies outside its part."""
    parts = [Cursor.start(ROOT)]
    seen: list[bytes] = []
    step = 0
    while parts:
        move = moves[step % len(moves)]
        step += 1
        cursor = parts[move % len(parts)]
        if move >= 4 and (part := cursor.split()) is not None:
            parts.append(part)
            continue
        at = cursor.next
        chunk = preorder_from(by_hash(NODES), ROOT, at.depth, at.path, chunk_bytes, cursor.within)
        seen.extend(h for h, _ in cursor.accept(chunk))  # refuses anything beyond the cursor's part
        parts = [c for c in parts if not c.done]
    assert sorted(seen) == sorted(NODES) and len(seen) == len(NODES)


def test_a_split_leaves_one_part_to_each_cursor() -> None:
    cursor = Cursor.start(ROOT)
    cursor.accept(preorder_from(by_hash(NODES), ROOT, 0, 0, 300))
    before = cursor.stack
    part = cursor.split()
    assert part is not None and part.stack == before[:1] and cursor.stack == before[1:]
    assert part.within == cursor.within == before[0].depth
    single = Cursor([before[0]])
    assert single.split() is None and single.stack == before[:1]


def test_within_below_the_position_is_refused() -> None:
    with pytest.raises(ValueError, match="within"):
        preorder_from(by_hash(NODES), ROOT, 2, 0, 1000, within=3)


# --- the offer check --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def changed() -> tuple[SetChain, int, int]:
    return _changed_twice()


def _offer(chain: ChainDB) -> SnapshotOffer:
    return decode(SnapshotOffer, encode(make_offer(chain)))


def test_an_offer_after_two_set_changes_checks_against_the_genesis(changed: tuple[SetChain, int, int]) -> None:
    chain = changed[0]
    checked = check_offer(_offer(chain.db), chain.genesis)
    assert (checked.height, checked.state_root) == (chain.db.height, chain.db.head.state_root)
    assert [s.seq for s in checked.sets] == [0, 1, 2]
    check_state_agrees(checked, chain.db.latest, chain.genesis)


def _forged_cert(offer: SnapshotOffer) -> SnapshotOffer:
    sigs = offer.certificate.signatures
    return replace(offer, certificate=replace(offer.certificate, signatures=(
        ValidatorSignature(sigs[0].validator, bytes(64)), *sigs[1:])))


OFFER_TAMPERS: list[tuple[Callable[[SnapshotOffer], SnapshotOffer], str]] = [
    (_forged_cert, "bad commit signature"),
    (lambda o: replace(o, certificate=replace(o.certificate, signatures=o.certificate.signatures[:2])), "quorum"),
    (lambda o: replace(o, links=o.links[1:]), "change 1"),  # the first change left out
    (lambda o: replace(o, links=(o.links[0], replace(o.links[1], value=o.links[0].value))), "not in block"),
    (lambda o: replace(o, peaks=o.peaks[:-1] + (bytes(32),)), "history root"),
    (lambda o: replace(o, block=replace(o.block, txs=(b"x",))), "tx root"),
    (lambda o: replace(o, block=replace(o.block, header=replace(o.block.header, state_root=bytes(32)))),
     "does not name this block"),
]


@pytest.mark.parametrize(("tamper", "why"), OFFER_TAMPERS, ids=[w for _, w in OFFER_TAMPERS])
def test_a_tampered_offer_is_refused(changed: tuple[SetChain, int, int],
                                     tamper: Callable[[SnapshotOffer], SnapshotOffer], why: str) -> None:
    chain = changed[0]
    with pytest.raises(OfferRefused, match=why):
        check_offer(tamper(_offer(chain.db)), chain.genesis)


def test_an_offer_leaving_out_a_change_not_yet_in_force_is_caught_by_the_state() -> None:
    """The change's block is certified by the set before it, so the head's certificate still checks without
    it; the certified state holds it, and that refuses the offer."""
    chain = SetChain(make_genesis(validators=VALIDATORS))
    assert chain.run1(ADMIN, "validator.add", ValidatorAdd(NEW.public_key, "h", 9)) == ""
    empty_blocks(chain, 2)  # not in force yet (ACTIVATION_DELAY)
    offer = replace(_offer(chain.db), links=())
    checked = check_offer(offer, chain.genesis)
    with pytest.raises(OfferRefused, match="holds 1 validator-set changes, the offer proved 0"):
        check_state_agrees(checked, chain.db.latest, chain.genesis)


# --- a store filled by state sync ---------------------------------------------------------------------------


class Peer:
    """A peer's sync routes (the functions ledger/api/routes/sync.py calls), optionally lying in its chunks."""

    def __init__(self, chain: ChainDB, corrupt: bool = False) -> None:
        self.chain = chain
        self.corrupt = corrupt
        self.chunks = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/sync/snapshot":
            return httpx.Response(200, content=encode(make_offer(self.chain)))
        q = request.url.params
        nodes = preorder_in(self.chain.store.get, bytes.fromhex(q["root"]), int(q["depth"]), int(q["path"], 16),
                            int(q["max_bytes"]), int(q["within"]))
        self.chunks += 1
        if self.corrupt:
            nodes[-1] = nodes[-1][:-1] + bytes([nodes[-1][-1] ^ 1])
        return httpx.Response(200, content=encode(StateChunk(tuple(nodes))))


def _client(peers: dict[str, Peer]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda r: peers[f"{r.url.scheme}://{r.url.host}"](r)))


def test_a_synced_store_answers_like_the_source_and_goes_on_committing_the_same_blocks(
        changed: tuple[SetChain, int, int], tmp_path: Path) -> None:
    chain = changed[0]
    source = chain.db
    liar, honest = Peer(source, corrupt=True), Peer(source)
    report = state_sync(tmp_path, chain.genesis, ["http://liar", "http://honest"], chunk_bytes=1024,
                        client=_client({"http://liar": liar, "http://honest": honest}), sleep=lambda s: None)
    assert report.sources[0].refused >= 1 and report.sources[1].refused == 0  # asked first, refused, passed over
    assert honest.chunks > 1 and report.height == source.height
    store = LevelDBStore(tmp_path / "ledger.db")
    try:
        synced = ChainDB(store, chain.genesis)
        base = synced.base
        assert (base, synced.head_hash, synced.head.state_root) == (source.height, source.head_hash,
                                                                     source.head.state_root)
        # The latest-value index is the source's, key for key.
        assert dict(store.iterate(NS.STATE_LATEST)) == dict(source.store.iterate(NS.STATE_LATEST))
        # Below the base: a clear answer naming the oldest height held.
        with pytest.raises(NotHeld, match=f"from {base} on"):
            synced.view_at(base - 1)
        with pytest.raises(NotHeld):
            build_state_proof(synced, member_key(ORG1.id), base - 1)
        # A proof at the head carries both set changes (their blocks lie below the base) and verifies.
        proof = build_state_proof(synced, member_key(ORG1.id))
        assert proof == build_state_proof(source, member_key(ORG1.id))
        verify_state_proof(json.loads(json.dumps(proof)), chain.genesis)
        # The same next blocks on both: identical headers (state and history roots), so consensus goes on.
        for _ in range(3):
            chain.run()
            height = source.height
            block, cert = source.get_block(height), source.get_certificate(height)
            assert block is not None and cert is not None
            synced.commit(synced.execute_block(block), cert)
            assert synced.head_hash == source.head_hash
        # Anchor proofs link any held block to a later one: the same inclusion proofs as the source's.
        for index in range(base, synced.height):
            assert synced.history_proof(index, synced.height) == source.history_proof(index, source.height)
    finally:
        store.close()
    assert not scratch_path(tmp_path).exists()


class Concurrency:
    """Wraps the peers' transport: counts the requests in flight at once (each held a moment, so that
    parallel fetchers overlap)."""

    def __init__(self, peers: dict[str, Peer]) -> None:
        self.peers = peers
        self.lock = threading.Lock()
        self.now = self.most = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.002)
            return self.peers[f"{request.url.scheme}://{request.url.host}"](request)
        finally:
            with self.lock:
                self.now -= 1


def test_parallel_fetch_from_several_peers_passes_over_a_lying_one(changed: tuple[SetChain, int, int],
                                                                  tmp_path: Path) -> None:
    chain = changed[0]
    source = chain.db
    peers = {"http://liar": Peer(source, corrupt=True), "http://a": Peer(source), "http://b": Peer(source)}
    transport = Concurrency(peers)
    report = state_sync(tmp_path, chain.genesis, list(peers), chunk_bytes=128, fetchers=4, sleep=lambda s: None,
                        client=httpx.Client(transport=httpx.MockTransport(transport)))
    by_url = {s.url: s for s in report.sources}
    liar, a, b = peers.values()
    # The liar was asked first; every chunk it served was refused, and it was not asked again while honest
    # peers answered (at most one request per fetcher was already under way).
    assert 1 <= by_url["http://liar"].refused == liar.chunks <= 4
    assert by_url["http://a"].refused == by_url["http://b"].refused == 0
    # The honest peers shared the walk, several chunks in flight at once.
    assert a.chunks > 0 and b.chunks > 0 and transport.most > 1
    assert report.chunks == a.chunks + b.chunks
    store = LevelDBStore(tmp_path / "ledger.db")
    try:
        synced = ChainDB(store, chain.genesis)
        assert (synced.head_hash, synced.head.state_root) == (source.head_hash, source.head.state_root)
        assert dict(store.iterate(NS.STATE_LATEST)) == dict(source.store.iterate(NS.STATE_LATEST))
        assert dict(store.iterate(NS.STATE_NODE)).keys() == set(_nodes_of(source, source.head.state_root))
    finally:
        store.close()


def _nodes_of(chain: ChainDB, root: bytes) -> list[bytes]:
    """The keys by hash (NS.STATE_NODE + hash: how state sync stores them) of every node of the tree under `root`."""
    return [NS.STATE_NODE + node_hash(enc) for enc in preorder_in(chain.store.get, root, 0, 0, 1 << 40)]


def test_sync_resumes_where_a_killed_process_stopped(changed: tuple[SetChain, int, int], tmp_path: Path) -> None:
    chain = changed[0]
    peer = Peer(chain.db)

    class Killed(Exception):
        pass

    def dies_after_three(request: httpx.Request) -> httpx.Response:
        if peer.chunks == 3:
            raise Killed
        return peer(request)

    with pytest.raises(Killed):
        state_sync(tmp_path, chain.genesis, ["http://p"], chunk_bytes=1024,
                   client=httpx.Client(transport=httpx.MockTransport(dies_after_three)))
    assert scratch_path(tmp_path).exists() and not (tmp_path / "ledger.db").exists()
    peer.chunks = 0
    report = state_sync(tmp_path, chain.genesis, ["http://p"], chunk_bytes=1024,
                        client=httpx.Client(transport=httpx.MockTransport(peer)))
    assert report.resumed and report.chunks == peer.chunks
    fresh = Peer(chain.db)
    state_sync(tmp_path / "fresh", chain.genesis, ["http://p"], chunk_bytes=1024,
               client=httpx.Client(transport=httpx.MockTransport(fresh)))
    assert peer.chunks < fresh.chunks  # it did not start again
    store = LevelDBStore(tmp_path / "ledger.db")
    try:
        assert ChainDB(store, chain.genesis).head_hash == chain.db.head_hash
        assert dict(store.iterate(NS.STATE_LATEST)) == dict(chain.db.store.iterate(NS.STATE_LATEST))
    finally:
        store.close()


def test_only_liars_is_an_error_that_names_them(changed: tuple[SetChain, int, int], tmp_path: Path) -> None:
    chain = changed[0]
    with pytest.raises(StateSyncError, match="http://liar: [0-9]+ refused"):
        state_sync(tmp_path, chain.genesis, ["http://liar"], chunk_bytes=1024, max_failures=5, sleep=lambda s: None,
                   client=_client({"http://liar": Peer(chain.db, corrupt=True)}))
    assert not (tmp_path / "ledger.db").exists()


def test_an_offer_of_a_chain_without_changes_carries_no_links() -> None:
    chain = SetChain(make_genesis(validators=VALIDATORS))
    empty_blocks(chain, 3)
    offer = _offer(chain.db)
    assert offer.links == ()
    check_state_agrees(check_offer(offer, chain.genesis), chain.db.latest, chain.genesis)


def test_a_catch_up_reply_of_large_blocks_decodes() -> None:
    """Catch-up (replay from genesis) after state sync or instead of it: a reply of the most blocks that fit
    must be one record the requester can decode (it was bounded above the codec's record limit)."""
    from ledger.chain import Block, CommitCertificate
    from ledger.net.sync import MAX_BLOCKS_PER_REPLY, BlockBatch, BlockRequest, serve_blocks

    source = SetChain(make_genesis(validators=VALIDATORS)).db
    header = source.head

    class Big:
        height = MAX_BLOCKS_PER_REPLY

        def get_block(self, height: int) -> Block:
            return Block(replace(header, height=height), (bytes(150_000),))

        def get_certificate(self, height: int) -> CommitCertificate:
            return CommitCertificate(height, 0, bytes(32), ())

    batch = serve_blocks(Big(), BlockRequest(1, MAX_BLOCKS_PER_REPLY))
    assert 1 < len(batch.blocks) < MAX_BLOCKS_PER_REPLY  # bounded by bytes
    assert decode(BlockBatch, encode(batch)) == batch


def test_when_every_source_dropped_the_version_being_fetched_it_starts_again_from_a_newer_one(
        tmp_path: Path) -> None:
    chain = SetChain(make_genesis(validators=VALIDATORS))
    empty_blocks(chain, 3)
    first_root = chain.db.head.state_root
    peer = Peer(chain.db)
    serial = threading.Lock()  # the in-memory chain is not to be read while a block commits: one request at a time

    def pruning_peer(request: httpx.Request) -> httpx.Response:
        with serial:
            return answer(request)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/sync/state" and peer.chunks == 2 and chain.db.height == 3:
            chain.run1(ADMIN, "validator.add", ValidatorAdd(NEW.public_key, "h", 9))  # a new head...
        if request.url.params.get("root") == first_root.hex() and chain.db.height > 3:
            return httpx.Response(404, json={"error": "not_found"})  # ...and the old version pruned
        return peer(request)

    report = state_sync(tmp_path, chain.genesis, ["http://a", "http://b"], chunk_bytes=200, sleep=lambda s: None,
                        client=httpx.Client(transport=httpx.MockTransport(pruning_peer)))
    assert report.height == 4 and report.state_root == chain.db.head.state_root.hex()
    store = LevelDBStore(tmp_path / "ledger.db")
    try:
        assert dict(store.iterate(NS.STATE_LATEST)) == dict(chain.db.store.iterate(NS.STATE_LATEST))
    finally:
        store.close()


def test_node_run_state_sync_without_sources_says_what_to_configure(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from ledger.cli import main as cli_main
    from tests.nodeutil import make_home

    home = make_home(tmp_path)
    assert cli_main(["node", "run", "--home", str(home.path), "--state-sync"]) == 2
    assert '"sync": {"sources": [...]}' in capsys.readouterr().err


def test_a_config_with_a_bad_sync_setting_is_refused_by_name(tmp_path: Path) -> None:
    from ledger.config import ConfigError, NodeConfig, write_config

    write_config(tmp_path, {"http": {"port": 1}, "sync": {"mode": "state", "sources": ["10.0.0.1:8700"]}})
    with pytest.raises(ConfigError, match="sync.sources"):
        NodeConfig.load(tmp_path)
    write_config(tmp_path, {"http": {"port": 1}, "prune": {"keep_heights": 0}})
    with pytest.raises(ConfigError, match="prune.keep_heights"):
        NodeConfig.load(tmp_path)


def test_a_stopped_state_synced_node_refuses_to_make_a_backup_no_restore_accepts(
        changed: tuple[SetChain, int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ledger.cli import main as cli_main
    from tests.nodeutil import make_home

    chain = changed[0]
    home = make_home(tmp_path)
    state_sync(home.path / "data", chain.genesis, ["http://p"], chunk_bytes=1024,
               client=httpx.Client(transport=httpx.MockTransport(Peer(chain.db))))
    out = tmp_path / "synced.ledger"
    assert cli_main(["backup", "--home", str(home.path), "--out", str(out)]) == 1
    assert f"joined by state sync at height {chain.db.height}" in capsys.readouterr().err
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_the_chunk_route_serves_one_subtree_with_within(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from ledger.api.server import create_app
    from tests.nodeutil import make_home

    home = make_home(tmp_path)
    with TestClient(create_app(home.path)) as client:
        root = client.get("/v1/blocks/latest").json()["header"]["state_root"]
        whole = decode(StateChunk, client.get("/v1/sync/state", params={"root": root}).content).nodes
        pair = children(whole[0])
        assert pair is not None and EMPTY not in pair
        # The left subtree alone: what the walk sends from the left child, without the right subtree after it.
        left = decode(StateChunk, client.get("/v1/sync/state", params={
            "root": root, "depth": 1, "path": "0" * 64, "within": 1}).content).nodes
        assert 0 < len(left) < len(whole) - 1 and list(left) == list(whole[1:1 + len(left)])
        below = client.get("/v1/sync/state", params={"root": root, "depth": 1, "path": "0" * 64, "within": 9})
        assert decode(StateChunk, below.content).nodes == left  # within below the position: its own subtree
