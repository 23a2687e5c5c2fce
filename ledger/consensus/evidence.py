"""Equivocation evidence: two signed consensus messages of one validator that contradict each other.

Theory of operation: a correct validator signs at most one pre-prepare (as primary), one prepare and
one commit per (view, height), and one certificate vote per height, ever. Two messages of one of
these kinds from one validator for the same slot that name different blocks prove, to anyone who
holds the validator's public key, that it equivocated. The replica reports such a pair when it
meets one (ordering.py); the driver has it recorded in the ledger by an `evidence.equivocation`
transaction (ledger/evidence.py), whose handler checks it with `check_equivocation`, as anyone can
offline. The messages travel without attachments (a signature covers the body, which names the
block by hash), in one canonical order (the smaller encoding first), so one pair has one form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ledger.consensus.messages import (
    KIND_COMMIT,
    KIND_PREPARE,
    KIND_PREPREPARE,
    KIND_VOTE,
    Envelope,
    MalformedMessage,
    SignatureChecker,
    decode_body,
    decode_envelope,
    encode_envelope,
    strip,
)

KINDS = (KIND_PREPREPARE, KIND_PREPARE, KIND_COMMIT, KIND_VOTE)


class InvalidEvidence(ValueError):
    """Two messages that do not prove an equivocation; the text says which check failed."""


@dataclass(frozen=True)
class Equivocation:
    """What a pair of messages proves: `validator` signed two `kind` messages for one slot.

    The slot is (view, height) for ordering messages, the height alone for votes (view 0 here).
    """

    validator: str
    kind: str
    view: int
    height: int


def compute_slot(kind: str, body: Any) -> tuple[int, int]:
    return (0, body.height) if kind == KIND_VOTE else (body.view, body.height)


def order_pair(first: Envelope, second: Envelope) -> tuple[bytes, bytes]:
    """The canonical form of a pair: attachments stripped, the smaller encoding first."""
    a, b = encode_envelope(strip(first)), encode_envelope(strip(second))
    return (a, b) if a < b else (b, a)


def check_equivocation(
    first: bytes, second: bytes, chain_id: str, validator_keys: Mapping[str, bytes],
) -> Equivocation:
    """The equivocation `first` and `second` prove, against one fixed validator set; raise InvalidEvidence
    otherwise."""
    return check_equivocation_at(first, second, chain_id, lambda height: validator_keys)


def check_equivocation_at(
    first: bytes, second: bytes, chain_id: str, keys_at: Callable[[int], Mapping[str, bytes]],
) -> Equivocation:
    """The equivocation `first` and `second` prove, the sender checked against `keys_at(height)`: the validators
    (id -> public key) of the slot's height, since only they sign for it; raise InvalidEvidence otherwise."""
    try:
        a, b = decode_envelope(first), decode_envelope(second)
        body_a, body_b = decode_body(a), decode_body(b)
    except MalformedMessage as exc:
        raise InvalidEvidence(f"a message does not decode: {exc}") from exc
    # The pair is in canonical form: two different messages, the smaller first.
    if not first < second:
        raise InvalidEvidence("the messages are equal or not in canonical order")
    # Neither carries an attachment (the signature never covers one).
    if a.attachment or b.attachment:
        raise InvalidEvidence("evidence messages carry no attachment")
    # Both are of one kind that a validator signs once per slot.
    if a.kind != b.kind or a.kind not in KINDS:
        raise InvalidEvidence(f"not two messages of one of the kinds {', '.join(KINDS)}")
    # For the same slot.
    view, height = compute_slot(a.kind, body_a)
    if compute_slot(b.kind, body_b) != (view, height):
        raise InvalidEvidence("the messages are for different slots")
    # One validator signed both, a validator at that height (one added later, or removed before it, is not).
    validator_keys = keys_at(height)
    if a.sender != b.sender or a.sender not in validator_keys:
        raise InvalidEvidence(f"the messages are not from one validator of height {height}")
    # Naming different blocks.
    if body_a.block_hash == body_b.block_hash:
        raise InvalidEvidence("the messages name the same block")
    # Each signature is the validator's.
    checker = SignatureChecker(chain_id, validator_keys)
    if not checker.envelope(a, body_a) or not checker.envelope(b, body_b):
        raise InvalidEvidence("a signature does not verify")
    return Equivocation(a.sender, a.kind, view, height)
