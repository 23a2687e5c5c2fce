"""What a replica asks its driver to do. The driver performs the actions of one call in order.

Ordering rules (the driver must keep them):
- `Persist` before any `Send`/`Broadcast` that follows it in the same list: a replica never lets a
  signed message leave before the record of having signed it is durable, so after a crash it cannot
  sign a conflicting message for the same (view, sequence).
- `Deliver` commits blocks in height order; the driver writes the block and its certificate
  atomically before it acknowledges any transaction in it, and applies it before it calls the
  replica again (the replica builds and checks the next blocks on top of it).
- `Persist` with an empty value deletes the key (the replica garbage-collects what a stable
  checkpoint covers this way).
- `ForwardTxs` and `FetchBlocks` carry no signed consensus state: they may be performed late,
  reordered with messages or dropped (the replica retries).
- `DropTxs` has no ordering rule either: it only tells the driver which admitted transactions the
  replica gave up on.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.chain import Block, CommitCertificate


@dataclass(frozen=True)
class Persist:
    """Durably store `value` under `key` (in the consensus namespace) before what follows is sent.

    An empty `value` means: delete `key`.
    """

    key: bytes
    value: bytes


@dataclass(frozen=True)
class Send:
    """Send an encoded, signed consensus message to one validator."""

    to: str
    message: bytes


@dataclass(frozen=True)
class Broadcast:
    """Send an encoded, signed consensus message to every other validator."""

    message: bytes


@dataclass(frozen=True)
class Deliver:
    """A block is committed: store it with its certificate, apply it, acknowledge its transactions."""

    block: Block
    certificate: CommitCertificate


@dataclass(frozen=True)
class FetchBlocks:
    """This replica is behind: fetch certified blocks from `from_height` on from peers (catch-up).

    The driver checks each block's certificate, applies the blocks in height order and calls
    `replica.notify_committed(height, block_hash, certificate, txs)` for each one.
    """

    from_height: int


@dataclass(frozen=True)
class ForwardTxs:
    """Hand client transactions this backup admitted to validator `to` (the primary).

    The receiving driver admits them like any client submission (signature, nonce, duplicate
    checks) and passes the accepted ones to its replica's `submit`. No ordering rule: it may be
    performed after the rest of the list, coalesced, or dropped under load (the censorship timer
    covers a lost forward).
    """

    to: str
    txs: tuple[bytes, ...]


@dataclass(frozen=True)
class DropTxs:
    """The replica gave up ordering these client transactions (`reason` says why): the driver tells
    the mempool that admitted them, so none stays pending for ever."""

    txs: tuple[bytes, ...]
    reason: str


@dataclass(frozen=True)
class Evidence:
    """A validator equivocated: `first` and `second` are its two contradicting signed messages (see
    consensus/evidence.py). The driver has the pair recorded in the ledger; no ordering rule."""

    first: bytes
    second: bytes


Action = Persist | Send | Broadcast | Deliver | FetchBlocks | ForwardTxs | DropTxs | Evidence
