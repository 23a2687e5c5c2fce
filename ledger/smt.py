"""Authenticated, versioned key-value state: a compressed sparse Merkle tree.

Theory of operation
-------------------
Every key sits at a fixed position in a binary tree of depth 256: its *path*
is ``sha256(key)`` read most-significant bit first (bit 0 = go left/right at
the root). Storing 2**256 positions is impossible, so the tree is compressed
(the Jellyfish/Diem binary layout):

* an empty subtree is the constant ``EMPTY`` (32 zero bytes);
* a subtree holding exactly one leaf *is* that leaf (its hash does not depend
  on the depth it sits at), so a leaf hangs as high as it can;
* anything else is an internal node ``H(0x01 || left || right)``.

Leaf hash is ``H(0x00 || path || sha256(value))``. The 0x00/0x01 prefix keeps
leaves and internal nodes apart (an internal node cannot pose as a leaf, or the
other way round), and ``EMPTY`` is not a SHA-256 output anyone can produce.
With these rules the tree for a given key->value map is unique (*canonical*),
so the root depends only on the map: never on insertion order, batching or
history. Typical depth is about log2(n) (~20 for a million keys).

Versioning: nodes are immutable and content-addressed (node hash -> encoding).
An update writes new nodes along the changed paths and shares every untouched
subtree with the previous version, so each committed height only needs to
remember its root and every old root stays readable and provable for as long
as its nodes are kept. The node store is the caller's (LevelDB in the node): it
hands us a lookup function and receives the new nodes from :meth:`update` to
write atomically with its block. Node encodings::

    internal: 0x01 || left(32) || right(32)          (the hash preimage itself)
    leaf:     0x00 || path(32) || len(key) u32be || key || value

A leaf carries the key and value so :meth:`get` needs no second table and the
state can be listed (:meth:`items`).

Where a node is stored: a node is addressed by its *birth* (the height of the
update that wrote it, which the caller names) and its hash, so that a store
can key nodes by birth first and each block's nodes land together, after all
older ones (the Jellyfish tree keys nodes by version for the same reason). A
parent therefore records its children's births beside its encoding::

    stored internal: encoding || left birth u64be || right birth u64be
                     (or the encoding alone when both births are 0)
    stored leaf:     the encoding

Birth 0 means "stored by hash alone" (a store written before births, state
sync, and block 0), so older stores read as they are. Hashes, roots and
proofs depend on the encodings only, never on births.

Batch update: changes are hashed to paths and sorted once; one recursion walks
down the old tree, at each node splitting the sorted slice at the first path
whose bit at this depth is 1 (a bisect, because every path in the slice shares
the bits above). Untouched subtrees are returned as-is without being read.
Where the recursion reaches an empty slot or an old leaf, the remaining
changes (plus the old leaf unless it is being overwritten) are built into a
fresh canonical subtree. On the way back up, a node whose children went empty
collapses: a lone leaf beside an empty sibling is lifted into its parent's
slot. Each new node is hashed exactly once.

Proofs list the sibling hashes from the root down to where the key's path
ends: at its own leaf (inclusion), at ``EMPTY`` (absence), or at a different
leaf whose path shares the prefix walked so far (absence; the proof carries
that leaf's path and value hash). The verifier recomputes the root from the
bottom; it refuses an "other leaf" with the queried key's own path, and one
whose path does not agree with the key's path for the whole length of the
proof, so a proof made for one key cannot be reused for another.

A decoded-node cache (two generations of dicts: a cheap approximation of LRU
that costs one dict lookup on a hit) keeps recently used and written nodes in
memory. An update may also pin the top ``pin_depth`` levels: a block of
random keys passes through every node near the root but through each node a
little higher than the bottom too rarely for the generations to keep it, and
those are what a large tree would read from the store on every update.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EMPTY",
    "MissingNodeError",
    "NodeGetter",
    "RootBirth",
    "RootView",
    "SMTProof",
    "SparseMerkleTree",
    "child_births",
    "encoding",
    "key_path",
    "leaf_hash",
    "node_hash",
    "stored_internal",
    "verify_proof",
]

EMPTY = bytes(32)

# (birth, hash) -> the stored node (its encoding, and its children's births if not 0), or None.
NodeGetter = Callable[[int, bytes], bytes | None]
RootBirth = Callable[[bytes], int]

_sha256 = hashlib.sha256

# Decoded nodes, each ending in the birth of the copy it was read from (or written as):
# internal = (left, right, left birth, right birth, birth); leaf = (path, key, value, birth).
_Node = tuple[Any, ...]
_INTERNAL = 5
_BIRTH = 8  # bytes of a birth in a stored internal node

# What the update recursion knows about a subtree it returns.
_K_UNKNOWN = -1  # untouched subtree: not loaded, kind not known
_K_EMPTY = 0
_K_LEAF = 1
_K_INTERNAL = 2


class MissingNodeError(KeyError):
    """A node referenced by the tree is not in the node store (unknown root or pruned/corrupt store)."""


def key_path(key: bytes) -> bytes:
    """The key's 256-bit position in the tree."""
    return _sha256(key).digest()


