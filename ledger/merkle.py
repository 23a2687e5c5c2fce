"""RFC 6962 Merkle trees and the block-history accumulator.

Theory of operation
-------------------
RFC 6962 (section 2.1) defines the Merkle Tree Hash of a list of inputs
``D[0:n]``::

    MTH({})      = SHA-256()
    MTH({d0})    = SHA-256(0x00 || d0)                      -- leaf hash
    MTH(D[0:n])  = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
                   where k = largest power of two strictly below n

The 0x00/0x01 prefixes separate leaves from interior nodes, so no interior
node can be passed off as a leaf (second-preimage protection).

Because ``k`` is always a power of two, the left child of every interior node
is a *perfect* subtree (2**h leaves, aligned on a multiple of 2**h). Unrolling
the recursion, a tree of ``n`` leaves is a forest of perfect subtrees, one per
set bit of ``n`` (largest on the left) -- the *peaks* of a Merkle Mountain
Range -- and the root is those peaks folded ("bagged") from right to left::

    n = 7 = 4 + 2 + 1:  root = H(P4, H(P2, P1))

That is what :class:`HistoryAccumulator` exploits. Its state is only the size
and the peaks (at most 64 hashes). Appending a leaf pushes its leaf hash as a
new level-0 peak and merges equal-height peaks like a binary counter carry;
every merge completes one perfect subtree node ``(level, index, hash)``, which
is returned so the caller can persist it. Node ``(h, i)`` is the MTH of leaves
``[i*2**h, (i+1)*2**h)``; those nodes never change once complete, so storage
is append-only.

Any RFC 6962 subtree the proof algorithms need is either perfect (one stored
node) or lies on the right edge of the tree, where it is the bag of the perfect
subtrees that tile it. Hence :func:`history_inclusion_proof`,
:func:`history_consistency_proof` and :func:`history_root` answer for *any* past
tree size with O(log n) node lookups and never touch the leaves. The same
PATH/PROOF recursion is shared with the in-memory variants (which compute
subtree hashes from the leaves), so both give byte-identical proofs.

Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2: the verifier walks
the proof with ``(fn, sn)`` = (index, size-1) and checks that the proof is
exactly long enough (``sn`` reaches 0). Verifiers return ``False`` -- never
raise -- for any malformed input (wrong lengths, wrong types, out-of-range
indices), because they are fed untrusted data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

__all__ = [
    "HASH_SIZE",
    "EMPTY_ROOT",
    "HistoryAccumulator",
    "NodeGetter",
    "consistency_proof",
    "history_consistency_proof",
    "history_inclusion_proof",
    "history_root",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "merkle_root_from_hashes",
    "node_hash",
    "root_from_inclusion",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

# get_node(level, index_at_level) -> hash of a stored perfect subtree.
NodeGetter = Callable[[int, int], bytes]

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def merkle_root_from_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH of a list given as already-computed leaf hashes."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    # Pairing left to right and carrying an odd last node up unchanged builds
    # exactly the RFC tree: the split point is always a power of two, so only
    # the right edge is ever unpaired.
    while len(level) > 1:
        nxt = [_sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH of raw leaf inputs."""
    return merkle_root_from_hashes([leaf_hash(d) for d in leaves])


# --- proof construction, shared between the in-memory and stored-node forms ---

_Mth = Callable[[int, int], bytes]


def _path(m: int, lo: int, hi: int, mth: _Mth) -> list[bytes]:
    """RFC 6962 PATH(m, D[lo:hi]) (m relative to lo), leaf-to-root order."""
    out: list[bytes] = []
    # Collected root-to-leaf while descending, then reversed.
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            out.append(mth(lo + k, hi))
            hi = lo + k
        else:
            out.append(mth(lo, lo + k))
            lo += k
            m -= k
    out.reverse()
    return out


def _subproof(m: int, lo: int, hi: int, complete: bool, mth: _Mth) -> list[bytes]:
    """RFC 6962 SUBPROOF(m, D[lo:hi], b), in RFC order."""
    out: list[bytes] = []
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                out.append(mth(lo, hi))
            break
        k = _split(n)
        if m <= k:
            out.append(mth(lo + k, hi))
            hi = lo + k
        else:
            out.append(mth(lo, lo + k))
            lo += k
            m -= k
            complete = False
    out.reverse()
    return out


