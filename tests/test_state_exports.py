"""State exports (ledger/snapshot/exportfile.py, exports.py): a file answers every chunk request as the walk does,
damage is noticed and walked around, a rogue operator's edited export is caught by the joining node, and a
serving node offers its export's height (and the joining node syncs it)."""

from __future__ import annotations

import threading
import zlib
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.chaindb import ChainDB
from ledger.codec import decode, encode
from ledger.smt import EMPTY, SparseMerkleTree
from ledger.snapshot.exportfile import (
    HEADER,
    INDEX_ENTRY,
    RECORD,
    TRAILER,
    ExportDamaged,
    ExportFile,
    write_export,
)
from ledger.snapshot.exports import DIR_NAME, StateExports
from ledger.snapshot.offer import SnapshotOffer, StateChunk, check_offer, check_state_agrees, make_offer
from ledger.snapshot.statesync import state_sync
from ledger.snapshot.treewalk import children, preorder_from, preorder_in
from ledger.store import LevelDBStore
from ledger.validators import ACTIVATION_DELAY
from tests.test_validator_set import SetChain, _changed_twice, empty_blocks
from tests.tree_nodes import by_hash


def _tree(keys: list[int]) -> tuple[dict[bytes, bytes], bytes]:
    nodes: dict[bytes, bytes] = {}
    root, new = SparseMerkleTree(by_hash(nodes)).update(EMPTY, {f"k{k}".encode(): b"v" * (k % 7) for k in keys})
    nodes.update(new)
    return nodes, root


def _positions(nodes: dict[bytes, bytes], root: bytes) -> list[tuple[int, int]]:
    """(depth, path) of every node of the tree, in pre-order."""
    out, stack = [], [] if root == EMPTY else [(root, 0, 0)]
    while stack:
        h, depth, path = stack.pop()
        out.append((depth, path))
        pair = children(nodes[h])
        if pair is not None:
            if pair[1] != EMPTY:
                stack.append((pair[1], depth + 1, path | 1 << (255 - depth)))
            if pair[0] != EMPTY:
                stack.append((pair[0], depth + 1, path))
    return out


def _export(tmp: Path, nodes: dict[bytes, bytes], root: bytes, block_records: int = 3) -> ExportFile:
    target = tmp / "t.export"
    info = write_export(by_hash(nodes), root, 7, b"\x01" * 32, target, block_records=block_records)
    assert info is not None and not target.with_name("t.export.tmp").exists()
    return ExportFile(target)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(st.integers(0, 10_000), max_size=120, unique=True), block_records=st.integers(1, 9),
       asks=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 2**256 - 1), st.integers(0, 256),
                               st.integers(1, 3000), st.booleans()), min_size=1, max_size=25))
def test_an_export_answers_every_request_byte_for_byte_as_the_walk(
        tmp_path: Path, keys: list[int], block_records: int, asks: list[tuple[int, int, int, int, bool]]) -> None:
    """Random trees, random positions (a node's own, with random low path bits, or anywhere), `within` and
    `max_bytes`: the file's answer is the walk's."""
    nodes, root = _tree(keys)
    export = _export(tmp_path, nodes, root, block_records)
    positions = _positions(nodes, root)
    assert export.info.nodes == len(positions)
    for pick, noise, depth_any, max_bytes, at_node in asks:
        if at_node and positions:
            depth, path = positions[pick % len(positions)]
            path |= noise & ((1 << (256 - depth)) - 1)  # bits below the depth are not read by the walk
        else:
            depth, path = depth_any, noise
        within = pick % (depth + 1)
        assert export.chunk(depth, path, max_bytes, within) == preorder_from(by_hash(nodes), root, depth, path,
                                                                             max_bytes, within)


def test_an_export_refuses_a_within_below_the_position_as_the_walk(tmp_path: Path) -> None:
    nodes, root = _tree(list(range(50)))
    export = _export(tmp_path, nodes, root)
    for ask in (lambda: export.chunk(1, 0, 100, 2), lambda: preorder_from(by_hash(nodes), root, 1, 0, 100, 2)):
        with pytest.raises(ValueError, match="within"):
            ask()