def leaf_hash(path: bytes, value_hash: bytes) -> bytes:
    return _sha256(b"\x00" + path + value_hash).digest()


def _decode(stored: bytes, birth: int) -> _Node:
    """A stored node (see the module docstring) read from its copy of `birth`."""
    if stored[:1] == b"\x01":
        if len(stored) == 65:
            return (stored[1:33], stored[33:65], 0, 0, birth)
        if len(stored) == 65 + 2 * _BIRTH:
            return (stored[1:33], stored[33:65], int.from_bytes(stored[65:73], "big"),
                    int.from_bytes(stored[73:81], "big"), birth)
    elif len(stored) >= 37 and stored[0] == 0:
        klen = int.from_bytes(stored[33:37], "big")
        end = 37 + klen
        if end <= len(stored):
            return (stored[1:33], stored[37:end], stored[end:], birth)
    raise ValueError("corrupt SMT node encoding")


def stored_internal(left: bytes, right: bytes, left_birth: int, right_birth: int) -> bytes:
    """How an internal node is stored: its encoding, then its children's births unless both are 0."""
    enc = b"\x01" + left + right
    if left_birth or right_birth:
        return enc + left_birth.to_bytes(_BIRTH, "big") + right_birth.to_bytes(_BIRTH, "big")
    return enc


def encoding(stored: bytes) -> bytes:
    """The canonical encoding of a stored node (what is hashed, and what a peer is sent)."""
    if len(stored) == 65 + 2 * _BIRTH and stored[0] == 1:
        return stored[:65]
    return stored


def child_births(stored: bytes) -> tuple[int, int]:
    """The births of a stored internal node's (left, right) children."""
    if len(stored) == 65 + 2 * _BIRTH:
        return int.from_bytes(stored[65:73], "big"), int.from_bytes(stored[73:81], "big")
    return 0, 0


def node_hash(stored: bytes) -> bytes:
    """The hash a stored node is addressed by (what a node store fetched from elsewhere is checked
    against); ValueError if `stored` is not a node's canonical encoding (with its children's births)."""
    node = _decode(stored, 0)
    if len(node) == _INTERNAL:
        return _sha256(stored[:65]).digest()
    path, key, value, _ = node
    if _sha256(key).digest() != path:
        raise ValueError("leaf path is not the hash of its key")
    return leaf_hash(path, _sha256(value).digest())


@dataclass(frozen=True)
class SMTProof:
    """Sibling hashes from the root down, plus the blocking leaf for some absence proofs.

    ``leaf`` is ``(key_path, value_hash)`` of a different key whose leaf sits
    where the queried key's path ends; it is None for inclusion proofs and for
    absence proofs that end in an empty slot.
    """

    siblings: tuple[bytes, ...]
    leaf: tuple[bytes, bytes] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "siblings": [s.hex() for s in self.siblings],
            "leaf": None if self.leaf is None else [self.leaf[0].hex(), self.leaf[1].hex()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SMTProof:
        """Parse :meth:`to_dict` output; raises ValueError on malformed input."""
        try:
            raw_sib = d["siblings"]
            raw_leaf = d.get("leaf")
            if not isinstance(raw_sib, list) or len(raw_sib) > 256:
                raise ValueError("siblings must be a list of at most 256 hashes")
            siblings = tuple(_hex32(s) for s in raw_sib)
            leaf: tuple[bytes, bytes] | None = None
            if raw_leaf is not None:
                if not isinstance(raw_leaf, list) or len(raw_leaf) != 2:
                    raise ValueError("leaf must be [key_path, value_hash]")
                leaf = (_hex32(raw_leaf[0]), _hex32(raw_leaf[1]))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"malformed SMT proof: {e}") from None
        return cls(siblings, leaf)


