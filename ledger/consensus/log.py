"""The replica's log: per-height slots, and the persistence scheme with its reader.

Theory of operation
-------------------
A `Slot` holds everything a replica knows about one height (sequence number) in the current view:
the pre-prepare it accepted (or one waiting for its parent), the prepares and commits received
(at most one per sender), and what it sent. Two facts outlive a view: `proof`, the replica's
highest-view prepared proof for the height, and `committed`, set once the replica saw 2f+1
commits for it (the block is decided). `reset_view` forgets the rest when the view changes.

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

`read_persisted` turns what a replica persisted before a restart back into typed records; each
component of the replica then takes up its own part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ledger.chain import Block, CommitCertificate
from ledger.codec import CodecError, decode
from ledger.consensus.messages import (
    CheckpointProof,
    Envelope,
    PreparedProof,
    PrePrepare,
    decode_body,
    decode_envelope,
)

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
    accepted_at: int = -1  # the tick this replica accepted the pre-prepare (-1: not in the current view)
    prepares: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # sender -> (hash, sig)
    commits: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # sender -> (hash, sig)
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
        self.accepted_at = -1
        self.prepares = {}
        self.commits = {}
        self.prepared = False
        self.my_preprepare = self.my_prepare = self.my_commit = None

    def count_prepares(self, primary: str) -> int:
        return sum(1 for s, (h, _) in self.prepares.items() if h == self.block_hash and s != primary)

    def count_commits(self) -> int:
        return sum(1 for h, _ in self.commits.values() if h == self.block_hash)


@dataclass
class PersistedState:
    """What a replica persisted, decoded; per-height records only above the delivered height."""

    view: ViewRecord | None = None
    certificate: CommitCertificate | None = None
    checkpoint: CheckpointProof | None = None
    new_view: tuple[int, bytes] | None = None  # (view, encoded NEW-VIEW this replica sent)
    blocks: list[Block] = field(default_factory=list)
    accepted: dict[int, AcceptedRecord] = field(default_factory=dict)
    prepared: dict[int, PreparedProof] = field(default_factory=dict)
    votes: dict[int, VoteRecord] = field(default_factory=dict)
    height_keys: list[bytes] = field(default_factory=list)  # every per-height key on disk


def read_persisted(persisted: Mapping[bytes, bytes], delivered: int) -> PersistedState:
    """Decode a replica's persisted records; raise CorruptConsensusState if any does not decode."""
    try:
        return _read_records(persisted, delivered)
    except (CodecError, ValueError) as exc:
        raise CorruptConsensusState(f"persisted consensus state does not decode: {exc}") from exc


def _read_records(persisted: Mapping[bytes, bytes], delivered: int) -> PersistedState:
    state = PersistedState()
    for key, value in sorted(persisted.items()):
        if not value:
            continue
        if key == KEY_VIEW:
            state.view = decode(ViewRecord, value)
        elif key == KEY_CERTIFICATE:
            state.certificate = decode(CommitCertificate, value)
        elif key == KEY_CHECKPOINT:
            state.checkpoint = decode(CheckpointProof, value)
        elif key == KEY_NEWVIEW:
            state.new_view = (decode_body(decode_envelope(value)).view, value)
        parsed = parse_height_key(key)
        if parsed is None:
            continue
        prefix, h, _ = parsed
        state.height_keys.append(key)
        if h <= delivered:
            continue  # delivered already: only its key matters (for garbage collection)
        if prefix == PREFIX_BLOCK:
            state.blocks.append(decode(Block, value))
        elif prefix == PREFIX_ACCEPTED:
            state.accepted[h] = decode(AcceptedRecord, value)
        elif prefix == PREFIX_PREPARED:
            state.prepared[h] = decode(PreparedProof, value)
        elif prefix == PREFIX_VOTE:
            state.votes[h] = decode(VoteRecord, value)
    return state