def _edit_record(path: Path, record: int, fix_checksums: bool) -> None:
    """Flip the last byte of record `record`'s encoding; with `fix_checksums` recompute its block's CRC and the
    index's, as a rogue operator would."""
    data = bytearray(path.read_bytes())
    count, index_at, _, end = TRAILER.unpack_from(data, len(data) - TRAILER.size)
    entries = [list(e) for e in INDEX_ENTRY.iter_unpack(bytes(data[index_at:len(data) - TRAILER.size]))]
    at, seen = HEADER.size, 0
    while True:
        _, _, length = RECORD.unpack_from(data, at)
        if seen == record:
            data[at + RECORD.size + length - 1] ^= 1
            break
        at += RECORD.size + length
        seen += 1
    if fix_checksums:
        for e in entries:
            e[4] = zlib.crc32(bytes(data[e[2]:e[2] + e[3]]))
        index = b"".join(INDEX_ENTRY.pack(*e) for e in entries)
        data[index_at:len(data) - TRAILER.size] = index
        data[len(data) - TRAILER.size:] = TRAILER.pack(count, index_at, zlib.crc32(index, zlib.crc32(
            bytes(data[:HEADER.size]))), end)
    path.write_bytes(bytes(data))


def test_a_damaged_block_is_noticed_when_read(tmp_path: Path) -> None:
    nodes, root = _tree(list(range(200)))
    export = _export(tmp_path, nodes, root, block_records=8)
    _edit_record(export.path, 20, fix_checksums=False)
    with pytest.raises(ExportDamaged, match="block 2 .* checksum"):
        export.chunk(0, 0, 1 << 20)
    assert export.chunk(0, 0, 1) == preorder_from(by_hash(nodes), root, 0, 0, 1)  # the blocks before it still read


@pytest.mark.parametrize("damage", [
    lambda b: b[:-1],  # cut short
    lambda b: b[:100],
    lambda b: b"x" + b[1:],  # not the magic
    lambda b: b[:-TRAILER.size - 5] + bytes([b[-TRAILER.size - 5] ^ 1]) + b[-TRAILER.size - 4:],  # the index
], ids=["last-byte-cut", "cut-short", "magic", "index"])
def test_a_damaged_file_is_refused_when_opened(tmp_path: Path, damage: object) -> None:
    nodes, root = _tree(list(range(100)))
    path = _export(tmp_path, nodes, root).path
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(ExportDamaged):
        ExportFile(path)


# --- a serving node's exports --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def changed() -> tuple[SetChain, int, int]:
    return _changed_twice()


def _exports(chain: ChainDB, data_dir: Path, kept: int = 2, every: int = 1) -> StateExports:
    exports = StateExports(chain, data_dir, every=every, min_interval_s=0, kept=kept)
    exports.start()
    exports.after_commit(chain.height)
    exports.wait()
    return exports


class ExportingPeer:
    """A peer's sync routes as ledger/api/routes/sync.py serves them: the offer at its newest export, chunks
    from the export's file (else walked)."""

    def __init__(self, chain: ChainDB, exports: StateExports) -> None:
        self.chain = chain
        self.exports = exports
        self.walked = 0  # tree nodes read from the store (not from a file)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/sync/snapshot":
            return httpx.Response(200, content=encode(make_offer(self.chain, self.exports.offer_height())))
        q = request.url.params
        nodes = self.exports.serve(self._walk_get, bytes.fromhex(q["root"]), int(q["depth"]), int(q["path"], 16),
                                   int(q["max_bytes"]), int(q["within"]))
        return httpx.Response(200, content=encode(StateChunk(tuple(nodes))))

    def _walk_get(self, key: bytes) -> bytes | None:
        self.walked += 1
        return self.chain.store.get(key)


def test_an_offer_below_the_head_carries_the_set_changes_up_to_its_height(changed: tuple[SetChain, int, int]
                                                                          ) -> None:
    chain, _, removed = changed
    before_second = removed - ACTIVATION_DELAY - 1  # the block before the one that committed the second change
    offer = decode(SnapshotOffer, encode(make_offer(chain.db, before_second)))
    assert offer.block.header.height == before_second and len(offer.links) == 1
    checked = check_offer(offer, chain.genesis)
    check_state_agrees(checked, chain.db.view_at(before_second), chain.genesis)
    assert len(make_offer(chain.db, before_second + 1).links) == 2