def _hex32(s: object) -> bytes:
    if not isinstance(s, str) or len(s) != 64:
        raise ValueError("expected 64 hex digits")
    return bytes.fromhex(s)


def verify_proof(root: bytes, key: bytes, value: bytes | None, proof: SMTProof) -> bool:
    """True iff ``proof`` shows ``key`` maps to ``value`` (None: key absent) under ``root``.

    Never raises; any malformed input gives False.
    """
    try:
        if not (isinstance(root, bytes) and len(root) == 32 and isinstance(key, bytes)):
            return False
        siblings = proof.siblings
        if not isinstance(siblings, tuple) or len(siblings) > 256:
            return False
        for s in siblings:
            if not (isinstance(s, bytes) and len(s) == 32):
                return False
        path = _sha256(key).digest()
        n = len(siblings)
        leaf = proof.leaf
        if value is not None:
            if not isinstance(value, bytes) or leaf is not None:
                return False
            h = _sha256(b"\x00" + path + _sha256(value).digest()).digest()
        elif leaf is None:
            h = EMPTY
        else:
            if not (isinstance(leaf, tuple) and len(leaf) == 2):
                return False
            other_path, other_vhash = leaf
            if not (isinstance(other_path, bytes) and len(other_path) == 32):
                return False
            if not (isinstance(other_vhash, bytes) and len(other_vhash) == 32):
                return False
            diff = int.from_bytes(other_path, "big") ^ int.from_bytes(path, "big")
            # The other leaf must be a different key that lies on this key's
            # path for all n levels; otherwise it proves nothing about this key.
            if diff == 0 or 256 - diff.bit_length() < n:
                return False
            h = _sha256(b"\x00" + other_path + other_vhash).digest()
        bits = int.from_bytes(path, "big")
        shift = 256 - n
        for s in reversed(siblings):
            pair = s + h if bits >> shift & 1 else h + s
            h = _sha256(b"\x01" + pair).digest()
            shift += 1
        return h == root
    except Exception:
        return False


