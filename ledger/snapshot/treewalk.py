"""The state tree in chunks: a peer streams it in pre-order from a cursor, the joining node checks every node.

Theory of operation: the sparse Merkle tree is content-addressed, so a node whose root hash is certified can
check every node it receives against the hash its parent (already checked) names for it. Both sides walk
the same pre-order (node, then left subtree, then right subtree; empty subtrees skipped), which the tree's
canonical form makes unique: any honest peer sends the same sequence. A `Cursor` is where the walk stands:
the stack of subtrees still to visit, each with its hash and its position (depth and path bits), the top
being the next node expected. A peer is asked for the nodes "from the position of the top" and rebuilds
the same stack from the root (`preorder_from`), so the walk can move from one peer to another after any
chunk. `Cursor.accept` takes a chunk whole or not at all: one node that is not the expected one (a changed
byte, a node left out, one added, the order changed) refuses it and leaves the cursor where it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ledger.smt import EMPTY, MissingNodeError, NodeGetter, node_hash

TOP_BIT = 255  # a position's path is a 256-bit integer, most significant bit first


class ChunkRefused(ValueError):
    """A chunk of state-tree nodes failed its check against the certified root; the message says where."""


@dataclass(frozen=True)
class Pending:
    """A subtree still to visit: its hash and where it sits (`depth` bits of `path` lead to it)."""

    hash: bytes
    depth: int
    path: int


def children(enc: bytes) -> tuple[bytes, bytes] | None:
    """The (left, right) hashes of an internal node's encoding; None for a leaf."""
    if len(enc) == 65 and enc[0] == 1:
        return enc[1:33], enc[33:65]
    return None


def leaf_entry(enc: bytes) -> tuple[bytes, bytes]:
    """The (key, value) of a leaf's encoding (ledger/smt.py: 0x00 || path || len(key) || key || value)."""
    klen = int.from_bytes(enc[33:37], "big")
    return enc[37:37 + klen], enc[37 + klen:]


def _push_children(stack: list[Pending], left: bytes, right: bytes, depth: int, path: int) -> None:
    # Right first, so the left subtree is visited next; empty subtrees hold nothing to send.
    if right != EMPTY:
        stack.append(Pending(right, depth + 1, path | (1 << (TOP_BIT - depth))))
    if left != EMPTY:
        stack.append(Pending(left, depth + 1, path))


class Cursor:
    """Where a joining node's walk of a certified tree stands (see the module docstring)."""

    def __init__(self, stack: list[Pending]) -> None:
        self._stack = stack

    @classmethod
    def start(cls, root: bytes) -> Cursor:
        return cls([] if root == EMPTY else [Pending(root, 0, 0)])

    @property
    def done(self) -> bool:
        return not self._stack

    @property
    def next(self) -> Pending:
        """The node expected next (its position is what a peer is asked from)."""
        return self._stack[-1]

    @property
    def stack(self) -> tuple[Pending, ...]:
        return tuple(self._stack)

    def accept(self, nodes: list[bytes]) -> list[tuple[bytes, bytes]]:
        """Check `nodes` as the continuation of the walk; on success move on and return the (hash, encoding)
        of each, else raise ChunkRefused and stay. An empty chunk is refused while nodes remain."""
        if not nodes and self._stack:
            raise ChunkRefused("the chunk holds no nodes, but the tree is not complete")
        stack = list(self._stack)
        out = []
        for i, enc in enumerate(nodes):
            if not stack:
                raise ChunkRefused(f"node {i} of the chunk lies beyond the end of the tree")
            expected = stack.pop()
            try:
                actual = node_hash(enc)
            except ValueError as exc:
                raise ChunkRefused(f"node {i} of the chunk is not a tree node: {exc}") from None
            if actual != expected.hash:
                raise ChunkRefused(f"node {i} of the chunk (depth {expected.depth}) is not the node the certified "
                                   f"root has there ({expected.hash.hex()[:16]}...)")
            pair = children(enc)
            if pair is not None:
                _push_children(stack, pair[0], pair[1], expected.depth, expected.path)
            out.append((actual, enc))
        self._stack = stack
        return out


def preorder_from(get_node: NodeGetter, root: bytes, depth: int, path: int, max_bytes: int) -> list[bytes]:
    """The encodings of the tree under `root` in pre-order, from the node at (`depth`, `path`) on, until
    `max_bytes` (at least one node). Empty if that position holds no node. Raises MissingNodeError if
    `root` is not a tree this store holds."""
    stack: list[Pending] = []
    current, d = root, 0
    while d < depth and current != EMPTY:  # down to the position, remembering the right subtrees passed
        enc = _load(get_node, current)
        pair = children(enc)
        if pair is None:
            return []  # a leaf above the position: nothing lies there
        if path >> (TOP_BIT - d) & 1:
            current = pair[1]
        else:
            if pair[1] != EMPTY:
                stack.append(Pending(pair[1], d + 1, path & ~((1 << (TOP_BIT - d)) - 1) | (1 << (TOP_BIT - d))))
            current = pair[0]
        d += 1
    if current == EMPTY:
        return []
    stack.append(Pending(current, d, path))
    out: list[bytes] = []
    size = 0
    for enc in _walk(get_node, stack):
        out.append(enc)
        size += len(enc)
        if size >= max_bytes:
            break
    return out


def _walk(get_node: NodeGetter, stack: list[Pending]) -> Iterator[bytes]:
    while stack:
        item = stack.pop()
        enc = _load(get_node, item.hash)
        yield enc
        pair = children(enc)
        if pair is not None:
            _push_children(stack, pair[0], pair[1], item.depth, item.path)


def _load(get_node: NodeGetter, h: bytes) -> bytes:
    enc = get_node(h)
    if enc is None:
        raise MissingNodeError(h.hex())
    return enc


__all__ = ["ChunkRefused", "Cursor", "Pending", "children", "leaf_entry", "preorder_from"]
