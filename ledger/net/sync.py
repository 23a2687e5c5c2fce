"""Catch-up over the peer link: ask a peer for certified blocks from a height on.

A lagging or restarted node requests `BlockRequest(from_height, max_blocks)`; the peer answers with
the blocks it has from there, each with its commit certificate, bounded in count and bytes so a
reply always fits in one frame. The requester verifies every certificate against the genesis
validator set before applying a block, so a lying peer can waste its time but not corrupt it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ledger.chain import Block, CommitCertificate
from ledger.codec import MAX_RECORD_BYTES, encode

MAX_BLOCKS_PER_REPLY = 64
# A reply is one record: it must decode (codec's limit), with room for a last block added past the bound.
MAX_REPLY_BYTES = MAX_RECORD_BYTES - 1024 * 1024


@dataclass(frozen=True)
class BlockRequest:
    from_height: int
    max_blocks: int


@dataclass(frozen=True)
class CertifiedBlock:
    block: Block
    certificate: CommitCertificate


@dataclass(frozen=True)
class BlockBatch:
    head_height: int  # the serving peer's head, so the requester knows how far it still has to go
    blocks: tuple[CertifiedBlock, ...]


class CertifiedChain(Protocol):
    """A committed chain that can serve its blocks (the chain database, or a simulation's)."""

    @property
    def height(self) -> int: ...

    def get_block(self, height: int) -> Block | None: ...

    def get_certificate(self, height: int) -> CommitCertificate | None: ...


def serve_blocks(chain: CertifiedChain, request: BlockRequest) -> BlockBatch:
    """The certified blocks from `request.from_height` on, within count and size bounds."""
    out: list[CertifiedBlock] = []
    size = 0
    height = max(request.from_height, 1)
    limit = min(max(request.max_blocks, 0), MAX_BLOCKS_PER_REPLY)
    while len(out) < limit and height <= chain.height:
        block, cert = chain.get_block(height), chain.get_certificate(height)
        if block is None or cert is None:
            break
        entry = CertifiedBlock(block, cert)
        size += len(encode(entry))
        if out and size > MAX_REPLY_BYTES:
            break
        out.append(entry)
        height += 1
    return BlockBatch(chain.height, tuple(out))