def test_a_joining_node_syncs_the_export_and_catches_an_edited_one(changed: tuple[SetChain, int, int],
                                                                   tmp_path: Path) -> None:
    chain = changed[0]
    source = chain.db
    exports = _exports(source, tmp_path / "honest")
    liar_exports = _exports(source, tmp_path / "liar")
    height = source.height
    assert exports.offer_height() == height
    empty_blocks(chain, 2)  # the head moves on: the offer stays at the export
    (liar_file,) = (tmp_path / "liar" / DIR_NAME).glob("*.export")
    _edit_record(liar_file, 5, fix_checksums=True)  # the checksums recomputed: only the joining node can tell
    liar_exports = StateExports(source, tmp_path / "liar", every=0, min_interval_s=0, kept=2)
    liar_exports.start()  # reopened as after a restart (making no new export): the file checks, and is offered
    assert liar_exports.offer_height() == height
    peers = {"http://liar": ExportingPeer(source, liar_exports), "http://honest": ExportingPeer(source, exports)}
    report = state_sync(tmp_path / "joiner", chain.genesis, list(peers), chunk_bytes=256, fetchers=1,
                        sleep=lambda s: None, client=httpx.Client(transport=httpx.MockTransport(
                            lambda r: peers[f"{r.url.scheme}://{r.url.host}"](r))))
    assert sum(p.walked for p in peers.values()) == 0  # every chunk came from a file
    assert report.height == height and report.sources[0].refused >= 1 and report.sources[1].refused == 0
    store = LevelDBStore(tmp_path / "joiner" / "ledger.db")
    try:
        synced = ChainDB(store, chain.genesis)
        assert (synced.height, synced.head.state_root) == (height, source.state_root_at(height))
    finally:
        store.close()


def test_a_damaged_export_is_deleted_and_the_store_walked_instead(changed: tuple[SetChain, int, int],
                                                                   tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                                   ) -> None:
    source = changed[0].db
    exports = _exports(source, tmp_path)
    newest = exports.newest()
    assert newest is not None
    _edit_record(newest.path, 1, fix_checksums=False)
    get = source.store.get
    root = newest.root
    assert exports.serve(get, root, 0, 0, 1 << 20, 0) == preorder_in(get, root, 0, 0, 1 << 20, 0)
    assert "damaged, walking the store instead" in caplog.text
    assert not newest.path.exists() and exports.offer_height() is None  # the head is offered again


def test_leftovers_of_a_killed_export_and_exports_of_another_store_are_deleted_at_start(
        changed: tuple[SetChain, int, int], tmp_path: Path) -> None:
    source = changed[0].db
    folder = tmp_path / DIR_NAME
    folder.mkdir()
    (folder / f"{source.height:016d}.export.tmp").write_bytes(b"half written")
    nodes, root = _tree(list(range(10)))  # a tree this store does not hold at that height
    write_export(by_hash(nodes), root, source.height, b"\x02" * 32, folder / f"{source.height - 1:016d}.export")
    exports = StateExports(source, tmp_path, every=0, min_interval_s=0, kept=2)  # makes none of its own
    exports.start()
    assert list(folder.iterdir()) == [] and exports.offer_height() is None


def test_exports_kept_bounds_the_files_on_disk_and_the_interval_holds_back_the_next(
        changed: tuple[SetChain, int, int], tmp_path: Path) -> None:
    chain = changed[0]
    now = [0.0]
    exports = StateExports(chain.db, tmp_path, every=2, min_interval_s=10, kept=2, clock=lambda: now[0])
    exports.start()
    assert exports.after_commit(chain.db.height) == chain.db.height
    made = [chain.db.height]
    for _ in range(8):
        exports.wait()
        chain.run()
        now[0] += 4  # by `every` an export may start every second height, by the interval every third
        started = exports.after_commit(chain.db.height)
        if started is not None:
            made.append(started)
    exports.wait()
    assert [b - a for a, b in zip(made, made[1:], strict=False)] == [3, 3] + [3] * (len(made) - 3)
    on_disk = sorted(int(p.name.split(".")[0]) for p in (tmp_path / DIR_NAME).iterdir())
    assert on_disk == made[-2:] and exports.offer_height() == made[-1]


def test_an_export_stopped_halfway_leaves_nothing(tmp_path: Path) -> None:
    nodes, root = _tree(list(range(300)))
    stop = threading.Event()
    reads = 0

    def slow_get(birth: int, h: bytes) -> bytes | None:
        nonlocal reads
        reads += 1
        if reads == 100:
            stop.set()
        return nodes.get(h)

    assert write_export(slow_get, root, 1, bytes(32), tmp_path / "x.export", stop, block_records=16) is None
    assert list(tmp_path.iterdir()) == []


