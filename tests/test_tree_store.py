"""Tree nodes keyed by the height that wrote them (ledger/tree_store.py): where a block's nodes go, and a store
written before births (every node by hash) read, extended, pruned and backed up as it is."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ledger.chaindb import ChainDB
from ledger.pruning import prune_now
from ledger.resolver.registry import IdRegister, identifier_key
from ledger.smt import EMPTY, encoding, verify_proof
from ledger.snapshot import archive
from ledger.snapshot.archive import BackupReader, write_stream
from ledger.snapshot.restore import restore, store_path
from ledger.store import NS, LevelDBStore, MemoryStore
from ledger.tree_store import node_records
from tests.test_chain_state import ORG1, URL, Chain


def _registered(chain: Chain, names: list[str]) -> None:
    for name in names:
        assert chain.run1(ORG1, "id.register", IdRegister(f"88/{name}", URL)) == ""


def _by_hash_only(store: MemoryStore) -> MemoryStore:
    """The same store as a node before births would have written it: every node under `n/` + hash, as its
    encoding alone, and no root records."""
    old = MemoryStore()
    puts = []
    for key, value in store.iterate(b""):
        if key.startswith(NS.STATE_NODE_AT):
            puts.append((NS.STATE_NODE + key[-32:], encoding(value)))
        elif not key.startswith(NS.ROOT_BIRTH):
            puts.append((key, value))
    old.write_batch(puts)
    return old


def _answers_every_height(db: ChainDB, names: list[str]) -> None:
    for height in range(db.height + 1):
        root = db.state_root_at(height)
        assert root is not None
        for name in names:
            key = identifier_key(f"88/{name}")
            _, value, proof = db.prove(key, height)
            assert verify_proof(root, key, value, proof)
    assert dict(db.smt.items(db.head.state_root)) == {
        k[len(NS.STATE_LATEST):]: v for k, v in db.store.iterate(NS.STATE_LATEST)}


def test_a_blocks_new_nodes_are_stored_under_its_height_and_block_zeros_by_hash() -> None:
    chain = Chain()
    _registered(chain, ["a", "b", "c"])
    at = len(NS.STATE_NODE_AT)
    births = [int.from_bytes(key[at:at + 8], "big") for key, _ in chain.db.store.iterate(NS.STATE_NODE_AT)]
    assert sorted(set(births)) == [1, 2, 3]
    assert sum(1 for _ in chain.db.store.iterate(NS.STATE_NODE)) > 0  # block 0's (genesis members, prefixes)
    for height in (1, 2, 3):
        root = chain.db.state_root_at(height)
        assert chain.db.store.get(NS.ROOT_BIRTH + root) == height.to_bytes(8, "big")  # type: ignore[operator]
    # The keys of block 3's nodes sort after every other node's: one run at the end of the table.
    keys = [key for key, _ in chain.db.store.iterate(NS.STATE_NODE_AT)]
    assert keys == sorted(keys) and births == sorted(births)


def test_a_store_written_before_births_is_read_extended_and_pruned_as_it_is() -> None:
    chain = Chain()
    names = [f"old{i}" for i in range(30)]
    _registered(chain, names)
    old = _by_hash_only(chain.db.store)  # type: ignore[arg-type]
    assert next(iter(old.iterate(NS.STATE_NODE_AT)), None) is None
    reopened = Chain(chain.genesis, old)
    _answers_every_height(reopened.db, names)
    more = [f"new{i}" for i in range(30)]
    _registered(reopened, more)  # new blocks write by height, over a tree stored by hash
    assert next(iter(old.iterate(NS.STATE_NODE_AT)), None) is not None
    _answers_every_height(reopened.db, names + more)
    result = prune_now(reopened.db, keep_heights=5)
    assert result is not None and result.deleted > 0
    for height in range(result.below, reopened.db.height + 1):  # the kept trees are whole, in both layouts
        root = reopened.db.state_root_at(height)
        assert root is not None
        assert len(dict(reopened.db.smt.items(root))) >= len(names)
    deleted_by_hash = {h for _, h, _ in node_records(chain.db.store.iterate)} - {
        h for _, h, _ in node_records(old.iterate)}
    assert deleted_by_hash  # old versions' nodes went, whichever layout held them


def test_a_backup_made_before_births_is_restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chain = Chain()
    names = [f"b{i}" for i in range(10)]
    _registered(chain, names)
    old = _by_hash_only(chain.db.store)  # type: ignore[arg-type]
    with monkeypatch.context() as m:  # the writer of that time: five parts
        m.setattr(archive, "PARTS", {name: archive.PARTS[name] for name in archive.PARTS_BEFORE_BIRTHS})
        snapshot = old.snapshot()
        data = b"".join(write_stream(snapshot, chain.genesis))
        snapshot.close()
    path = tmp_path / "old.backup"
    path.write_bytes(data)
    reader = BackupReader(path)
    assert reader.header["parts"] == archive.PARTS_BEFORE_BIRTHS
    reader.close()
    restore(path, tmp_path / "data", chain.genesis, stream=io.StringIO())
    store = LevelDBStore(store_path(tmp_path / "data"))
    try:
        restored = Chain(chain.genesis, store)
        assert restored.db.head_hash == chain.db.head_hash
        _answers_every_height(restored.db, names)
        _registered(restored, ["after"])
        assert restored.db.prove(identifier_key("88/after"))[1] is not None
    finally:
        store.close()


def test_an_empty_child_names_no_birth() -> None:
    chain = Chain()
    _registered(chain, ["x"])
    for _, _, stored in node_records(chain.db.store.iterate):
        if stored[0] == 1 and len(stored) > 65:
            for child, birth in ((stored[1:33], stored[65:73]), (stored[33:65], stored[73:81])):
                assert child != EMPTY or birth == bytes(8)
