"""The replica's log: per-height slots, the client transaction queue, and the persistence scheme.

Theory of operation
-------------------
A `Slot` holds everything a replica knows about one height (sequence number) in the current view:
the pre-prepare it accepted (or one waiting for its parent), the prepares and commits received
(at most one per sender), and what it sent. Two facts outlive a view: `proof`, the replica's
highest-view prepared proof for the height, and `committed`, set once the replica saw 2f+1
commits for it (the block is decided). `reset_view` forgets the rest when the view changes.

`TxQueue` keeps admitted client transactions in arrival order until a delivered block carries
them. The primary marks the ones it put in an in-flight proposal; a view change clears the marks
(the new primary re-proposes what the new view does not carry). Each entry remembers when it
arrived (restarted on every view change) and how many view changes it already caused, so a
transaction that is never ordered causes at most one view change before it is dropped.

Persistence scheme (keys are opaque to the driver, values are canonical records; a `Persist`
with an empty value deletes the key). Everything keyed by height is deleted once a stable
checkpoint covers the height, so the persisted state stays bounded by the watermark window.

    view                     ViewRecord(view, changing)   before any message of a new view / view change
    certificate              CommitCertificate            of the last delivered block
    checkpoint               CheckpointProof              the stable checkpoint
    newview                  encoded NEW-VIEW envelope    the primary's, before it is sent
    block/<h:8>/<hash>       Block                        a block the replica pre-prepared or prepared
    accepted/<h:8>           AcceptedRecord               before the replica sends its pre-prepare/prepare
    prepared/<h:8>           PreparedProof                before the replica sends its commit
    vote/<h:8>               VoteRecord                   before the replica sends its certificate vote
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ledger.consensus.messages import Envelope, PreparedProof, PrePrepare

KEY_VIEW = b"view"
KEY_CERTIFICATE = b"certificate"
KEY_CHECKPOINT = b"checkpoint"
KEY_NEWVIEW = b"newview"
PREFIX_BLOCK = b"block/"
PREFIX_ACCEPTED = b"accepted/"
PREFIX_PREPARED = b"prepared/"
PREFIX_VOTE = b"vote/"
HEIGHT_PREFIXES = (PREFIX_BLOCK, PREFIX_ACCEPTED, PREFIX_PREPARED, PREFIX_VOTE)


class CorruptConsensusState(RuntimeError):
    """A persisted consensus record does not decode: the data directory is damaged."""


@dataclass(frozen=True)
class ViewRecord:
    view: int
    changing: bool  # True: a view change to `view` was sent and no new view installed yet


@dataclass(frozen=True)
class AcceptedRecord:
    """The replica signed a pre-prepare or prepare for `block_hash` at this height in `view`."""

    view: int
    block_hash: bytes
    prev_hash: bytes
    preprepare_signature: bytes


@dataclass(frozen=True)
class VoteRecord:
    """The replica signed the certificate vote for `block_hash` (header view `view`)."""

    view: int
    block_hash: bytes


def key_for_height(prefix: bytes, height: int, suffix: bytes = b"") -> bytes:
    return prefix + height.to_bytes(8, "big") + (b"/" + suffix if suffix else b"")


def parse_height_key(key: bytes) -> tuple[bytes, int, bytes] | None:
    """(prefix, height, suffix) of a per-height key, or None for the other keys."""
    for prefix in HEIGHT_PREFIXES:
        if key.startswith(prefix) and len(key) >= len(prefix) + 8:
            rest = key[len(prefix):]
            suffix = rest[9:] if len(rest) > 8 else b""
            return prefix, int.from_bytes(rest[:8], "big"), suffix
    return None


@dataclass
class Slot:
    height: int
    # --- the current view (forgotten by reset_view) ---
    view: int = -1  # view of the accepted pre-prepare; -1: none accepted in the current view
    block_hash: bytes = b""
    prev_hash: bytes = b""
    preprepare_signature: bytes = b""
    pending: PrePrepare | None = None  # a checked pre-prepare of the current view, not yet accepted
    pending_signature: bytes = b""
    prepares: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # sender -> (hash, sig)
    commits: dict[str, bytes] = field(default_factory=dict)  # sender -> hash
    prepared: bool = False
    my_preprepare: Envelope | None = None  # with the block attached, for retransmission
    my_prepare: Envelope | None = None
    my_commit: Envelope | None = None
    # --- across views ---
    committed: bool = False
    proof: PreparedProof | None = None

    def reset_view(self) -> None:
        self.view = -1
        self.block_hash = self.prev_hash = self.preprepare_signature = b""
        self.pending = None
        self.pending_signature = b""
        self.prepares = {}
        self.commits = {}
        self.prepared = False
        self.my_preprepare = self.my_prepare = self.my_commit = None

    def count_prepares(self, primary: str) -> int:
        return sum(1 for s, (h, _) in self.prepares.items() if h == self.block_hash and s != primary)

    def count_commits(self) -> int:
        return sum(1 for h in self.commits.values() if h == self.block_hash)


class TxEntry:
    __slots__ = ("arrival", "strikes", "proposed")

    def __init__(self, arrival: int) -> None:
        self.arrival = arrival
        self.strikes = 0
        self.proposed = False


class TxQueue:
    """Admitted client transactions in arrival order, bounded."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: OrderedDict[bytes, TxEntry] = OrderedDict()
        self.unproposed = 0

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, txs: Sequence[bytes], now: int) -> tuple[list[bytes], int]:
        """Queue new transactions; return (the ones added, how many were refused as over the limit)."""
        added: list[bytes] = []
        refused = 0
        for tx in txs:
            if tx in self.entries:
                continue
            if len(self.entries) >= self.limit:
                refused += 1
                continue
            self.entries[tx] = TxEntry(now)
            self.unproposed += 1
            added.append(tx)
        return added, refused

    def remove(self, txs: Sequence[bytes]) -> None:
        for tx in txs:
            entry = self.entries.pop(tx, None)
            if entry is not None and not entry.proposed:
                self.unproposed -= 1

    def take_batch(self, size: int) -> list[bytes]:
        """Mark and return up to `size` transactions not yet in a proposal, oldest first."""
        batch: list[bytes] = []
        for tx, entry in self.entries.items():
            if len(batch) >= size:
                break
            if not entry.proposed:
                entry.proposed = True
                batch.append(tx)
        self.unproposed -= len(batch)
        return batch

    def mark_proposed(self, txs: Sequence[bytes]) -> None:
        for tx in txs:
            entry = self.entries.get(tx)
            if entry is not None and not entry.proposed:
                entry.proposed = True
                self.unproposed -= 1

    def unmark(self, txs: Sequence[bytes]) -> None:
        """A proposal carrying `txs` was not made after all."""
        for tx in txs:
            entry = self.entries.get(tx)
            if entry is not None and entry.proposed:
                entry.proposed = False
                self.unproposed += 1

    def restart(self, now: int) -> None:
        """A new view: nothing is in a proposal any more and every timer starts again."""
        for entry in self.entries.values():
            entry.proposed = False
            entry.arrival = now
        self.unproposed = len(self.entries)

    def oldest(self) -> tuple[bytes, TxEntry] | None:
        return next(iter(self.entries.items())) if self.entries else None

    def drop(self, tx: bytes) -> None:
        self.remove([tx])