def test_the_record_layout_is_pinned() -> None:
    """The sizes docs/architecture.md and the module docstring give; a change makes old exports unreadable."""
    assert (HEADER.size, RECORD.size, INDEX_ENTRY.size, TRAILER.size) == (80, 38, 50, 28)


def test_a_node_offers_its_export_and_serves_its_chunks_from_the_file(tmp_path: Path) -> None:
    """The routes on a real node (LevelDB store, HTTP app): the offer names the export's height while the head
    moves on, chunks of its root come from the file, byte for byte the walk's, odd positions included."""
    import json
    import time

    from fastapi.testclient import TestClient

    from ledger.api.server import create_app
    from ledger.resolver.registry import IdRegister, ValueSpec
    from ledger.tx import make_tx, tx_to_plain
    from tests.nodeutil import CHAIN_ID, make_home

    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    config = json.loads((home.path / "config.json").read_text())
    config["sync"] = {"export_every": 2, "export_min_interval_s": 0}
    (home.path / "config.json").write_text(json.dumps(config))
    with TestClient(create_app(home.path)) as client:
        for nonce in range(1, 4):  # one block each: heights 1, 2, 3; an export of height 2
            values = (ValueSpec(1, "URL", f"https://twin.example/{nonce}"),)
            tx = make_tx(home.org1, CHAIN_ID, nonce, "id.register", IdRegister(f"88.100.1/EQ-{nonce}", values))
            assert client.post("/v1/tx?wait=true", json=tx_to_plain(tx)).json()["ok"] is True
        for _ in range(200):
            exports = client.get("/v1/status").json()["state_exports"]
            if exports["exporting"] is None and exports["exports"]:
                break
            time.sleep(0.05)
        assert [e["height"] for e in exports["exports"]] == [2]
        assert client.get("/v1/status").json()["height"] == 3
        offer = decode(SnapshotOffer, client.get("/v1/sync/snapshot").content)
        assert offer.block.header.height == 2
        check_offer(offer, home.genesis)
        root = offer.block.header.state_root
        node = client.app.state.node  # type: ignore[attr-defined]
        get = node.store.get
        asks = [(0, 0, 1 << 20, 0), (1, 0, 200, 1), (1, (1 << 256) - 1, 300, 0), (3, 12345 << 200, 1, 9),
                (256, 7, 100, 0)]
        for depth, path, max_bytes, within in asks:
            answer = client.get("/v1/sync/state", params={"root": root.hex(), "depth": depth, "path": f"{path:064x}",
                                                            "max_bytes": max_bytes, "within": within})
            assert decode(StateChunk, answer.content).nodes == tuple(preorder_in(
                get, root, depth, path, max_bytes, min(within, depth)))
        assert client.get("/v1/status").json()["state_exports"]["chunks_served"] == len(asks)


def test_a_node_catching_up_asks_for_no_export(tmp_path: Path) -> None:
    """Heights a node passes on its way to the head are not exported: not while its catch-up round runs, nor
    while the validators an observer follows claim a head further on; once at the head, it asks."""
    import asyncio

    from ledger.config import NodeConfig
    from ledger.node import Node
    from tests.nodeutil import make_home

    node = Node(NodeConfig.load(make_home(tmp_path).path), on_fatal=lambda exc: None)
    asked: list[int] = []
    node.exports.after_commit = asked.append  # type: ignore[assignment, method-assign]

    class Behind:
        def __init__(self, head: int) -> None:
            self.head = head

        def claims(self) -> list[int]:
            return [self.head]

    async def run() -> None:
        node._catch_up_task = asyncio.create_task(asyncio.sleep(10))
        node._maybe_export(5)
        node._catch_up_task.cancel()
        node._catch_up_task = None
        node.follower = Behind(100)  # type: ignore[assignment]
        node._maybe_export(50)
        node.follower = Behind(101)  # type: ignore[assignment]
        node._maybe_export(100)  # within a few blocks of the head the validators claim: caught up

    try:
        asyncio.run(run())
        assert asked == [100]
    finally:
        node.follower = None
        asyncio.run(node.stop())
