"""The applications a simulated validator runs: `FakeApp` (a hash chain over opaque transactions),
or anything with the `SimApp` protocol (one scenario runs the real LedgerApp over ChainDB)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ledger.chain import (
    ZERO_HASH,
    Block,
    BlockHeader,
    CommitCertificate,
    InvalidBlock,
    check_certificate,
    compute_block_hash,
    compute_tx_root,
)
from ledger.crypto import sha256
from ledger.net.sync import BlockBatch, BlockRequest, serve_blocks
from ledger.store import MemoryStore, Store


class SafetyViolation(AssertionError):
    """Two honest nodes decided differently, or a node's own record of its chain is broken."""


def _state_after(root: bytes, txs: Sequence[bytes]) -> bytes:
    return sha256(root + b"".join(sha256(t) for t in txs))


def fake_genesis() -> Block:
    header = BlockHeader(0, b"\x11" * 32, 0, 1_000, compute_tx_root(()), b"\x22" * 32, ZERO_HASH, "")
    return Block(header, ())


@dataclass(frozen=True)
class Committed:
    """What a simulated application reports for a block it wrote."""

    block: Block
    certificate: CommitCertificate


SET_TX = b"validator-set:"  # a transaction deciding the next validator set: the ids after it, comma separated


def set_tx(ids: Sequence[str], nonce: int = 0) -> bytes:
    return SET_TX + ",".join(ids).encode() + b";" + str(nonce).encode()


