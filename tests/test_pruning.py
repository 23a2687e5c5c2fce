"""Pruning over real blocks, certificates and anchor attestations (the in-process AnchorChain): every anchored
height stays answerable, dropped heights are refused naming what is kept, never answered wrong, and commits
during a round lose nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ledger.chaindb import ChainDB, Pruned
from ledger.pruning import plan, prune, prune_now
from ledger.resolver.registry import IdRegister, identifier_key
from ledger.smt import MissingNodeError
from ledger.store import LevelDBStore
from ledger.tree_store import node_records, tree_over
from tests.test_anchor_attest import FOUR, AnchorChain
from tests.test_chain_state import ORG1, URL


def anchored_chain(chain: AnchorChain | None = None) -> tuple[AnchorChain, list[int]]:
    """30 blocks of registrations, heights 8 and 20 anchored (f+1 = 2 attestations each)."""
    c = chain or AnchorChain()
    anchored = []
    for target in (8, 20):
        c.work(target - c.db.height)
        claim = c.claim(target)
        assert c.attest(FOUR[0], claim) == "" and c.attest(FOUR[1], claim) == ""
        anchored.append(target)
    c.work(30 - c.db.height)
    return c, anchored


def answers(db: ChainDB, height: int) -> tuple[bytes | None, ...] | None:
    """What `height`'s state says of every name registered so far (None: refused as pruned)."""
    try:
        return tuple(db.prove(identifier_key(f"88/w{h}"), height)[1] for h in range(1, 31))
    except Pruned:
        return None


def state_nodes(db: ChainDB) -> int:
    return sum(1 for _ in node_records(db.store.iterate))


def test_every_anchored_height_stays_answerable_and_the_dropped_ones_are_refused() -> None:
    c, anchored = anchored_chain()
    db = c.db
    before = {h: answers(db, h) for h in range(1, db.height + 1)}
    nodes = state_nodes(db)
    result = prune_now(db, keep_heights=4)
    assert result is not None and result.deleted > 0 and state_nodes(db) == nodes - result.deleted
    # On an anchoring ledger, nothing above the latest anchor goes (it may still be anchored).
    assert result.below == anchored[-1] + 1 == db.pruned.below  # type: ignore[union-attr]
    assert set(anchored) <= set(result.kept)
    reopened = ChainDB(db.store, c.genesis)  # no node cached in memory: what the store holds answers
    for h in range(1, db.height + 1):
        if h >= result.below or h in result.kept:
            assert answers(reopened, h) == before[h], h  # the same answer as before
        else:
            with pytest.raises(Pruned, match=f"from {result.below} on"):
                reopened.prove(identifier_key("88/w1"), h)
            with pytest.raises(Pruned):
                reopened.view_at(h)
    # The chain goes on, a later anchor moves the line up, and older anchored heights are still answerable.
    c.work(10)
    claim = c.claim(35)
    assert c.attest(FOUR[0], claim) == "" and c.attest(FOUR[1], claim) == ""
    second = prune_now(db, keep_heights=4)
    assert second is not None and second.below == 36 and {8, 20, 35} <= set(second.kept)
    for h in (8, 20):
        assert answers(ChainDB(db.store, c.genesis), h) == before[h]
    assert plan(db, keep_heights=4) is None  # nothing more to drop until the next anchor


def test_a_ledger_without_anchoring_keeps_the_last_heights() -> None:
    c = AnchorChain(anchoring=None)
    c.work(12)
    before = answers(c.db, 12)
    result = prune_now(c.db, keep_heights=3)
    assert result is not None and (result.below, result.kept) == (10, ())
    reopened = ChainDB(c.db.store, c.genesis)
    assert answers(reopened, 10) is not None and answers(reopened, 9) is None and answers(reopened, 12) == before


def test_a_state_node_written_while_a_round_sweeps_is_never_deleted() -> None:
    """A new block can make a node equal to one no kept root reached when the mark began: the sweep's list
    names it, and it must stay."""
    c = AnchorChain(anchoring=None)
    c.work(3)
    db = c.db
    db.track_new_nodes(True)
    c.work(1)
    fresh = [key for key, h, _ in node_records(db.store.iterate) if h in (db._fresh_nodes or set())]
    assert fresh
    assert db.delete_state_nodes(fresh) == 0
    db.track_new_nodes(False)
    assert all(db.store.get(key) is not None for key in fresh)


def test_commits_during_a_round_on_leveldb_lose_nothing(tmp_path: Path) -> None:
    c, anchored = anchored_chain()
    store = LevelDBStore(tmp_path / "ledger.db")
    store.write_batch(list(c.db.store.iterate(b"")))
    db = ChainDB(store, c.db.genesis)
    c.db = db  # the chain builds on the LevelDB copy from here on

    async def scenario() -> None:
        round_ = asyncio.create_task(prune(db, keep_heights=4))
        for _ in range(6):  # commits while the mark runs on its thread and the sweep between batches
            assert c.run1(ORG1, "id.register", IdRegister(f"88/during-{db.height}", URL)) == ""
            await asyncio.sleep(0)
        assert (await round_) is not None

    try:
        asyncio.run(scenario())
        pruned = db.pruned
        assert pruned is not None
        on_disk = tree_over(store.get, cache_size=0)  # no cached nodes
        for h in (*pruned.kept, *range(pruned.below, db.height + 1)):  # every kept tree is whole
            root = db.state_root_at(h)
            assert root is not None
            try:
                assert sum(1 for _ in on_disk.items(root)) > 0
            except MissingNodeError as exc:
                raise AssertionError(f"height {h} lost state node {exc}") from None
        assert set(anchored) <= set(pruned.kept)
    finally:
        store.close()
