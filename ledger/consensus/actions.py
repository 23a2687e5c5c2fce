"""What a replica asks its driver to do. The driver performs the actions of one call in order.

Ordering rules (the driver must keep them):
- `Persist` before any `Send`/`Broadcast` that follows it in the same list: a replica never lets a
  signed message leave before the record of having signed it is durable, so after a crash it cannot
  sign a conflicting message for the same (view, sequence).
- `Deliver` commits blocks in height order; the driver writes the block and its certificate
  atomically before it acknowledges any transaction in it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.chain import Block, CommitCertificate


@dataclass(frozen=True)
class Persist:
    """Durably store `value` under `key` (in the consensus namespace) before what follows is sent."""

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
    """This replica is behind: fetch certified blocks from `from_height` on from peers (catch-up)."""

    from_height: int


Action = Persist | Send | Broadcast | Deliver | FetchBlocks
