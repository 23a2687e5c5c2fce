"""The application the replica drives, over the chain database, with the node's clock for block time.

It implements `ledger.driver.ChainApplication`: the replica's `Application` (build a block on a
parent, check one) and what the driver adds (write a decided block, apply a fetched certified one,
serve blocks to a peer that is behind).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from ledger.chain import Block, CommitCertificate, InvalidBlock, check_certificate
from ledger.chaindb import ChainDB, ExecutedBlock
from ledger.consensus.membership import DecidedSet
from ledger.net.sync import BlockBatch, BlockRequest, serve_blocks
from ledger.validators import keys_of, latest_set

log = logging.getLogger("ledger.driver")


class LedgerApp:
    """Executes proposed blocks speculatively and keeps them until they commit or are abandoned."""

    def __init__(
        self, chain: ChainDB, clock_ms: Callable[[], int], max_clock_skew_ms: int = 30_000,
        preverify: Callable[[Sequence[bytes]], None] | None = None,
        observe_commit_seconds: Callable[[float], None] | None = None,
    ) -> None:
        self.chain = chain
        self.clock_ms = clock_ms
        self.max_clock_skew_ms = max_clock_skew_ms
        # Verifies a proposed block's signatures in parallel before it executes (the node's
        # `Mempool.preverify`); without it execution verifies them one by one.
        self.preverify = preverify
        self.observe_commit_seconds = observe_commit_seconds
        self.pending: dict[bytes, ExecutedBlock] = {}

    def _parent(self, parent: bytes | None) -> ExecutedBlock | None:
        if parent is None or parent == self.chain.head_hash:
            return None
        executed = self.pending.get(parent)
        if executed is None:
            raise InvalidBlock("unknown parent block")
        return executed

    def propose(self, txs: Sequence[bytes], view: int, proposer: str, parent: bytes | None) -> Block:
        executed = self.chain.build_block(txs, view, self.clock_ms(), proposer, self._parent(parent))
        self.pending[executed.block_hash] = executed
        return executed.block

    def timely(self, block: Block) -> bool:
        # Block time lags this node's clock by no more than the allowed skew (licence expiry reads it).
        now = self.clock_ms()
        lag = now - block.header.timestamp
        if lag > self.max_clock_skew_ms:
            _refused(block, f"its time is {lag} ms behind this node's clock")
            return False
        return self._not_ahead(block, now)

    def _not_ahead(self, block: Block, now: int) -> bool:
        # Block time may not run ahead of this node's clock by more than the allowed skew.
        ahead = block.header.timestamp - now
        if ahead > self.max_clock_skew_ms:
            _refused(block, f"its time is {ahead} ms ahead of this node's clock")
            return False
        return True

    def validate(self, block: Block, parent: bytes | None) -> bool:
        if not self._not_ahead(block, self.clock_ms()):
            return False
        if self.preverify is not None:
            self.preverify(block.txs)
        try:
            executed = self.chain.execute_block(block, self._parent(parent))
        except InvalidBlock as exc:
            _refused(block, str(exc))
            return False
        self.pending[executed.block_hash] = executed
        return True

    def committed_height(self) -> int:
        return self.chain.height

    def commit(
        self, block: Block, cert: CommitCertificate,
        records: Sequence[tuple[bytes, bytes]] = (), deleted: Sequence[bytes] = (),
    ) -> ExecutedBlock:
        """Write a committed block (with the replica's records, in the same write); re-execute it if it was
        never executed here (e.g. after a restart)."""
        started = time.perf_counter()
        executed = self.pending.pop(cert.block_hash, None)
        if executed is None:
            executed = self.chain.execute_block(block)
        self.chain.commit(executed, cert, records, deleted)
        # Pending blocks at or below the committed height can no longer commit.
        height = self.chain.height
        for h, e in list(self.pending.items()):
            if e.block.header.height <= height:
                del self.pending[h]
        if self.observe_commit_seconds is not None:
            self.observe_commit_seconds(time.perf_counter() - started)
        return executed

    def apply_certified(self, block: Block, cert: CommitCertificate) -> ExecutedBlock:
        """Catch-up: commit a block fetched from a peer, after checking its certificate ourselves."""
        check_certificate(cert, self.chain.chain_id, block.header, self.chain.validator_keys_at(block.header.height))
        return self.commit(block, cert)

    def serve_blocks(self, request: BlockRequest) -> BlockBatch:
        """Certified blocks for a peer that is behind."""
        return serve_blocks(self.chain, request)

    def validator_set_decided(self, height: int) -> DecidedSet | None:
        """The set committed block `height` decided (read from the committed state, which is at `height`)."""
        latest = latest_set(self.chain.latest, self.chain.genesis)
        if latest.seq == 0 or latest.committed_height != height:
            return None
        return latest.active_from, tuple(v.id for v in latest.validators), keys_of(latest.validators)


def _refused(block: Block, reason: str) -> None:
    """Say why a proposed block was refused: the replica only counts it."""
    log.warning("refused block %d of view %d from %s: %s", block.header.height, block.header.view,
                block.header.proposer, reason)
