"""The consensus `Application` over the chain database, with the node's clock for block time."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ledger.chain import Block, CommitCertificate, InvalidBlock, check_certificate
from ledger.chaindb import ChainDB, ExecutedBlock


class LedgerApp:
    """Executes proposed blocks speculatively and keeps them until they commit or are abandoned."""

    def __init__(
        self, chain: ChainDB, clock_ms: Callable[[], int], max_clock_skew_ms: int = 30_000,
        preverify: Callable[[Sequence[bytes]], None] | None = None,
    ) -> None:
        self.chain = chain
        self.clock_ms = clock_ms
        self.max_clock_skew_ms = max_clock_skew_ms
        # Verifies a proposed block's signatures in parallel before it executes (the node's
        # `Mempool.preverify`); without it execution verifies them one by one.
        self.preverify = preverify
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

    def validate(self, block: Block, parent: bytes | None) -> bool:
        # Block time may not run ahead of this node's clock by more than the allowed skew.
        if block.header.timestamp > self.clock_ms() + self.max_clock_skew_ms:
            return False
        if self.preverify is not None:
            self.preverify(block.txs)
        try:
            executed = self.chain.execute_block(block, self._parent(parent))
        except InvalidBlock:
            return False
        self.pending[executed.block_hash] = executed
        return True

    def committed_height(self) -> int:
        return self.chain.height

    def commit(self, block: Block, cert: CommitCertificate) -> ExecutedBlock:
        """Write a committed block; re-execute if it was never executed here (e.g. after a restart)."""
        executed = self.pending.pop(cert.block_hash, None)
        if executed is None:
            executed = self.chain.execute_block(block)
        self.chain.commit(executed, cert)
        # Pending blocks at or below the committed height can no longer commit.
        height = self.chain.height
        for h, e in list(self.pending.items()):
            if e.block.header.height <= height:
                del self.pending[h]
        return executed

    def apply_certified(self, block: Block, cert: CommitCertificate) -> ExecutedBlock:
        """Catch-up: commit a block fetched from a peer, after checking its certificate ourselves."""
        check_certificate(cert, self.chain.chain_id, block.header, self.chain.validators)
        return self.commit(block, cert)
