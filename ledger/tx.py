"""Signed transaction envelope, payload registry and typed rejection reasons.

A transaction is `SignedTx(chain_id, kind, sender, nonce, payload, signature)`. The payload is the
canonical encoding of the record type registered for `kind`, so the signature (over `TxBody`, the
envelope without its signature, under DOMAIN_TX) covers exactly one byte string. The tx id is the
sha256 of the canonical encoding of the whole signed envelope.

Stateless checks (`check_tx_stateless`) run at admission on every node; stateful ones (sender is
an active member, signature under the sender's current key, nonce is the next one) run again in
the state machine, because only the ordered execution knows the sender's current key and nonce.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass
from typing import Any

from ledger.codec import CodecError, decode, encode, from_plain, to_plain
from ledger.crypto import DOMAIN_TX, SigningKey, sha256

MAX_TX_BYTES = 64 * 1024
MAX_KIND_LEN = 64


class Reject(enum.StrEnum):
    """Why a transaction was refused or failed. Stable strings: clients match on them."""

    MALFORMED = "malformed"
    OVERSIZED = "oversized"
    WRONG_CHAIN = "wrong_chain"
    UNKNOWN_KIND = "unknown_kind"
    INVALID_PAYLOAD = "invalid_payload"
    UNKNOWN_SENDER = "unknown_sender"
    BAD_SIGNATURE = "bad_signature"
    REPLAYED_NONCE = "replayed_nonce"
    NONCE_GAP = "nonce_gap"
    DUPLICATE = "duplicate"
    MEMPOOL_FULL = "mempool_full"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    INVALID_VALUE = "invalid_value"
    LOCKED = "locked"  # the asset is locked (ERC-5192): it cannot be transferred
    EXPIRED = "expired"  # a time bound lies in the past at block time
    EXCEEDS_PARENT = "exceeds_parent"  # a sublicence would be wider or longer than its parent
    INACTIVE = "inactive"  # the asset is burned, the licence (or an ancestor) revoked or expired, the proposal closed
    INSUFFICIENT_CREDITS = "insufficient_credits"  # the payer's available credits are fewer than the amount


class TxRejected(Exception):
    def __init__(self, reason: Reject, message: str = "") -> None:
        super().__init__(f"{reason.value}: {message}" if message else reason.value)
        self.reason = reason
        self.message = message or reason.value


@dataclass(frozen=True)
class TxBody:
    chain_id: str
    kind: str
    sender: str
    nonce: int
    payload: bytes


@dataclass(frozen=True)
class SignedTx:
    chain_id: str
    kind: str
    sender: str
    nonce: int
    payload: bytes
    signature: bytes

    def body(self) -> TxBody:
        return TxBody(self.chain_id, self.kind, self.sender, self.nonce, self.payload)


# kind -> payload record type; state modules register their kinds at import time.
PAYLOAD_TYPES: dict[str, type] = {}


def register_kind(kind: str, payload_type: type) -> None:
    existing = PAYLOAD_TYPES.get(kind)
    if existing is not None and existing is not payload_type:
        raise ValueError(f"tx kind {kind!r} registered twice")
    PAYLOAD_TYPES[kind] = payload_type


def compute_tx_id(raw: bytes) -> bytes:
    return sha256(raw)


def make_tx(
    key: SigningKey, chain_id: str, nonce: int, kind: str, payload: Any, sender: str | None = None
) -> SignedTx:
    """Build and sign a transaction (the SDK and CLI path). `sender` is the member id when it is not
    the key's own id (a member that rotated its key keeps its original id)."""
    body = TxBody(chain_id, kind, sender or key.id, nonce, encode(payload))
    return SignedTx(*_fields(body), key.sign(DOMAIN_TX, body))


def _fields(body: TxBody) -> tuple[str, str, str, int, bytes]:
    return body.chain_id, body.kind, body.sender, body.nonce, body.payload


_SIGNATURE_TAIL = b"\xc4\x40"  # msgpack bin8 header of a 64-byte signature


def compute_signing_digest(raw: bytes, tx: SignedTx) -> bytes:
    """The digest `tx.signature` must sign, taken from `raw` (the canonical bytes of `tx`).

    The canonical SignedTx is a 6-array whose first five elements are exactly the canonical
    TxBody's, so the body's bytes are the 5-array header plus `raw` without the signature: no
    re-encoding on the hot path.
    """
    tail = _SIGNATURE_TAIL + tx.signature
    if raw[:1] == b"\x96" and len(tx.signature) == 64 and raw.endswith(tail):
        body = b"\x95" + raw[1 : -len(tail)]
    else:
        body = encode(tx.body())
    return sha256(DOMAIN_TX + body)


def decode_payload(tx: SignedTx) -> Any:
    ptype = PAYLOAD_TYPES.get(tx.kind)
    if ptype is None:
        raise TxRejected(Reject.UNKNOWN_KIND, f"unknown transaction kind {tx.kind!r}")
    try:
        return decode(ptype, tx.payload)
    except CodecError as exc:
        raise TxRejected(Reject.INVALID_PAYLOAD, str(exc)) from exc


def decode_tx(raw: bytes) -> SignedTx:
    """Decode canonical tx bytes or raise TxRejected(MALFORMED/OVERSIZED)."""
    if len(raw) > MAX_TX_BYTES:
        raise TxRejected(Reject.OVERSIZED, f"transaction larger than {MAX_TX_BYTES} bytes")
    try:
        return decode(SignedTx, raw)
    except CodecError as exc:
        raise TxRejected(Reject.MALFORMED, str(exc)) from exc


def tx_to_plain(tx: SignedTx) -> dict[str, Any]:
    """JSON form: the payload appears as its record's fields, not as bytes."""
    plain = to_plain(tx)
    ptype = PAYLOAD_TYPES.get(tx.kind)
    if ptype is not None:
        with contextlib.suppress(CodecError):  # keep the hex form of a payload that does not decode
            plain["payload"] = to_plain(decode(ptype, tx.payload))
    return plain


def tx_from_plain(obj: Any) -> SignedTx:
    """Inverse of tx_to_plain; the payload object is re-encoded canonically before checking."""
    if not isinstance(obj, dict):
        raise TxRejected(Reject.MALFORMED, "a transaction must be a JSON object")
    kind = obj.get("kind")
    ptype = PAYLOAD_TYPES.get(kind) if isinstance(kind, str) else None
    if ptype is None:
        raise TxRejected(Reject.UNKNOWN_KIND, f"unknown transaction kind {kind!r}")
    try:
        payload = encode(from_plain(ptype, obj.get("payload")))
        return from_plain(SignedTx, {**obj, "payload": payload.hex()})
    except CodecError as exc:
        raise TxRejected(Reject.MALFORMED, str(exc)) from exc


def check_tx_stateless(tx: SignedTx, chain_id: str) -> Any:
    """Checks that need no state; return the decoded payload or raise TxRejected."""
    # The transaction is meant for this chain.
    if tx.chain_id != chain_id:
        raise TxRejected(Reject.WRONG_CHAIN, f"chain id {tx.chain_id!r} is not {chain_id!r}")
    # Nonces start at 1 and fit in 64 bits.
    if not 1 <= tx.nonce < 2**63:
        raise TxRejected(Reject.MALFORMED, "nonce out of range")
    # The kind is known and its payload decodes canonically.
    return decode_payload(tx)
