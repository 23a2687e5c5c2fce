"""Blocks, headers and commit certificates, with spec-style validation helpers.

A block header commits to the ordered transactions (`tx_root`, an RFC 6962 root over the encoded
signed transactions), to the state after executing them (`state_root`, a sparse Merkle root), and
to every earlier block hash (`history_root`, the accumulator root over blocks 0..height-1).

A `CommitCertificate` carries 2f+1 validator signatures over a `CommitVote` that names the chain,
height, view and header hash. Anyone holding the genesis validator set can check a block without
trusting whoever served it.

Checks follow the consensus-specs style: `compute_*` derives, `is_*` answers a question, and
`process_*`/`check_*` raise a typed error, one commented check per line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ledger import merkle
from ledger.codec import encode
from ledger.consensus.quorum import quorum_size
from ledger.crypto import DOMAIN_COMMIT, sha256, verify

ZERO_HASH = b"\x00" * 32


@dataclass(frozen=True)
class BlockHeader:
    height: int
    prev_hash: bytes
    view: int
    timestamp: int  # milliseconds since the Unix epoch, chosen by the proposer, checked by validators
    tx_root: bytes
    state_root: bytes
    history_root: bytes
    proposer: str


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    txs: tuple[bytes, ...]  # canonical encodings of SignedTx, in execution order


@dataclass(frozen=True)
class CommitVote:
    """What each validator signs to commit a block."""

    chain_id: str
    height: int
    view: int
    block_hash: bytes


@dataclass(frozen=True)
class ValidatorSignature:
    validator: str
    signature: bytes


@dataclass(frozen=True)
class CommitCertificate:
    height: int
    view: int
    block_hash: bytes
    signatures: tuple[ValidatorSignature, ...]  # sorted by validator id, one per validator


class InvalidBlock(ValueError):
    """A block or certificate failed validation; the message says which check."""


def compute_block_hash(header: BlockHeader) -> bytes:
    return sha256(encode(header))


def compute_tx_root(txs: Sequence[bytes]) -> bytes:
    return merkle.merkle_root(txs)


def compute_commit_vote(chain_id: str, header: BlockHeader) -> CommitVote:
    return CommitVote(chain_id, header.height, header.view, compute_block_hash(header))


def is_valid_certificate(
    cert: CommitCertificate, chain_id: str, header: BlockHeader, validators: Mapping[str, bytes]
) -> bool:
    """True if `cert` holds a quorum of distinct validators' valid commit signatures for `header`."""
    try:
        check_certificate(cert, chain_id, header, validators)
    except InvalidBlock:
        return False
    return True


def check_certificate(
    cert: CommitCertificate, chain_id: str, header: BlockHeader, validators: Mapping[str, bytes]
) -> None:
    block_hash = compute_block_hash(header)
    # The certificate names this block.
    if cert.block_hash != block_hash or cert.height != header.height or cert.view != header.view:
        raise InvalidBlock("certificate does not name this block")
    signers = [s.validator for s in cert.signatures]
    # Each validator signs at most once and signatures are in canonical order.
    if signers != sorted(set(signers)):
        raise InvalidBlock("certificate signers are duplicated or unsorted")
    # Only validators of the set in force at that height count.
    if any(v not in validators for v in signers):
        raise InvalidBlock("certificate signed by a non-validator")
    # A quorum of 2f+1 signed.
    if len(signers) < quorum_size(len(validators)):
        raise InvalidBlock("certificate lacks a quorum")
    vote = CommitVote(chain_id, cert.height, cert.view, block_hash)
    for s in cert.signatures:
        # Every signature verifies under the commit domain.
        if not verify(validators[s.validator], DOMAIN_COMMIT, vote, s.signature):
            raise InvalidBlock(f"bad commit signature from {s.validator}")


MAX_BLOCK_TX_BYTES = 768 * 1024  # the transactions of one block: keeps every message carrying blocks bounded


def check_block_links(block: Block, parent: BlockHeader, parent_history_root: bytes) -> None:
    """Checks of a block against its parent that need no state: height, hash link, size, tx root, history.

    `parent_history_root` is the accumulator root over blocks 0..parent.height, which this
    block's header must carry.
    """
    header = block.header
    # Heights increase by one.
    if header.height != parent.height + 1:
        raise InvalidBlock(f"height {header.height} does not follow {parent.height}")
    # The block links to its parent's hash.
    if header.prev_hash != compute_block_hash(parent):
        raise InvalidBlock("prev_hash does not match the parent block")
    # Time never goes backwards.
    if header.timestamp < parent.timestamp:
        raise InvalidBlock("timestamp earlier than the parent's")
    # The transactions fit the block budget.
    if sum(len(tx) for tx in block.txs) > MAX_BLOCK_TX_BYTES:
        raise InvalidBlock(f"transactions over the block budget of {MAX_BLOCK_TX_BYTES} bytes")
    # The tx root commits to exactly these transactions.
    if header.tx_root != compute_tx_root(block.txs):
        raise InvalidBlock("tx_root does not match the transactions")
    # The history root covers every earlier block.
    if header.history_root != parent_history_root:
        raise InvalidBlock("history_root does not cover the earlier blocks")
