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

Walking in parallel: every entry of a cursor's stack is a whole subtree whose hash is already checked, so a
cursor can be split (`Cursor.split`): its bottom entry (the largest subtree still to visit, the last in
pre-order) becomes a cursor of its own, and the rest stays. Each cursor has a `within` depth: the walk stays
inside the subtree rooted at that depth on the path to its position, and a peer is told so (`preorder_from`'s
`within`: right subtrees passed above that depth are not sent). Cursors of one tree never overlap, so they
can be asked of different peers at the same time, each chunk still checked against its checked parent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import NamedTuple

from ledger.smt import EMPTY, MissingNodeError, NodeGetter, child_births, encoding
from ledger.tree_store import node_getter, root_birth_getter

TOP_BIT = 255  # a position's path is a 256-bit integer, most significant bit first

_sha256 = hashlib.sha256


class ChunkRefused(ValueError):
    """A chunk of state-tree nodes failed its check against the certified root; the message says where."""


class Pending(NamedTuple):
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


def _checked_hash(enc: bytes) -> bytes:
    """ledger.smt.node_hash, inlined for the walk's hot loop (the format vectors pin both); ValueError if `enc`
    is not a node's canonical encoding."""
    if len(enc) == 65 and enc[0] == 1:
        return _sha256(enc).digest()
    if len(enc) >= 37 and enc[0] == 0:
        end = 37 + int.from_bytes(enc[33:37], "big")
        if end <= len(enc):
            path = enc[1:33]
            if _sha256(enc[37:end]).digest() != path:
                raise ValueError("leaf path is not the hash of its key")
            return _sha256(b"\x00" + path + _sha256(enc[end:]).digest()).digest()
    raise ValueError("corrupt SMT node encoding")


class Cursor:
    """Where a joining node's walk of a certified tree (or of one subtree of it) stands; see the module
    docstring. `within`: the depth of the subtree it is confined to (0: the whole tree)."""

    def __init__(self, stack: list[Pending], within: int = 0) -> None:
        self._stack = stack
        self.within = within

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

    def split(self) -> Cursor | None:
        """Hand the last subtree of this walk (the bottom of the stack: the shallowest, so the largest) to a new
        cursor, and confine this one to what lies before it; None if there is only one subtree left."""
        if len(self._stack) < 2:
            return None
        last = self._stack.pop(0)
        self.within = last.depth  # the rest lies under the left sibling of `last`, at that depth
        return Cursor([last], last.depth)

    def accept(self, nodes: list[bytes]) -> list[tuple[bytes, bytes]]:
        """Check `nodes` as the continuation of the walk; on success move on and return the (hash, encoding)
        of each, else raise ChunkRefused and stay. An empty chunk is refused while nodes remain."""
        if not nodes and self._stack:
            raise ChunkRefused("the chunk holds no nodes, but the tree is not complete")
        stack = list(self._stack)
        pop, push = stack.pop, stack.append
        out = []
        for i, enc in enumerate(nodes):
            if not stack:
                raise ChunkRefused(f"node {i} of the chunk lies beyond the end of the tree")
            expected, depth, path = pop()
            try:
                actual = _checked_hash(enc)
            except ValueError as exc:
                raise ChunkRefused(f"node {i} of the chunk is not a tree node: {exc}") from None
            if actual != expected:
                raise ChunkRefused(f"node {i} of the chunk (depth {depth}) is not the node the certified "
                                   f"root has there ({expected.hex()[:16]}...)")
            if len(enc) == 65 and enc[0] == 1:  # internal
                # Right first, so the left subtree is visited next; empty subtrees hold nothing to send.
                right, left = enc[33:65], enc[1:33]
                if right != EMPTY:
                    push(Pending(right, depth + 1, path | (1 << (TOP_BIT - depth))))
                if left != EMPTY:
                    push(Pending(left, depth + 1, path))
            out.append((actual, enc))
        self._stack = stack
        return out


def preorder_from(get_node: NodeGetter, root: bytes, depth: int, path: int, max_bytes: int,
                  within: int = 0, root_birth: int = 0) -> list[bytes]:
    """The encodings of the tree under `root` (its node written at `root_birth`) in pre-order, from the node at
    (`depth`, `path`) on, until `max_bytes` (at least one node), staying inside the subtree rooted at depth
    `within` on the path to that node (0: to the end of the tree). Empty if that position holds no node. Raises
    MissingNodeError if `root` is not a tree this store holds, ValueError if `within` lies below `depth`."""
    if not 0 <= within <= depth:
        raise ValueError(f"within ({within}) must lie between 0 and depth ({depth})")
    # The (hash, birth) of the subtrees still to visit: the walk needs no positions, only the order.
    stack: list[tuple[bytes, int]] = []
    current, d = (root, root_birth), 0
    while d < depth and current[0] != EMPTY:  # down to the position, remembering the right subtrees passed
        stored = _load(get_node, current)
        pair = children(encoding(stored))
        if pair is None:
            return []  # a leaf above the position: nothing lies there
        births = child_births(stored)
        if path >> (TOP_BIT - d) & 1:
            current = (pair[1], births[1])
        else:
            if pair[1] != EMPTY and d >= within:
                stack.append((pair[1], births[1]))
            current = (pair[0], births[0])
        d += 1
    if current[0] == EMPTY:
        return []
    stack.append(current)
    out: list[bytes] = []
    size = 0
    pop, push = stack.pop, stack.append
    while stack:
        stored = _load(get_node, pop())
        enc = encoding(stored)
        out.append(enc)
        size += len(enc)
        if size >= max_bytes:
            break
        if enc[0] == 1:
            right, left = enc[33:65], enc[1:33]
            left_birth, right_birth = child_births(stored)
            if right != EMPTY:
                push((right, right_birth))
            if left != EMPTY:
                push((left, left_birth))
    return out


def preorder_in(get: Callable[[bytes], bytes | None], root: bytes, depth: int, path: int, max_bytes: int,
                within: int = 0) -> list[bytes]:
    """`preorder_from` over the nodes of a store (or snapshot) that `get` reads (ledger/tree_store.py)."""
    return preorder_from(node_getter(get), root, depth, path, max_bytes, within, root_birth_getter(get)(root))


def _load(get_node: NodeGetter, ref: tuple[bytes, int]) -> bytes:
    stored = get_node(ref[1], ref[0])
    if stored is None:
        raise MissingNodeError(ref[0].hex())
    return stored


__all__ = ["ChunkRefused", "Cursor", "Pending", "children", "leaf_entry", "preorder_from", "preorder_in"]