class SparseMerkleTree:
    """Versioned SMT over a node store addressed by (birth, hash).

    The object holds no root: every call names the root (version) it works
    on, so one instance serves all heights. ``get_node(birth, hash)`` returns
    the stored node (None if absent) and ``root_birth(root)`` the birth of a
    root's node (0 if the store has no record of it: stored by hash). Nodes
    returned by :meth:`update` must be readable through ``get_node`` (and the
    new root's birth through ``root_birth``) before an update or a read of
    their version needs them: the cache may have dropped them already (a
    caller that writes them only at commit serves them from memory until then).
    """

    def __init__(self, get_node: NodeGetter, cache_size: int = 1_000_000, pin_depth: int = 0,
                 root_birth: RootBirth | None = None) -> None:
        self._get_node = get_node
        self._root_birth = root_birth or _stored_by_hash
        self._half = max(cache_size, 0) // 2
        # Cached by hash; each decoded node ends in the birth of its copy, and a walk uses it only for the copy
        # its parent names: the same content written at two births may name children of different births,
        # and one of them may be a block never committed (a pipelined block a view change passed over).
        self._hot: dict[bytes, _Node] = {}
        self._cold: dict[bytes, _Node] = {}
        # The top `pin_depth` levels, kept apart from the generations: a block's random keys pass each
        # node of the lower of these levels too rarely to survive a generation flip, yet every update
        # walks through them. One slot per position (1 << depth | the path's first `depth` bits): the
        # node last written or read there, so at most 2**pin_depth - 1 nodes, none of them stale for long.
        self._pin_depth = pin_depth
        self._pinned: dict[int, tuple[bytes, _Node]] = {}
        self.new_root_birth = 0  # the birth of the root the last update returned

    # --- node cache ---

    def _remember(self, h: bytes, node: _Node) -> None:
        if self._half:
            hot = self._hot
            hot[h] = node
            if len(hot) >= self._half:
                # Generation flip: whatever was not used since the last flip is dropped.
                self._cold = hot
                self._hot = {}

    def _load_at(self, h: bytes, birth: int, depth: int, path: int, pin: bool = False) -> _Node:
        """Node (`birth`, `h`), found at `depth` on the way to `path` (a 256-bit path as an int); `pin`: an update
        walks it, so it takes its position's slot (a read of an old version leaves the slots to the newest)."""
        if depth >= self._pin_depth:
            return self._load(h, birth)
        slot = 1 << depth | path >> (256 - depth)
        pinned = self._pinned.get(slot)
        if pinned is not None and pinned[0] == h and pinned[1][-1] == birth:
            return pinned[1]
        if not pin:
            return self._load(h, birth)
        node = self._cached(h, birth) or self._fetch(h, birth)
        self._pinned[slot] = (h, node)
        return node

    def _cached(self, h: bytes, birth: int) -> _Node | None:
        node = self._hot.get(h) or self._cold.get(h)
        return node if node is not None and node[-1] == birth else None

    def _load(self, h: bytes, birth: int) -> _Node:
        node = self._hot.get(h)
        if node is not None and node[-1] == birth:
            return node
        node = self._cached(h, birth) or self._fetch(h, birth)
        self._remember(h, node)
        return node

    def _fetch(self, h: bytes, birth: int) -> _Node:
        stored = self._get_node(birth, h)
        if stored is None:
            raise MissingNodeError(h.hex() if not birth else f"{h.hex()} (written at height {birth})")
        return _decode(stored, birth)

    # --- reads ---

    def root_birth(self, root: bytes) -> int:
        """The birth of ``root``'s node (0 for the empty tree)."""
        return 0 if root == EMPTY else self._root_birth(root)

    def get(self, root: bytes, key: bytes, root_birth: int | None = None) -> bytes | None:
        """Value of ``key`` in version ``root`` (whose birth :meth:`root_birth` answers, unless given), or None
        if absent."""
        if root == EMPTY:
            return None
        path = _sha256(key).digest()
        bits = int.from_bytes(path, "big")
        shift = 255
        h, birth = root, self._root_birth(root) if root_birth is None else root_birth
        hot = self._hot
        load = self._load_at
        while h != EMPTY:
            node = hot.get(h)
            if node is None or node[-1] != birth:
                node = load(h, birth, 255 - shift, bits)
            if len(node) == _INTERNAL:
                bit = bits >> shift & 1
                h, birth = node[bit], node[2 + bit]
                shift -= 1
            else:
                return node[2] if node[0] == path else None
        return None

    def prove(self, root: bytes, key: bytes) -> SMTProof:
        """Inclusion proof if ``key`` is present in ``root``, else an absence proof."""
        path = _sha256(key).digest()
        bits = int.from_bytes(path, "big")
        shift = 255
        siblings: list[bytes] = []
        h = root
        birth = self._root_birth(root) if root != EMPTY else 0
        load = self._load_at
        while h != EMPTY:
            node = load(h, birth, 255 - shift, bits)
            if len(node) == _INTERNAL:
                bit = bits >> shift & 1
                siblings.append(node[1 - bit])
                h, birth = node[bit], node[2 + bit]
                shift -= 1
            elif node[0] == path:
                return SMTProof(tuple(siblings))
            else:
                return SMTProof(tuple(siblings), (node[0], _sha256(node[2]).digest()))
        return SMTProof(tuple(siblings))

    def items(self, root: bytes) -> Iterator[tuple[bytes, bytes]]:
        """All (key, value) pairs of version ``root``, in path order."""
        stack = [] if root == EMPTY else [(root, self._root_birth(root))]
        while stack:
            h, birth = stack.pop()
            node = self._load(h, birth)
            if len(node) == _INTERNAL:
                if node[1] != EMPTY:
                    stack.append((node[1], node[3]))
                if node[0] != EMPTY:
                    stack.append((node[0], node[2]))
            else:
                yield node[1], node[2]

    def warm(self, root: bytes) -> int:
        """Read the top ``pin_depth`` levels of version ``root`` into the pinned slots, a level at a time
        and each level in store order (birth, then hash), so that the first blocks after a start do not
        read them one by one at random. Returns the nodes read."""
        # (birth, hash, position below the level's depth)
        level = [(self._root_birth(root), root, 0)] if root != EMPTY else []
        read = 0
        for depth in range(self._pin_depth):
            below: list[tuple[int, bytes, int]] = []
            for birth, h, position in sorted(level):
                node = self._fetch(h, birth)
                read += 1
                self._pinned[1 << depth | position] = (h, node)
                if len(node) == _INTERNAL:
                    below += [(node[2 + bit], node[bit], position << 1 | bit) for bit in (0, 1)
                              if node[bit] != EMPTY]
            level = below
        return read

    # --- writes ---

    def update(self, root: bytes, changes: Mapping[bytes, bytes | None], birth: int = 0
               ) -> tuple[bytes, dict[bytes, bytes]]:
        """Apply ``changes`` (value None = delete) to version ``root``, writing new nodes at ``birth``.

        Returns ``(new_root, new_nodes)`` where ``new_nodes`` maps hash -> stored
        node for every node of the new version not already in ``root``'s tree
        (each to be stored at ``birth``). ``root`` itself is left intact. The new
        root's birth (``birth``, or an older one when the new root is a node that
        was there before) is left in ``new_root_birth``.
        """
        recs: list[tuple[bytes, bytes, bytes | None]] = []
        for k, v in changes.items():
            if not isinstance(k, bytes):
                raise TypeError(f"SMT keys must be bytes, not {type(k).__name__}")
            if v is not None and not isinstance(v, bytes):
                raise TypeError(f"SMT values must be bytes or None, not {type(v).__name__}")
            recs.append((_sha256(k).digest(), k, v))
        root_birth = self._root_birth(root) if root != EMPTY else 0
        if not recs:
            self.new_root_birth = root_birth
            return root, {}
        # Paths are unique per key, so sorting on them alone is a total order:
        # the result cannot depend on the mapping's iteration order.
        recs.sort(key=lambda r: r[0])
        paths = [r[0] for r in recs]
        keys = [r[1] for r in recs]
        vals = [r[2] for r in recs]
        ints = [int.from_bytes(p, "big") for p in paths]
        # ins[i] = number of inserts (non-None values) among the first i changes,
        # so "how many leaves would this slice add" is O(1).
        ins = [0] * (len(recs) + 1)
        c = 0
        for i, v in enumerate(vals):
            if v is not None:
                c += 1
            ins[i + 1] = c

        new_nodes: dict[bytes, bytes] = {}
        remember = self._remember
        load = self._load_at
        sha256 = _sha256
        pin_depth = self._pin_depth
        pinned = self._pinned

        def split(lo: int, hi: int, depth: int) -> int:
            # All paths in [lo, hi) agree above `depth`; the right half starts at
            # the smallest path with that prefix and bit `depth` set.
            s = 255 - depth
            return bisect_left(ints, ((ints[lo] >> s) | 1) << s, lo, hi)

        def make_leaf(i: int, depth: int) -> bytes:
            path, key, v = paths[i], keys[i], vals[i]
            assert v is not None
            h = sha256(b"\x00" + path + sha256(v).digest()).digest()
            new_nodes[h] = b"\x00" + path + len(key).to_bytes(4, "big") + key + v
            node = (path, key, v, birth)
            if depth < pin_depth:
                pinned[1 << depth | ints[i] >> (256 - depth)] = (h, node)
            else:
                remember(h, node)
            return h

        def make_internal(left: bytes, lb: int, right: bytes, rb: int, depth: int, lo: int) -> bytes:
            stored = stored_internal(left, right, lb, rb)
            h = sha256(stored[:65]).digest()
            new_nodes[h] = stored
            node = (left, right, lb, rb, birth)
            if depth < pin_depth:  # changes[lo] lies below this node: its path names the position
                pinned[1 << depth | ints[lo] >> (256 - depth)] = (h, node)
            else:
                remember(h, node)
            return h

        # A subtree the recursion returns: (hash, kind, birth of its node).
        Sub = tuple[bytes, int, int]

        def build(lo: int, hi: int, depth: int, extra_int: int, extra: bytes | None, extra_birth: int) -> Sub:
            """Fresh canonical subtree of the inserts in [lo, hi) plus the old leaf ``extra``."""
            cnt = ins[hi] - ins[lo]
            if extra is not None:
                cnt += 1
            if cnt == 0:
                return EMPTY, _K_EMPTY, 0
            if cnt == 1:
                if extra is not None:
                    return extra, _K_LEAF, extra_birth
                return make_leaf(bisect_left(ins, ins[lo] + 1, lo, hi + 1) - 1, depth), _K_LEAF, birth
            # cnt >= 2 implies at least one insert, so the slice is non-empty.
            mid = split(lo, hi, depth)
            if extra is not None and extra_int >> (255 - depth) & 1:
                left = build(lo, mid, depth + 1, 0, None, 0)
                right = build(mid, hi, depth + 1, extra_int, extra, extra_birth)
            else:
                left = build(lo, mid, depth + 1, extra_int, extra, extra_birth)
                right = build(mid, hi, depth + 1, 0, None, 0)
            return make_internal(left[0], left[2], right[0], right[2], depth, lo), _K_INTERNAL, birth

        def is_leaf(sub: Sub) -> bool:
            if sub[1] == _K_UNKNOWN:
                return len(self._load(sub[0], sub[2])) != _INTERNAL
            return sub[1] == _K_LEAF

        def apply(h: bytes, hb: int, lo: int, hi: int, depth: int) -> Sub:
            if h == EMPTY:
                return build(lo, hi, depth, 0, None, 0)
            node = load(h, hb, depth, ints[lo], True)
            if len(node) == _INTERNAL:
                old_l, old_r, old_lb, old_rb, _ = node
                mid = split(lo, hi, depth)
                nl = apply(old_l, old_lb, lo, mid, depth + 1) if lo < mid else (old_l, _K_UNKNOWN, old_lb)
                nr = apply(old_r, old_rb, mid, hi, depth + 1) if mid < hi else (old_r, _K_UNKNOWN, old_rb)
                if nl[0] == old_l and nr[0] == old_r:
                    return h, _K_INTERNAL, hb
                # Keep the tree canonical after deletions: a lone leaf next to an
                # empty sibling moves up into this node's place.
                if nl[0] == EMPTY:
                    if nr[0] == EMPTY:
                        return EMPTY, _K_EMPTY, 0
                    if is_leaf(nr):
                        return nr[0], _K_LEAF, nr[2]
                elif nr[0] == EMPTY and is_leaf(nl):
                    return nl[0], _K_LEAF, nl[2]
                return make_internal(nl[0], nl[2], nr[0], nr[2], depth, lo), _K_INTERNAL, birth
            # An old leaf: rebuild this slot from it and the changes that land here.
            lint = int.from_bytes(node[0], "big")
            i = bisect_left(ints, lint, lo, hi)
            same = i < hi and ints[i] == lint
            if same and hi - lo == 1 and vals[i] == node[2]:
                return h, _K_LEAF, hb  # rewrite with the same value
            if same:
                return build(lo, hi, depth, 0, None, 0)  # overwritten or deleted
            return build(lo, hi, depth, lint, h, hb)

        new_root, _, self.new_root_birth = apply(root, root_birth, 0, len(recs), 0)
        return new_root, new_nodes


def _stored_by_hash(root: bytes) -> int:
    return 0


class RootView:
    """State as of one root of a tree: a state view (ledger/state.py) that reads by walking from the root."""

    def __init__(self, smt: SparseMerkleTree, root: bytes) -> None:
        self._smt = smt
        self._root = root
        self._birth: int | None = None  # the root's, asked once (a store read) at the first get

    def get(self, key: bytes) -> bytes | None:
        if self._birth is None:
            self._birth = self._smt.root_birth(self._root)
        return self._smt.get(self._root, key, self._birth)
