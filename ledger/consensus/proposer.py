"""The primary's part of the normal case: cutting batches from the queue and building blocks on them.

Theory of operation: while this replica is the active primary, a full batch (`batch_size`) is cut at
once and a partial one after `batch_ticks` ticks, or at once while fewer than `eager_inflight` of its
blocks are in flight: a nearly idle pipeline gains little from waiting (on long links a block takes
several one-way delays to deliver, and the wait adds to each of them), while a busy one makes the queue
grow into larger blocks meanwhile. Each block is built on the block the log holds one
height below (pipelining), at the first height above the delivered head with no block of the current
view, once the head reached the stable checkpoint and the installed new view's base, at most
`max_inflight` above that head and below the high watermark, after every re-proposal the installed
new view forces, never across a change of the validator set, and only once the application executed
the parent. `Proposer` owns only how long a partial batch has waited; it asks the log
(`ProposalLog`, the `Orderer`) for heights and parents and hands it the block to pre-prepare.
"""

from __future__ import annotations

from typing import Protocol

from ledger.chain import Block, compute_block_hash
from ledger.consensus.application import Application, ApplicationError
from ledger.consensus.checkpoints import Checkpoints
from ledger.consensus.context import Context
from ledger.consensus.head import Head
from ledger.consensus.txqueue import TxQueue
from ledger.consensus.views import ViewState


class ProposalLog(Protocol):
    """What the proposer asks of the ordering log."""

    def first_free_height(self) -> int: ...

    def is_executed(self, height: int) -> bool: ...

    def parent_hash(self, height: int) -> bytes | None: ...

    def send_preprepare(self, h: int, block_hash: bytes, block: Block, built: bool = False) -> None: ...


class Proposer:
    def __init__(
        self, ctx: Context, app: Application, head: Head, views: ViewState, checkpoints: Checkpoints,
        queue: TxQueue, log: ProposalLog,
    ) -> None:
        self._ctx = ctx
        self._app = app
        self._head = head
        self._views = views
        self._checkpoints = checkpoints
        self._queue = queue
        self._log = log
        self._waited = 0  # ticks the primary has held a partial batch

    def tick_batch(self) -> None:
        """A tick at the primary: a partial batch waits at most `batch_ticks`."""
        if self._queue.unproposed == 0:
            self._waited = 0
            return
        self._waited += 1
        if self._waited >= self._ctx.config.batch_ticks:
            self.maybe_propose(True)

    def maybe_propose(self, force: bool | None = None) -> None:
        """Cut full batches, and a partial one if `force` (by default: once it waited `batch_ticks`)."""
        if force is None:
            force = self._waited >= self._ctx.config.batch_ticks
        if not self._views.active or self._views.primary != self._ctx.signer.id:
            return
        size = self._ctx.config.batch_size
        while self._queue.unproposed >= size or (self._queue.unproposed > 0 and (force or self._eager())):
            h = self._next_proposal_height()
            if h is None:
                return
            txs = self._queue.take_batch(size, self._ctx.config.max_batch_bytes)
            self._propose(h, txs)
            force = False
            self._waited = 0

    def _eager(self) -> bool:
        """Few enough of this primary's blocks are in flight to cut a partial batch without waiting."""
        in_flight = self._log.first_free_height() - 1 - self._head.height
        return in_flight < self._ctx.config.eager_inflight

    def _next_proposal_height(self) -> int | None:
        d = self._head.height
        # A primary behind the stable checkpoint catches up first (it never proposes twice at a
        # height whose log was collected), and so does one behind its new view's base: blocks up to
        # the base are decided, and a proposal there would only hold its transactions as proposed
        # in a block that never comes (regression one_way_links-293553464).
        if d < self._checkpoints.low or d < self._views.nv_base:
            return None
        h = self._log.first_free_height()
        # Inside the pipeline and the watermarks, after every forced re-proposal.
        if h > d + self._ctx.config.max_inflight or h > self._checkpoints.high:
            return None
        # Not across a change of the validator set: from its first height on, the new set orders.
        if self._ctx.membership.crosses(d + 1, h):
            return None
        expected = self._views.expected
        if expected and h <= max(expected):
            return None
        # The application holds the parent.
        if not self._log.is_executed(h - 1):
            return None
        return h

    def _propose(self, h: int, txs: list[bytes]) -> None:
        parent = self._log.parent_hash(h)
        try:
            block = self._app.propose(txs, self._views.view, self._ctx.signer.id, parent)
        except Exception as exc:
            raise ApplicationError(f"building block {h} failed: {exc!r}") from exc
        # The application built on the block asked for.
        if block.header.height != h or (parent is not None and block.header.prev_hash != parent):
            raise ApplicationError(f"the application built block {block.header.height} on another parent than {h - 1}")
        self._log.send_preprepare(h, compute_block_hash(block.header), block, built=True)
