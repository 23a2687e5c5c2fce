"""The consensus `Application` over the chain database, with the node's clock for block time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from ledger.chain import Block, CommitCertificate, InvalidBlock, check_certificate
from ledger.chaindb import ChainDB, ExecutedBlock
from ledger.crypto import verify_many
from ledger.members import lookup_sender
from ledger.tx import SignedTx, TxRejected, check_tx_stateless, compute_signing_digest, compute_tx_id, decode_tx

PARALLEL_VERIFY_MIN = 64  # below this, threads cost more than they save


class LedgerApp:
    """Executes proposed blocks speculatively and keeps them until they commit or are abandoned."""

    def __init__(
        self, chain: ChainDB, clock_ms: Callable[[], int], max_clock_skew_ms: int = 30_000,
        verify_pool: Executor | None = None, verify_workers: int = 2,
    ) -> None:
        self.chain = chain
        self.clock_ms = clock_ms
        self.max_clock_skew_ms = max_clock_skew_ms
        self.verify_pool = verify_pool
        self.verify_workers = verify_workers
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

    def preverify(self, txs: Sequence[bytes]) -> None:
        """Verify the signatures of a proposed block's transactions on all cores before executing it.

        Execution would verify them one by one on the event loop; `cryptography` releases the GIL
        while verifying, so a pool does the same work in parallel. Results go to the chain's
        VerifiedCache under the sender's current key; execution re-checks anything not covered.
        """
        if self.verify_pool is None or len(txs) < PARALLEL_VERIFY_MIN:
            return
        view = self.chain.latest
        work: list[tuple[bytes, SignedTx, Any, bytes, bytes, bytes]] = []
        for raw in txs:
            tx_id = compute_tx_id(raw)
            if self.chain.verified.get(tx_id) is not None:
                continue
            try:
                tx = decode_tx(raw)
                payload = check_tx_stateless(tx, self.chain.chain_id)
            except TxRejected:
                continue  # execution records the rejection
            sender = lookup_sender(view, tx.sender)
            if sender is None:
                continue
            work.append((tx_id, tx, payload, sender.public_key, compute_signing_digest(raw, tx), tx.signature))
        if not work:
            return
        size = -(-len(work) // self.verify_workers)
        chunks = [[(w[3], w[4], w[5]) for w in work[i : i + size]] for i in range(0, len(work), size)]
        verdicts = [ok for oks in self.verify_pool.map(verify_many, chunks) for ok in oks]
        for (tx_id, tx, payload, public_key, _, _), ok in zip(work, verdicts, strict=True):
            if ok:
                self.chain.verified.add(tx_id, public_key, tx, payload)