def _leaves_mth(hashes: Sequence[bytes]) -> _Mth:
    return lambda lo, hi: merkle_root_from_hashes(hashes[lo:hi])


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Audit path for leaf ``index`` over raw leaf inputs (leaf-to-root order)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} out of range for tree size {n}")
    hashes = [leaf_hash(d) for d in leaves]
    return _path(index, 0, n, _leaves_mth(hashes))


def consistency_proof(size1: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 PROOF(size1, D[0:n]) over raw leaf inputs."""
    n = len(leaves)
    if not 0 < size1 <= n:
        raise ValueError(f"old size {size1} out of range for tree size {n}")
    hashes = [leaf_hash(d) for d in leaves]
    return _subproof(size1, 0, n, True, _leaves_mth(hashes))


# --- verification ---


def _is_hash(x: object) -> bool:
    return isinstance(x, bytes) and len(x) == HASH_SIZE


def _is_index(x: object) -> bool:
    # bool is an int subclass; True/False as an index is a caller bug.
    return isinstance(x, int) and not isinstance(x, bool)


def root_from_inclusion(leaf_data_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Root implied by an inclusion proof (RFC 9162 2.1.3.2).

    Raises ValueError if the proof cannot belong to a tree of ``size`` leaves.
    """
    if not (_is_index(index) and _is_index(size)) or not 0 <= index < size:
        raise ValueError("index out of range")
    if not _is_hash(leaf_data_hash):
        raise ValueError("leaf hash must be 32 bytes")
    fn, sn = index, size - 1
    r = leaf_data_hash
    for p in proof:
        if not _is_hash(p):
            raise ValueError("proof element must be 32 bytes")
        if sn == 0:
            raise ValueError("proof too long")
        if fn & 1 or fn == sn:
            r = _sha256(b"\x01" + p + r).digest()
            # Right-edge nodes with no sibling at this level: skip levels.
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = _sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("proof too short")
    return r


def verify_inclusion(leaf_data_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """True iff ``proof`` shows leaf hash ``leaf_data_hash`` at ``index`` in the tree ``root``.

    Takes the leaf HASH (SHA-256(0x00 || data)), not the data. Never raises.
    """
    try:
        if not _is_hash(root) or isinstance(proof, (bytes, str)):
            return False
        return root_from_inclusion(leaf_data_hash, index, size, list(proof)) == root
    except Exception:
        return False


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> bool:
    """True iff ``proof`` shows tree ``root1`` (size1) is a prefix of ``root2`` (size2).

    Follows RFC 9162 2.1.4.2. Policy: a proof from the empty tree is rejected
    (it proves nothing), as transparency-dev/merkle does. Never raises.
    """
    try:
        if not (_is_index(size1) and _is_index(size2)) or isinstance(proof, (bytes, str)):
            return False
        path = list(proof)
        if size1 <= 0 or size1 > size2:
            return False
        if size1 == size2:
            # Nothing is hashed, so this is plain equality (as transparency-dev
            # does, whatever the root length).
            return not path and isinstance(root1, bytes) and root1 == root2
        if not (_is_hash(root1) and _is_hash(root2)) or not all(_is_hash(p) for p in path):
            return False
        if size1 & (size1 - 1) == 0:
            # Old tree is a perfect subtree of the new one: its root is the start node.
            path.insert(0, root1)
        if not path:
            return False
        fn, sn = size1 - 1, size2 - 1
        while fn & 1:
            fn >>= 1
            sn >>= 1
        fr = sr = path[0]
        for c in path[1:]:
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                fr = _sha256(b"\x01" + c + fr).digest()
                sr = _sha256(b"\x01" + c + sr).digest()
                while not fn & 1 and fn:
                    fn >>= 1
                    sn >>= 1
            else:
                sr = _sha256(b"\x01" + sr + c).digest()
            fn >>= 1
            sn >>= 1
        return sn == 0 and fr == root1 and sr == root2
    except Exception:
        return False


# --- history accumulator (MMR) ---


def _peak_positions(size: int) -> list[tuple[int, int]]:
    """(level, index_at_level) of the peaks of a tree of ``size`` leaves, left to right."""
    out = []
    pos = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append((level, pos >> level))
            pos += 1 << level
    return out


def _bag(peaks: Sequence[bytes]) -> bytes:
    if not peaks:
        return EMPTY_ROOT
    r = peaks[-1]
    for p in reversed(peaks[:-1]):
        r = _sha256(b"\x01" + p + r).digest()
    return r


def _stored_mth(get_node: NodeGetter) -> _Mth:
    def mth(lo: int, hi: int) -> bytes:
        # Every range the RFC recursion asks for starts on a multiple of a
        # power of two >= its length, so it tiles into aligned perfect nodes.
        hashes = []
        pos = lo
        for level in range((hi - lo).bit_length() - 1, -1, -1):
            if (hi - pos) >> level & 1:
                if pos & ((1 << level) - 1):
                    raise AssertionError(f"unaligned range [{lo}, {hi})")
                hashes.append(get_node(level, pos >> level))
                pos += 1 << level
        return _bag(hashes)

    return mth


def history_root(size: int, get_node: NodeGetter) -> bytes:
    """RFC 6962 root of the first ``size`` leaves from stored perfect-subtree nodes."""
    if size < 0:
        raise ValueError("negative size")
    return _bag([get_node(level, idx) for level, idx in _peak_positions(size)])


def history_inclusion_proof(index: int, size: int, get_node: NodeGetter) -> list[bytes]:
    """RFC 6962 inclusion proof for leaf ``index`` in the tree of ``size`` leaves.

    Uses only stored perfect-subtree nodes ``get_node(level, idx)``: O(log n)
    lookups. Identical to :func:`inclusion_proof` over the same leaves.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} out of range for tree size {size}")
    return _path(index, 0, size, _stored_mth(get_node))


def history_consistency_proof(size1: int, size2: int, get_node: NodeGetter) -> list[bytes]:
    """RFC 6962 consistency proof from ``size1`` to ``size2`` from stored nodes."""
    if not 0 < size1 <= size2:
        raise ValueError(f"bad consistency range {size1} -> {size2}")
    return _subproof(size1, 0, size2, True, _stored_mth(get_node))


class HistoryAccumulator:
    """Append-only MMR whose root equals the RFC 6962 root of the same leaves.

    State is ``size`` and ``peaks`` (left to right, i.e. largest subtree
    first); both are enough to restore it from storage.
    """

    __slots__ = ("_size", "_peaks")

    def __init__(self, size: int = 0, peaks: Sequence[bytes] = ()) -> None:
        peaks = list(peaks)
        if size < 0:
            raise ValueError("negative size")
        if len(peaks) != size.bit_count():
            raise ValueError(f"size {size} needs {size.bit_count()} peaks, got {len(peaks)}")
        if not all(_is_hash(p) for p in peaks):
            raise ValueError("peaks must be 32-byte hashes")
        self._size = size
        self._peaks = peaks

    @classmethod
    def from_leaves(cls, leaves: Sequence[bytes]) -> HistoryAccumulator:
        acc = cls()
        for leaf in leaves:
            acc.append(leaf)
        return acc

    @property
    def size(self) -> int:
        return self._size

    @property
    def peaks(self) -> list[bytes]:
        return list(self._peaks)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Append raw leaf input ``leaf`` (e.g. a block hash).

        Returns the perfect-subtree nodes completed by this append as
        ``(level, index_at_level, hash)``, level 0 (the leaf hash) first.
        """
        if not isinstance(leaf, bytes):
            raise TypeError("leaf must be bytes")
        h = leaf_hash(leaf)
        i = self._size
        level = 0
        out = [(0, i, h)]
        peaks = self._peaks
        # Binary-counter carry: each trailing 1 bit of the old size is a peak
        # of the same height as the running node, so merge them.
        while i & 1:
            h = _sha256(b"\x01" + peaks.pop() + h).digest()
            i >>= 1
            level += 1
            out.append((level, i, h))
        peaks.append(h)
        self._size += 1
        return out

    def root(self) -> bytes:
        return _bag(self._peaks)

    def __repr__(self) -> str:
        return f"HistoryAccumulator(size={self._size}, root={self.root().hex()})"
