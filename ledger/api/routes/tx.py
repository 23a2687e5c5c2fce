"""Submitting transactions (JSON or msgpack, one or a batch) and looking them up."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from ledger.api.deps import NodeDep
from ledger.api.errors import ApiError
from ledger.api.params import HEX64
from ledger.chain_history import NOT_EXECUTED
from ledger.codec import CodecError, encode, unpack_strict
from ledger.mempool import Admission, Outcome, Refusal
from ledger.observer import Follower, NoValidatorReachable
from ledger.tx import MAX_TX_BYTES, Reject, TxRejected, decode_tx, tx_from_plain, tx_to_plain

router = APIRouter(tags=["transactions"])

MAX_BATCH = 10_000
MSGPACK = "application/msgpack"

# The HTTP status of a single rejected transaction, by reason.
_REJECT_STATUS = {Reject.OVERSIZED.value: 413, Reject.DUPLICATE.value: 409, Reject.MEMPOOL_FULL.value: 503}


def _parse_msgpack(body: bytes) -> tuple[list[bytes], bool]:
    try:
        value = unpack_strict(body)
    except CodecError as exc:
        raise ApiError(400, Reject.MALFORMED.value, str(exc)) from exc
    if isinstance(value, bytes):
        return [value], True
    if isinstance(value, list) and all(isinstance(v, bytes) for v in value):
        return value, False
    raise ApiError(400, Reject.MALFORMED.value, "msgpack body must be one tx (bin) or an array of bin")


def _json_item(item: Any) -> bytes | Admission:
    """A JSON item is a tx object or the hex of its canonical bytes; bad items become rejections."""
    try:
        if isinstance(item, str):
            raw = bytes.fromhex(item)
            decode_tx(raw)
            return raw
        return encode(tx_from_plain(item))
    except ValueError as exc:  # bad hex
        return Admission(b"", False, Reject.MALFORMED.value, str(exc))
    except TxRejected as exc:
        return Admission(b"", False, exc.reason.value, exc.message)


def _parse_json(body: bytes) -> tuple[list[bytes | Admission], bool]:
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, Reject.MALFORMED.value, f"body is not JSON: {exc}") from exc
    if isinstance(value, dict) and "txs" in value:
        value = value["txs"]
    if isinstance(value, list):
        return [_json_item(v) for v in value], False
    return [_json_item(value)], True


def _result(a: Admission, outcome: Outcome | Refusal | None, waited: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"tx_id": a.tx_id.hex(), "accepted": a.accepted}
    if not a.accepted:
        out.update(reason=a.reason, message=a.message)
    elif isinstance(outcome, Refusal):
        out.update(status="refused", reason=outcome.reason, message=outcome.message)
    elif waited:
        out["status"] = "committed" if outcome is not None else "pending"
        if outcome is not None:
            out.update(height=outcome.height, index=outcome.index, ok=outcome.ok)
            if not outcome.ok:
                out.update(reason=outcome.reason, message=outcome.message)
    else:
        out["status"] = "pending"
    return out


_TX_BODY = {
    "required": True,
    "description": f"One signed transaction or a batch of at most {MAX_BATCH}.",
    "content": {
        "application/json": {"schema": {"oneOf": [
            {"type": "object", "description": "a signed transaction (`ledger.tx.tx_to_plain`)",
             "not": {"required": ["txs"]}},
            {"type": "string", "pattern": "^(?:[0-9a-fA-F]{2})+$", "description": "hex of its canonical bytes"},
            {"type": "array", "maxItems": MAX_BATCH, "items": {"type": ["object", "string"]}},
            {"type": "object", "required": ["txs"],
             "properties": {"txs": {"type": "array", "maxItems": MAX_BATCH, "items": {"type": ["object", "string"]}}}},
        ]}},
        MSGPACK: {"schema": {"type": "string", "format": "binary",
                             "description": "one bin, or an array of bin, each a canonical SignedTx"}},
    },
}


@router.post("/v1/tx", status_code=202, openapi_extra={"requestBody": _TX_BODY}, responses={
    200: {"description": "committed (with wait=true)"}, 409: {"description": "duplicate"},
    503: {"description": "the node's pending set is full"}})
async def submit_tx(
    request: Request,
    node: NodeDep,
    wait: Annotated[bool, Query(description="wait until the transactions commit")] = False,
    timeout: Annotated[float, Query(gt=0, le=120, description="seconds to wait with wait=true")] = 30.0,
) -> Response:
    """Submit one signed transaction or a batch.

    Bodies: JSON (a tx object, an array of them, `{"txs": [...]}`, or hex strings of canonical
    bytes) or `application/msgpack` (one bin, or an array of bin, each a canonical SignedTx).
    An observer forwards the request to a validator and answers with the validator's answer.
    """
    body = await request.body()
    if node.follower is not None:
        return await _forward(request, node.follower, body)
    if request.headers.get("content-type", "").split(";")[0].strip() == MSGPACK:
        raw_items, single = _parse_msgpack(body)
        items: list[bytes | Admission] = list(raw_items)
    else:
        items, single = _parse_json(body)
    if not items:
        raise ApiError(400, Reject.MALFORMED.value, "no transactions in the request")
    if len(items) > MAX_BATCH:
        raise ApiError(413, Reject.OVERSIZED.value, f"at most {MAX_BATCH} transactions per request")
    raws = [i for i in items if isinstance(i, bytes)]
    admitted = iter(node.submit(raws))
    admissions = [next(admitted) if isinstance(i, bytes) else i for i in items]
    outcomes: list[Outcome | Refusal | None] = [None] * len(admissions)
    if wait:
        accepted = [a.tx_id for a in admissions if a.accepted]
        waited = iter(await node.wait_committed(accepted, timeout))
        outcomes = [next(waited) if a.accepted else None for a in admissions]
    results = [_result(a, o, wait) for a, o in zip(admissions, outcomes, strict=True)]
    n_accepted = sum(1 for a in admissions if a.accepted)
    if single:
        a = admissions[0]
        if not a.accepted:
            status = _REJECT_STATUS.get(a.reason, 400)
            return JSONResponse({"error": a.reason, **results[0]}, status_code=status)
        return JSONResponse(results[0], status_code=200 if wait and isinstance(outcomes[0], Outcome) else 202)
    answer: dict[str, Any] = {"accepted": n_accepted, "rejected": len(admissions) - n_accepted, "results": results}
    if n_accepted == 0:
        reasons = {a.reason for a in admissions}
        answer.update(error=reasons.pop() if len(reasons) == 1 else "rejected", message="no transaction was accepted")
        return JSONResponse(answer, status_code=400)
    return JSONResponse(answer, status_code=200 if wait else 202)


async def _forward(request: Request, follower: Follower, body: bytes) -> Response:
    """An observer's write: the validator's answer, status, headers and body as they came."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        answer = await follower.forward(request.method, target, request.headers.items(), body)
    except NoValidatorReachable as exc:
        raise ApiError(503, "unavailable", f"this observer could not reach a validator ({exc})") from exc
    response = Response(answer.body, status_code=answer.status)
    for name, value in answer.headers:
        response.headers.append(name, value)
    return response


