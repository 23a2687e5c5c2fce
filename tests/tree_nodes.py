"""State-tree node stores for tests: by hash alone (the older layout), or by (birth, hash) as a node keys them."""

from __future__ import annotations

from typing import Any

from ledger.smt import NodeGetter, SparseMerkleTree


def by_hash(nodes: dict[bytes, bytes]) -> NodeGetter:
    """A getter over nodes stored by hash alone: every reference it is asked for must name birth 0."""

    def get(birth: int, h: bytes) -> bytes | None:
        assert birth == 0, f"a tree written at birth 0 referred to birth {birth}"
        return nodes.get(h)

    return get


class BirthStore:
    """Nodes keyed by (birth, hash), and the birth of each root written, as ledger/tree_store.py keeps them."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, bytes], bytes] = {}
        self.roots: dict[bytes, int] = {}
        self.reads: list[tuple[int, bytes]] = []

    def get(self, birth: int, h: bytes) -> bytes | None:
        self.reads.append((birth, h))
        return self.nodes.get((birth, h))

    def root_birth(self, root: bytes) -> int:
        return self.roots.get(root, 0)

    def tree(self, **options: Any) -> SparseMerkleTree:
        return SparseMerkleTree(self.get, root_birth=self.root_birth, **options)

    def update(self, tree: SparseMerkleTree, root: bytes, changes: dict[bytes, bytes | None], birth: int
               ) -> bytes:
        """`tree.update` at `birth`, its new nodes stored; the new root."""
        new_root, nodes = tree.update(root, changes, birth)
        self.nodes.update(((birth, h), stored) for h, stored in nodes.items())
        self.roots[new_root] = tree.new_root_birth
        return new_root
