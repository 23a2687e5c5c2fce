"""Pruning: a node that keeps the state of recent and anchored heights only (`prune.keep_heights` in config.json).

Theory of operation. By default a node is an archive node: every state-tree node of every height stays, so
every height is answerable. A pruning node keeps the state of:

- every height from `below` on, where `below` is `keep_heights` below the head, but never above the
  latest effective Ethereum anchor + 1 on a ledger that anchors (any later height may still become
  anchored: the anchoring service anchors a recent head, and anchors only move up);
- every anchored height (an effective `anchor/h/` record), and every height that committed a
  validator-set change (proofs carry those blocks' state proofs).

A round (`prune`) runs on the node's event loop, where commits run, with its slow parts on a thread:
it computes the plan, has the chain refuse the dropped heights from then on (`ChainDB.set_pruned`, so no
reader meets a half-deleted tree), starts tracking the nodes commits write, takes a LevelDB snapshot,
marks on a thread every node reachable from a kept root (a subtree already marked is not walked again:
nodes are content-addressed and shared between versions) and lists the snapshot's records of unmarked
nodes (both layouts of ledger/tree_store.py), then
deletes those in batches on the loop. A node that a commit wrote since the mark began is never deleted,
even if an old, unreachable node had the same content. Blocks, certificates and history are kept: only
state versions go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from ledger.anchor.records import latest_effective_height
from ledger.anchor.settings import get_settings
from ledger.chaindb import ChainDB, PrunedState
from ledger.smt import EMPTY, child_births
from ledger.store import NS, Snapshot
from ledger.tree_store import node_getter, node_records, root_birth_getter
from ledger.validators import sets_from

log = logging.getLogger("ledger.pruning")

ANCHOR_RECORDS = NS.STATE_LATEST + b"anchor/h/"  # the anchoring module's effective records, in the latest index
DELETE_BATCH = 5000


@dataclass(frozen=True)
class Plan:
    pruned: PrunedState
    roots: tuple[bytes, ...]  # the state roots of every height kept


@dataclass(frozen=True)
class PruneResult:
    below: int
    kept: tuple[int, ...]
    marked: int
    deleted: int
    seconds: float


def plan(chain: ChainDB, keep_heights: int) -> Plan | None:
    """What a round would keep; None when it would drop no height that is not dropped already."""
    head, latest = chain.height, chain.latest
    below = head - keep_heights + 1
    if get_settings(latest) is not None:  # an anchoring ledger: a height above the latest anchor may be anchored
        below = min(below, latest_effective_height(latest) + 1)
    below = max(below, chain.base)
    if below <= (chain.pruned.below if chain.pruned is not None else chain.base):
        return None
    anchored = {int.from_bytes(k[len(ANCHOR_RECORDS):], "big") for k, _ in chain.store.iterate(ANCHOR_RECORDS)}
    changes = {s.committed_height for s in sets_from(latest, 1, chain.genesis)[1:]}
    already = chain.pruned
    kept = tuple(sorted(h for h in anchored | changes if chain.base <= h < below and
                        (already is None or h >= already.below or h in already.kept)))
    roots = []
    for h in (*kept, *range(below, head + 1)):
        root = chain.state_root_at(h)
        assert root is not None  # every height from the base on has its root
        roots.append(root)
    return Plan(PrunedState(below, kept), tuple(roots))


def unreachable(snapshot: Snapshot, roots: tuple[bytes, ...]) -> tuple[int, list[bytes]]:
    """(how many nodes the roots reach, the keys of the snapshot's node records of every other node).

    Marked by hash: every copy of a reachable node is kept, whatever its birth (the same content written at
    two heights names children of the same content, so each copy's children are kept too), and a walk that
    meets a marked hash again does not go below it."""
    marked: set[bytes] = set()
    get_node = node_getter(snapshot.get)
    root_birth = root_birth_getter(snapshot.get)
    stack = [(r, root_birth(r)) for r in roots if r != EMPTY]
    while stack:
        h, birth = stack.pop()
        if h in marked:
            continue
        marked.add(h)
        stored = get_node(birth, h)
        if stored is None:  # not in this store (nothing to keep, and nothing to delete)
            continue
        if stored[0] == 1:
            for child, child_birth in zip((stored[1:33], stored[33:65]), child_births(stored), strict=True):
                if child != EMPTY and child not in marked:
                    stack.append((child, child_birth))
    return len(marked), [key for key, h, _ in node_records(snapshot.iterate) if h not in marked]


def prune_now(chain: ChainDB, keep_heights: int) -> PruneResult | None:
    """One round, all on the calling thread (no commits may run meanwhile: a stopped node, or a test)."""
    started = time.monotonic()
    p = plan(chain, keep_heights)
    if p is None:
        return None
    chain.set_pruned(p.pruned)
    snapshot = chain.store.snapshot()
    try:
        marked, doomed = unreachable(snapshot, p.roots)
    finally:
        snapshot.close()
    deleted = chain.delete_state_nodes(doomed)
    return PruneResult(p.pruned.below, p.pruned.kept, marked, deleted, time.monotonic() - started)


async def prune(chain: ChainDB, keep_heights: int) -> PruneResult | None:
    """One round on a running node (see the module docstring): commits go on meanwhile."""
    started = time.monotonic()
    p = plan(chain, keep_heights)
    if p is None:
        return None
    chain.set_pruned(p.pruned)
    chain.track_new_nodes(True)
    try:
        snapshot = chain.store.snapshot()
        try:
            marked, doomed = await asyncio.to_thread(unreachable, snapshot, p.roots)
        finally:
            snapshot.close()
        deleted = 0
        for i in range(0, len(doomed), DELETE_BATCH):
            deleted += chain.delete_state_nodes(doomed[i:i + DELETE_BATCH])
            await asyncio.sleep(0)  # commits and requests go on between batches
    finally:
        chain.track_new_nodes(False)
    result = PruneResult(p.pruned.below, p.pruned.kept, marked, deleted, time.monotonic() - started)
    log.info("pruned the state below height %d (kept: %d older heights): %d nodes kept, %d deleted in %.1f s",
             result.below, len(result.kept), result.marked, result.deleted, result.seconds)
    return result


__all__ = ["Plan", "PruneResult", "plan", "prune", "prune_now", "unreachable"]