def parse_tx_id(text: str) -> bytes:
    try:
        tx_id = bytes.fromhex(text)
    except ValueError:
        tx_id = b""
    if len(tx_id) != 32:
        raise ApiError(400, "malformed", "a transaction id is 64 hex characters")
    return tx_id


@router.get("/v1/tx/{tx_id}", response_model=None)
async def get_tx(tx_id: Annotated[str, Path(pattern=HEX64)], node: NodeDep, request: Request
                 ) -> dict[str, Any] | Response:
    tid = parse_tx_id(tx_id)
    loc = node.chain.get_tx_location(tid)
    if loc is None and node.follower is not None:  # pending or refused is known to the validators only
        return await _forward(request, node.follower, b"")
    if loc is None:
        if node.mempool.is_pending(tid):
            return {"tx_id": tx_id, "status": "pending"}
        refusal = node.mempool.refusal(tid)
        if refusal is not None:
            return {"tx_id": tx_id, "status": "refused", "reason": refusal.reason, "message": refusal.message}
        raise ApiError(404, "not_found", "no such transaction on this node")
    block = node.chain.get_block(loc.height)
    raw = block.txs[loc.index] if block is not None else b""
    try:
        tx: Any = tx_to_plain(decode_tx(raw))
    except TxRejected:
        tx = raw.hex()
    executed = loc.reason != NOT_EXECUTED  # committed below a state-synced node's base: its outcome is unknown here
    return {
        "tx_id": tx_id, "status": "committed", "height": loc.height, "index": loc.index,
        "ok": loc.ok if executed else None,
        "reason": loc.reason, "message": loc.message, "tx": tx,
    }


__all__ = ["router", "MAX_TX_BYTES"]
