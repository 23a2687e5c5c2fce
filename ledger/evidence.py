"""Equivocation evidence in the ledger: the `evidence.equivocation` transaction.

Theory of operation: a validator whose replica meets two contradicting signed messages of another
validator (ledger/consensus/evidence.py) sends them in an `evidence.equivocation` transaction; any
member may send one too. The handler checks the pair exactly as anyone can offline (both
signatures under the offender's key in the validator set of the slot's height, one kind, one slot, two
blocks) and records it once
per (validator, kind, slot): under `evidence/<validator>/<n>`, with a count per validator that the
network page shows. A record is state like any other, with proofs.

Part of the deterministic state machine: checking signatures is deterministic, and nothing here
reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ledger.consensus.evidence import InvalidEvidence, check_equivocation_at
from ledger.state import Handler, StateView, TxContext, get_record
from ledger.tx import Reject, TxRejected, register_kind

KIND = "evidence.equivocation"
MAX_LISTED = 100


@dataclass(frozen=True)
class EquivocationEvidence:
    first: bytes  # an encoded consensus envelope, attachment stripped
    second: bytes  # another of the same validator, kind and slot, naming another block


@dataclass(frozen=True)
class EvidenceRecord:
    validator: str
    kind: str
    view: int  # 0 for certificate votes (their slot is the height)
    height: int
    first: bytes
    second: bytes
    reporter: str
    recorded_height: int


def count_key(validator: str) -> bytes:
    return b"evidence/" + validator.encode() + b"/count"


def record_key(validator: str, n: int) -> bytes:
    return b"evidence/" + validator.encode() + b"/" + n.to_bytes(8, "big")


def slot_key(validator: str, kind: str, view: int, height: int) -> bytes:
    return b"evidence-slot/" + f"{validator}/{kind}/{view}/{height}".encode()


def evidence_count(view: StateView, validator: str) -> int:
    count = get_record(view, int, count_key(validator))
    return 0 if count is None else count


def list_evidence(view: StateView, validator: str, limit: int = MAX_LISTED) -> list[EvidenceRecord]:
    """The latest `limit` records of `validator`, oldest first."""
    count = evidence_count(view, validator)
    records = (get_record(view, EvidenceRecord, record_key(validator, n)) for n in range(max(0, count - limit), count))
    return [r for r in records if r is not None]


# (state, height) -> the validators (id -> public key) at that height: `ledger.validators.validators_at`.
KeysAt = Callable[[StateView, int], Mapping[str, bytes]]


class EvidenceModule:
    def __init__(self, chain_id: str, keys_at: KeysAt) -> None:
        self._chain_id = chain_id
        self._keys_at = keys_at
        self.handlers: Mapping[str, Handler] = {KIND: self.process_equivocation}

    def process_equivocation(self, ctx: TxContext, p: EquivocationEvidence) -> None:
        try:
            eq = check_equivocation_at(p.first, p.second, self._chain_id,
                                       lambda height: self._keys_at(ctx.state, height))
        except InvalidEvidence as exc:
            raise TxRejected(Reject.INVALID_VALUE, f"not evidence of an equivocation: {exc}") from exc
        # One record per validator, kind and slot.
        seen = slot_key(eq.validator, eq.kind, eq.view, eq.height)
        if ctx.get(bool, seen) is not None:
            raise TxRejected(Reject.ALREADY_EXISTS, "this equivocation is recorded already")
        n = evidence_count(ctx.state, eq.validator)
        ctx.put(record_key(eq.validator, n), EvidenceRecord(
            eq.validator, eq.kind, eq.view, eq.height, p.first, p.second, ctx.sender, ctx.height,
        ))
        ctx.put(count_key(eq.validator), n + 1)
        ctx.put(seen, True)


def record_to_json(record: EvidenceRecord) -> dict[str, Any]:
    return {
        "validator": record.validator, "kind": record.kind, "view": record.view, "height": record.height,
        "first": record.first.hex(), "second": record.second.hex(), "reporter": record.reporter,
        "recorded_height": record.recorded_height,
    }


register_kind(KIND, EquivocationEvidence)
