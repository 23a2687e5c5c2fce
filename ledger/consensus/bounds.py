"""Upper bounds on the encoded size of every consensus message, from a replica's settings.

Theory of operation: a message that does not fit the frame limit is dropped by every receiver, so a
primary whose pre-prepare or new view is too large stalls the ledger as surely as a silent one.
Sizes therefore follow from the settings alone, whatever transactions wait in the pool: a block
carries at most `batch_size` transactions and `max_batch_bytes` of them (the chain's rule
`MAX_BLOCK_TX_BYTES` caps both), a view change carries prepared proofs (and their blocks) only
within `max_inflight` heights above its base, and a new view carries a quorum of view changes
without their blocks. `check_config` refuses settings whose largest message could exceed
`MAX_MESSAGE_BYTES`; tests/test_message_bounds.py builds the largest messages and checks the
bounds hold.

The constants are generous ceilings of canonical msgpack (ledger/codec.py): an int is at most 9
bytes, a bin or str carries at most 5 bytes of header, a record is an array with at most 5.
"""

from __future__ import annotations

from ledger.consensus.messages import MAX_ID_LEN

INT = 9
HEADER = 5  # of an array, a bin or a str
HASH = 32 + HEADER
SIGNATURE = 64 + HEADER
VALIDATOR_SIGNATURE = HEADER + (MAX_ID_LEN + HEADER) + SIGNATURE
BLOCK_HEADER = HEADER + 4 * INT + 4 * HASH + (MAX_ID_LEN + HEADER)
ENVELOPE = HEADER + 16 + (MAX_ID_LEN + HEADER) + 3 * HEADER + SIGNATURE  # kind, sender, body, sig, attachment


def block_bytes(batch_size: int, max_batch_bytes: int) -> int:
    """The largest block: a header and at most `batch_size` transactions of `max_batch_bytes` in all."""
    return HEADER + BLOCK_HEADER + HEADER + max_batch_bytes + HEADER * batch_size


def signatures_bytes(n: int) -> int:
    return HEADER + n * VALIDATOR_SIGNATURE


def prepared_proof_bytes(n: int) -> int:
    return HEADER + 2 * INT + 2 * HASH + SIGNATURE + signatures_bytes(n)


def view_change_body_bytes(n: int, max_inflight: int) -> int:
    """A view change without its blocks: a checkpoint proof, a certificate, the prepared proofs, the
    suspicion that made it leave its view."""
    proof = HEADER + 2 * INT + HASH + signatures_bytes(n)
    return HEADER + INT + 2 * proof + HEADER + max_inflight * prepared_proof_bytes(n) + signatures_bytes(n)


def preprepare_bytes(batch_size: int, max_batch_bytes: int) -> int:
    return ENVELOPE + HEADER + 2 * INT + 2 * HASH + block_bytes(batch_size, max_batch_bytes)


def view_change_bytes(n: int, max_inflight: int, batch_size: int, max_batch_bytes: int) -> int:
    """With its attachment: the blocks of its prepared proofs."""
    blocks = HEADER + max_inflight * block_bytes(batch_size, max_batch_bytes)
    return ENVELOPE + view_change_body_bytes(n, max_inflight) + blocks


def new_view_bytes(n: int, quorum: int, max_inflight: int) -> int:
    """A quorum of view changes, stripped of their blocks, and the hashes of the chosen blocks."""
    carried = HEADER + ENVELOPE + view_change_body_bytes(n, max_inflight)
    return ENVELOPE + HEADER + 2 * INT + HASH + HEADER + quorum * carried + HEADER + max_inflight * HASH