class FakeApp:
    """In-memory application: opaque txs, state_root = hash chain over the txs.

    A `set_tx` decides a validator set, certifying from `activation_delay` heights after its block, as
    `ledger.validators` does. Its committed chain survives a restart (`restarted`), like a disk; so does
    `store`, which holds what the replica persisted.
    """

    def __init__(
        self, chain_id: str, validator_keys: dict[str, bytes], chain: list[tuple[Block, CommitCertificate | None]]
        | None = None, store: Store | None = None, genesis_ids: Sequence[str] | None = None,
        activation_delay: int = 16,
    ) -> None:
        self.chain_id = chain_id
        self.validator_keys = validator_keys  # of every validator of any set
        self.genesis_ids = tuple(genesis_ids if genesis_ids is not None else validator_keys)
        self.activation_delay = activation_delay
        self.blocks: list[Block] = [b for b, _ in chain] if chain else [fake_genesis()]
        self.certs: list[CommitCertificate | None] = [c for _, c in chain] if chain else [None]
        self.hashes = [compute_block_hash(b.header) for b in self.blocks]
        self.pending: dict[bytes, Block] = {}
        self.store: Store = store if store is not None else MemoryStore()
        self.sets: list[tuple[int, int, tuple[str, ...]]] = [(0, 1, self.genesis_ids)]  # (decided at, from, ids)
        for block in self.blocks[1:]:
            self._note_sets(block)

    def _note_sets(self, block: Block) -> None:
        for tx in block.txs:
            if tx.startswith(SET_TX):
                ids = tuple(tx[len(SET_TX):].split(b";")[0].decode().split(","))
                height = block.header.height
                self.sets.append((height, height + self.activation_delay, ids))

    def ids_at(self, height: int) -> tuple[str, ...]:
        return [ids for _, start, ids in self.sets if start <= height][-1]

    def validator_set_decided(self, height: int) -> tuple[int, tuple[str, ...], dict[str, bytes]] | None:
        for decided, start, ids in self.sets:
            if decided == height and decided > 0:
                return start, ids, {v: self.validator_keys[v] for v in ids}
        return None

    def later_sets(self) -> list[tuple[int, tuple[str, ...]]]:
        """The sets decided after genesis's (what a node start hands its replica)."""
        return [(start, ids) for _, start, ids in self.sets[1:]]

    def _tip(self, parent: bytes | None) -> Block | None:
        if parent is None or parent == self.hashes[-1]:
            return self.blocks[-1]
        return self.pending.get(parent)

    def _expected(self, tip: Block, txs: Sequence[bytes], view: int, ts: int, proposer: str) -> BlockHeader:
        t = tip.header
        return BlockHeader(
            t.height + 1, compute_block_hash(t), view, ts, compute_tx_root(txs), _state_after(t.state_root, txs),
            ZERO_HASH, proposer,
        )

    def propose(self, txs: Sequence[bytes], view: int, proposer: str, parent: bytes | None) -> Block:
        tip = self._tip(parent)
        if tip is None:
            raise ValueError("unknown parent")
        block = Block(self._expected(tip, txs, view, tip.header.timestamp + 1, proposer), tuple(txs))
        self.pending[compute_block_hash(block.header)] = block
        return block

    def timely(self, block: Block) -> bool:
        return True  # its block time is a step counter, not a clock

    def validate(self, block: Block, parent: bytes | None) -> bool:
        tip = self._tip(parent)
        h = block.header
        if tip is None or h.timestamp < tip.header.timestamp:
            return False
        if h != self._expected(tip, block.txs, h.view, h.timestamp, h.proposer):
            return False
        self.pending[compute_block_hash(h)] = block
        return True

    def committed_height(self) -> int:
        return len(self.blocks) - 1

    # The chain as `ledger.net.sync.serve_blocks` reads it.
    @property
    def height(self) -> int:
        return self.committed_height()

    def get_block(self, height: int) -> Block | None:
        return self.blocks[height] if height < len(self.blocks) else None

    def get_certificate(self, height: int) -> CommitCertificate | None:
        return self.certs[height] if height < len(self.certs) else None

    def commit(
        self, block: Block, cert: CommitCertificate,
        records: Sequence[tuple[bytes, bytes]] = (), deleted: Sequence[bytes] = (),
    ) -> Committed:
        h = block.header
        if h != self._expected(self.blocks[-1], block.txs, h.view, h.timestamp, h.proposer):
            raise SafetyViolation(f"block {h.height} does not extend the committed head")
        self.blocks.append(block)
        self.certs.append(cert)
        self.hashes.append(compute_block_hash(h))
        self._note_sets(block)
        self.pending = {k: b for k, b in self.pending.items() if b.header.height > h.height}
        if records or deleted:  # the replica's records, written with the block (as LevelDB writes both at once)
            self.store.write_batch(records, deleted)
        return Committed(block, cert)

    def apply_certified(self, block: Block, cert: CommitCertificate) -> Committed:
        ids = self.ids_at(block.header.height)
        check_certificate(cert, self.chain_id, block.header, {v: self.validator_keys[v] for v in ids})
        if block.header != self._expected(self.blocks[-1], block.txs, block.header.view, block.header.timestamp,
                                          block.header.proposer):
            raise InvalidBlock("fetched block does not extend the committed head")
        return self.commit(block, cert)

    def serve_blocks(self, request: BlockRequest) -> BlockBatch:
        return serve_blocks(self, request)

    def restarted(self) -> FakeApp:
        return FakeApp(self.chain_id, self.validator_keys, list(zip(self.blocks, self.certs, strict=True)),
                       self.store, self.genesis_ids, self.activation_delay)

    def committed(self, result: Committed) -> tuple[Block, CommitCertificate]:
        return result.block, result.certificate


class SimApp(Protocol):
    """An application the simulation runs: what the driver needs, a disk that survives restarts."""

    @property
    def store(self) -> Store: ...

    def propose(self, txs: Sequence[bytes], view: int, proposer: str, parent: bytes | None) -> Block: ...
    def timely(self, block: Block) -> bool: ...
    def validate(self, block: Block, parent: bytes | None) -> bool: ...
    def committed_height(self) -> int: ...
    def commit(
        self, block: Block, cert: CommitCertificate,
        records: Sequence[tuple[bytes, bytes]] = (), deleted: Sequence[bytes] = (),
    ) -> Any: ...
    def apply_certified(self, block: Block, cert: CommitCertificate) -> Any: ...
    def serve_blocks(self, request: BlockRequest) -> BlockBatch: ...
    def validator_set_decided(self, height: int) -> tuple[int, tuple[str, ...], dict[str, bytes]] | None: ...
    def restarted(self) -> SimApp: ...
    def committed(self, result: Any) -> tuple[Block, CommitCertificate]:
        """The block and certificate behind what `commit` or `apply_certified` returned."""
        ...
