"""Where the state tree's nodes live in a store: keyed by birth first, so that each block's nodes are written
after every older one.

Theory of operation: a node written by the block of height h (its *birth*, ledger/smt.py) is stored under
`v/` || h (8 bytes) || hash, so a block's nodes form one run of keys after all others, which LevelDB's
compaction merges with little else on its way down the levels (by hash, every block's nodes landed all over
the key space and were rewritten level after level: docs/performance.md, "Height-first node keys"). Birth 0
is the older layout, `n/` || hash: stores written before births, block 0, and what state sync fetches (a
peer's nodes arrive without births). A root's birth is recorded under `o/` || root when it is not 0 (the
header names the root by hash alone). Nodes are content-addressed, so a wrong birth can only make a node
missing, never wrong: every record is checked against its hash where it enters from outside (restore,
state sync).

This module owns the key layout: every reader and writer of tree nodes goes through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ledger.smt import NodeGetter, RootBirth, SparseMerkleTree
from ledger.store import NS

BIRTH_BYTES = 8
HASH_BYTES = 32

Get = Callable[[bytes], bytes | None]


def node_key(birth: int, node_hash: bytes) -> bytes:
    if birth == 0:
        return NS.STATE_NODE + node_hash
    return NS.STATE_NODE_AT + birth.to_bytes(BIRTH_BYTES, "big") + node_hash


def node_getter(get: Get) -> NodeGetter:
    """A tree's node getter over a store's (or a snapshot's) `get`."""
    prefix, at = NS.STATE_NODE, NS.STATE_NODE_AT

    def get_node(birth: int, node_hash: bytes) -> bytes | None:
        if birth == 0:
            return get(prefix + node_hash)
        return get(at + birth.to_bytes(BIRTH_BYTES, "big") + node_hash)

    return get_node


def root_birth_getter(get: Get) -> RootBirth:
    def root_birth(root: bytes) -> int:
        raw = get(NS.ROOT_BIRTH + root)
        return 0 if raw is None else int.from_bytes(raw, "big")

    return root_birth


def tree_over(get: Get, **options: int) -> SparseMerkleTree:
    """A tree reading a store's nodes (cache_size, pin_depth as SparseMerkleTree takes them)."""
    return SparseMerkleTree(node_getter(get), root_birth=root_birth_getter(get), **options)


def node_puts(birth: int, nodes: dict[bytes, bytes], root: bytes, root_birth: int) -> list[tuple[bytes, bytes]]:
    """The records of an update's new nodes (written at `birth`) and of its root's birth."""
    prefix = node_key(birth, b"")  # one block's nodes share it: tens of thousands of them at a million keys
    puts = [(prefix + h, stored) for h, stored in nodes.items()]
    if root_birth:
        puts.append((NS.ROOT_BIRTH + root, root_birth.to_bytes(BIRTH_BYTES, "big")))
    return puts


def node_records(iterate: Callable[[bytes], Iterable[tuple[bytes, bytes]]]) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(key, node hash, stored node) of every node record, both layouts."""
    for prefix in (NS.STATE_NODE, NS.STATE_NODE_AT):
        for key, stored in iterate(prefix):
            yield key, key[-HASH_BYTES:], stored


def is_node_key(key: bytes) -> bool:
    """Whether `key` has the shape of a node record's key (either layout)."""
    if key.startswith(NS.STATE_NODE):
        return len(key) == len(NS.STATE_NODE) + HASH_BYTES
    return key.startswith(NS.STATE_NODE_AT) and len(key) == len(NS.STATE_NODE_AT) + BIRTH_BYTES + HASH_BYTES


__all__ = ["node_getter", "node_key", "node_puts", "node_records", "is_node_key", "root_birth_getter", "tree_over"]
