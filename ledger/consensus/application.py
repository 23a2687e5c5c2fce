"""The replica's view of the application: build a block, check a block. Pure from its side.

The driver implements this over the chain database; simulations implement it in memory. A block
is built or checked on top of `parent` (the hash of a block the replica has accepted but not yet
committed, or None for the committed head), which allows several sequence numbers in flight.

`validate` answers False for a block that is invalid: evidence against the primary that proposed
it. An exception is not evidence against anyone (a full disk, a bug): the replica raises it again
as `ApplicationError`, and the driver stops the node loudly rather than voting on a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ledger.chain import Block


class ApplicationError(RuntimeError):
    """The application failed while building or checking a block; the node must stop."""


class Application(Protocol):
    def propose(self, txs: Sequence[bytes], view: int, proposer: str, parent: bytes | None) -> Block:
        """Execute `txs` on `parent` and return the resulting block (header with state root)."""
        ...

    def timely(self, block: Block) -> bool:
        """A block proposed in the current view, just received: is its time near this node's clock?

        Asked on receipt, not when the block is executed: a backup that reaches the block late (still
        executing the ones before it, or waiting for them) must not count its own delay against the
        primary. A block a new view forces again is not asked (decided blocks may be among them,
        whatever their age).
        """
        ...

    def validate(self, block: Block, parent: bytes | None) -> bool:
        """Re-execute a proposed block on `parent`; True if its header is exactly what execution gives
        (and its time is not ahead of this node's clock by more than the allowed skew)."""
        ...

    def committed_height(self) -> int:
        ...
