"""Every consensus message fits the frame, whatever the transactions in the pool (issue 12, bounded
primaries): blocks have a byte budget, view changes carry proofs only within the pipeline, and the
settings are refused when their largest message could be too large."""

from __future__ import annotations

import inspect

import pytest

from ledger.chain import (
    MAX_BLOCK_TX_BYTES,
    Block,
    BlockHeader,
    CommitCertificate,
    InvalidBlock,
    ValidatorSignature,
    check_block_links,
    compute_block_hash,
    compute_tx_root,
)
from ledger.codec import MAX_RECORD_BYTES, encode
from ledger.consensus import bounds
from ledger.consensus.messages import (
    MAX_ID_LEN,
    MAX_MESSAGE_BYTES,
    CheckpointProof,
    Envelope,
    NewView,
    PreparedProof,
    PrePrepare,
    ViewChange,
    encode_envelope,
)
from ledger.consensus.quorum import quorum_size
from ledger.consensus.settings import ReplicaConfig, check_config, max_message_bytes
from ledger.consensus.txqueue import TxQueue
from ledger.errors import ConfigError
from ledger.net.frames import MESSAGE_OVERHEAD
from ledger.net.transport import Transport
from ledger.tx import MAX_TX_BYTES

ID = "f" * MAX_ID_LEN
HASH = b"\xff" * 32
SIG = b"\xee" * 64
BIG = 2**63 - 1


def _sigs(n: int) -> tuple[ValidatorSignature, ...]:
    return tuple(ValidatorSignature(f"{i:0{MAX_ID_LEN}d}", SIG) for i in range(n))


def _block(batch_size: int, max_batch_bytes: int) -> Block:
    """The largest block: as many transactions as allowed, filling the byte budget."""
    each = max_batch_bytes // batch_size
    txs = tuple(b"\xab" * each for _ in range(batch_size))
    header = BlockHeader(BIG, HASH, BIG, BIG, HASH, HASH, HASH, ID)
    return Block(header, txs)


def _envelope(body: object, attachment: bytes = b"") -> bytes:
    return encode_envelope(Envelope("viewchange", ID, encode(body), SIG, attachment))


@pytest.mark.parametrize("n", [1, 4, 7, 10])
@pytest.mark.parametrize(("batch_size", "max_batch_bytes"), [(1000, MAX_BLOCK_TX_BYTES), (12, 12 * MAX_TX_BYTES)])
def test_largest_messages_stay_within_their_bounds(n: int, batch_size: int, max_batch_bytes: int) -> None:
    max_inflight = 4
    block = _block(batch_size, max_batch_bytes)
    preprepare = encode_envelope(Envelope("preprepare", ID, encode(PrePrepare(BIG, BIG, HASH, HASH)), SIG,
                                          encode(block)))
    assert len(preprepare) <= bounds.preprepare_bytes(batch_size, max_batch_bytes)
    proof = PreparedProof(BIG, BIG, HASH, HASH, SIG, _sigs(n))
    vc = ViewChange(BIG, CheckpointProof(BIG, HASH, _sigs(n)), CommitCertificate(BIG, BIG, HASH, _sigs(n)),
                    (proof,) * max_inflight)
    with_blocks = _envelope(vc, encode((block,) * max_inflight))
    assert len(with_blocks) <= bounds.view_change_bytes(n, max_inflight, batch_size, max_batch_bytes)
    stripped = _envelope(vc)
    quorum = quorum_size(n)
    nv = _envelope(NewView(BIG, (stripped,) * quorum, BIG, HASH, (HASH,) * max_inflight))
    assert len(nv) <= bounds.new_view_bytes(n, quorum, max_inflight)


def test_the_default_settings_fit_and_oversized_ones_are_refused() -> None:
    four = ReplicaConfig("c", tuple(f"v{i}" for i in range(4)))
    check_config(four)
    assert max_message_bytes(four) <= MAX_MESSAGE_BYTES
    with pytest.raises(ConfigError, match="message limit"):
        check_config(ReplicaConfig("c", four.validators, max_inflight=8, watermark_window=40))
    with pytest.raises(ConfigError, match="max_batch_bytes"):
        check_config(ReplicaConfig("c", four.validators, max_batch_bytes=MAX_BLOCK_TX_BYTES + 1))


def test_a_message_fits_a_frame_and_a_record() -> None:
    assert MAX_MESSAGE_BYTES <= MAX_RECORD_BYTES  # decodable
    max_frame = inspect.signature(Transport).parameters["max_frame"].default
    assert max_frame >= 1 + MAX_MESSAGE_BYTES + MESSAGE_OVERHEAD  # the kind byte, then the message


def test_batches_respect_the_byte_budget_in_arrival_order() -> None:
    queue = TxQueue(100)
    txs = [bytes([i]) * 400 for i in range(10)]
    queue.add(txs, now=0)
    first = queue.take_batch(size=8, max_bytes=1000)
    assert first == txs[:2]  # a third would pass 1,000 bytes
    assert queue.take_batch(size=1, max_bytes=1000) == txs[2:3]
    assert queue.take_batch(size=8, max_bytes=100) == txs[3:4]  # one always goes, even over the budget
    assert queue.unproposed == 6


def test_a_block_over_the_budget_is_invalid() -> None:
    parent = BlockHeader(0, HASH, 0, 1000, compute_tx_root(()), HASH, HASH, "")
    txs = tuple(b"\x01" * MAX_TX_BYTES for _ in range(MAX_BLOCK_TX_BYTES // MAX_TX_BYTES + 1))
    header = BlockHeader(1, compute_block_hash(parent), 0, 1000, compute_tx_root(txs), HASH, HASH, ID)
    with pytest.raises(InvalidBlock, match="budget"):
        check_block_links(Block(header, txs), parent, HASH)
    fits = txs[:-1]
    check_block_links(Block(BlockHeader(1, compute_block_hash(parent), 0, 1000, compute_tx_root(fits), HASH, HASH,
                                        ID), fits), parent, HASH)
