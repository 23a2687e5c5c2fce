"""State module: appraisals of tokens by members holding the appraiser role.

Theory of operation. An appraisal says what a token is worth in credits, by which method, as of which date,
with the sha256 of the evidence (the report itself stays off the ledger). A token's appraisals are numbered
from 1: `market/ap/<token>/<seq:08d>` holds the seq-th, `market/apc/<token>` how many there are, so the
latest are a few point reads and each is provable. Appraisals are only ever added: a later one supersedes an
earlier one for whoever reads them, and nothing is rewritten.

Rules (one check per line, each raising a typed `TxRejected`): `market.appraise` by an appraiser; the token
exists and is not burned; a value of 1 to MAX_AMOUNT credits; a method of 1 to 256 printable characters; a
date not after block time; a 32-byte evidence hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ledger.market.credits import check_amount
from ledger.nft.assets import get_asset
from ledger.state import Handler, StateView, TxContext, get_record
from ledger.tx import Reject, TxRejected, register_kind

MAX_METHOD_LEN = 256


@dataclass(frozen=True)
class Appraisal:
    token: str
    seq: int  # from 1
    appraiser: str
    value: int  # credits
    method: str
    date: int  # ms: the date the value is as of
    evidence: bytes  # sha256 of the evidence
    height: int
    timestamp: int  # ms, block time


@dataclass(frozen=True)
class Appraise:
    token: str
    value: int
    method: str
    date: int  # ms
    evidence: bytes


def appraisal_key(token: str, seq: int) -> bytes:
    return b"market/ap/" + token.encode() + b"/" + f"{seq:08d}".encode()


def count_key(token: str) -> bytes:
    return b"market/apc/" + token.encode()


def appraisal_count(view: StateView, token: str) -> int:
    return get_record(view, int, count_key(token)) or 0


def get_appraisal(view: StateView, token: str, seq: int) -> Appraisal | None:
    return get_record(view, Appraisal, appraisal_key(token, seq))


def process_appraise(ctx: TxContext, p: Appraise) -> None:
    ctx.require_role("appraiser")
    asset = get_asset(ctx.state, p.token)
    # The token exists and is live.
    if asset is None or asset.burned:
        raise TxRejected(Reject.NOT_FOUND, f"no live asset {p.token!r}")
    check_amount(p.value, "value")
    # The method is a short printable description.
    if not 0 < len(p.method) <= MAX_METHOD_LEN or not p.method.isprintable():
        raise TxRejected(Reject.INVALID_VALUE, f"method must be 1-{MAX_METHOD_LEN} printable characters")
    # A value is as of a date that has come.
    if not 0 <= p.date <= ctx.timestamp:
        raise TxRejected(Reject.INVALID_VALUE, f"date {p.date} is after block time {ctx.timestamp}")
    # The evidence is named by its sha256.
    if len(p.evidence) != 32:
        raise TxRejected(Reject.INVALID_VALUE, "evidence must be a 32-byte sha256")
    seq = appraisal_count(ctx.state, p.token) + 1
    ctx.put(appraisal_key(p.token, seq), Appraisal(p.token, seq, ctx.sender, p.value, p.method, p.date, p.evidence,
                                                   ctx.height, ctx.timestamp))
    ctx.put(count_key(p.token), seq)


class AppraisalsModule:
    handlers: Mapping[str, Handler] = {"market.appraise": process_appraise}


register_kind("market.appraise", Appraise)
