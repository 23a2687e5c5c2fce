"""Private data over HTTP: collections, puts to a member node, signed reads, the public commitment.

- `POST /v1/private-fetch`: an observer's fetch, signed by its node key, answered sealed (`ledger.private.http_fetch`).
- `GET /v1/members/{id}/enc-key`: a member's X25519 encryption public key.
- `GET /v1/collections/{name}`: a collection and its member organisations (public state).
- `POST /v1/private/{collection}`: the plaintext, its salt and the signed `private.put`; accepted only
  by a validator of a member organisation (`ledger.private.service`), which waits for the commit.
- `GET /v1/private/{collection}/{key}`: the plaintext, to a request signed by a member of the collection
  (`ledger.private.reads`); anyone else gets 403.
- `GET /v1/private/{collection}/{key}/entry`: the public entry (commitment, writer, height, purged);
  `proof=true` adds the bare state proof of its key, which `ledger verify` checks.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from ledger.api.deps import NodeDep
from ledger.api.errors import ApiError
from ledger.api.params import MEMBER_ID
from ledger.codec import encode, to_plain
from ledger.crypto import derive_id
from ledger.members import get_member
from ledger.mempool import Outcome, Refusal
from ledger.node import Node
from ledger.private.http_fetch import fetch_associated_data
from ledger.private.module import PrivatePut, org_name
from ledger.private.reads import MEMBER_HEADER, NODE_KEY_HEADER, REQUEST_HEADER, read_associated_data
from ledger.private.records import MAX_KEY_LEN, entry_key, get_collection, get_enc_key, get_entry
from ledger.private.service import FETCH, FetchAnswer, PrivateData, PutRefused
from ledger.proofs import build_state_proof
from ledger.sealed import seal
from ledger.tx import TxRejected, decode_payload, tx_from_plain

router = APIRouter(tags=["private data"])
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
KeyParam = Annotated[str, Path(min_length=1, max_length=MAX_KEY_LEN)]
NameParam = Annotated[str, Path(pattern=NAME)]


def _service(node: Node) -> PrivateData:
    if not isinstance(node.private, PrivateData):
        raise ApiError(503, "unavailable", "this node keeps no private data")
    return node.private


@router.get("/v1/collections/{name}")
async def collection(name: NameParam, node: NodeDep) -> dict[str, Any]:
    """A collection: its member organisations (ids and names), the height that created it."""
    view = node.chain.latest
    found = get_collection(view, name)
    if found is None:
        raise ApiError(404, "not_found", f"no collection {name!r}")
    return {"name": found.name, "members": list(found.members),
            "member_names": [org_name(view, m) for m in found.members], "created_height": found.created_height}


_FETCH_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["request", "reply_key"],
        "properties": {
            "request": {"type": "string", "pattern": "^([0-9a-f]{2})+$", "description": "the fetch request, hex"},
            "reply_key": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "X25519 key, hex"},
        },
    }}},
}


@router.post("/v1/private-fetch", openapi_extra={"requestBody": _FETCH_BODY}, responses={
    400: {"description": "malformed"}, 403: {"description": "not signed by a node key"},
    404: {"description": "not a member organisation's node, or not held here"}})
async def fetch(request: Request, node: NodeDep) -> dict[str, Any]:
    """An observer's fetch of private data (`ledger.private.http_fetch`), signed by its node key (headers
    X-Ledger-Node-Key, X-Ledger-Request): answered, sealed to `reply_key`, only to a node of a member
    organisation of the collection, as a peer's fetch is."""
    service = _service(node)
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise TypeError("not an object")
        payload, reply_key = bytes.fromhex(body["request"]), bytes.fromhex(body["reply_key"])
        node_key = bytes.fromhex(request.headers.get(NODE_KEY_HEADER, ""))
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(400, "malformed", f"the body must be {{request (hex), reply_key (hex)}}: {exc}") from exc
    if len(reply_key) != 32 or len(node_key) != 32 or payload[:1] != bytes([FETCH]):
        raise ApiError(400, "malformed", f"a fetch names a 32-byte reply key and node key ({NODE_KEY_HEADER})")
    problem = service.reads.fetch_problem(request.headers.get(REQUEST_HEADER), node_key, reply_key, payload,
                                          time.time_ns() // 1_000_000)
    if problem is not None:
        raise ApiError(403, "unauthorized", problem)
    answer = await service.serve_fetch(derive_id(node_key), payload)
    if not answer:
        raise ApiError(404, "not_found", "not held here, or the asking node is of no member organisation")
    sealed = seal(answer, [reply_key], fetch_associated_data(node.chain.chain_id, payload))
    return {"sealed": base64.b64encode(sealed).decode()}


@router.get("/v1/members/{member_id}/enc-key")
async def enc_key(member_id: Annotated[str, Path(pattern=MEMBER_ID)], node: NodeDep) -> dict[str, Any]:
    """The member's registered X25519 encryption public key (`member.enc_key`), to seal private terms to it."""
    found = get_enc_key(node.chain.latest, member_id)
    if found is None:
        raise ApiError(404, "not_found", f"member {member_id} registered no encryption key")
    return {"member": member_id, "enc_public_key": found.hex(), "height": node.chain.height}


@router.get("/v1/private/{collection}/{key}/entry")
async def entry(collection: NameParam, key: KeyParam, node: NodeDep, proof: bool = False) -> dict[str, Any]:
    """The public side of an entry: its salted commitment, writer, height, and whether it was purged."""
    found = get_entry(node.chain.latest, collection, key)
    if found is None:
        raise ApiError(404, "not_found", f"no entry {key!r} in collection {collection!r}")
    body: dict[str, Any] = {"height": node.chain.height, "entry": to_plain(found)}
    if proof:
        body["proof"] = build_state_proof(node.chain, entry_key(collection, key))
    return body


_PUT_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["tx", "salt", "value"],
        "properties": {
            "tx": {"type": "object", "description": "the signed private.put (`ledger.tx.tx_to_plain`)"},
            "salt": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "the commitment's salt, hex"},
            "value": {"type": "string", "format": "byte", "description": "the plaintext, base64"},
        },
    }}},
}


@router.post("/v1/private/{collection}", openapi_extra={"requestBody": _PUT_BODY}, responses={
    400: {"description": "malformed, or the value is not what the tx commits to"},
    403: {"description": "this node's organisation, or the tx's sender, is not a member of the collection"},
    409: {"description": "an observer"}, 413: {"description": "the value is too large"},
    503: {"description": "too many values wait for their commit on this node"}})
async def put(
    collection: NameParam, request: Request, node: NodeDep,
    timeout: Annotated[float, Query(gt=0, le=120, description="seconds to wait for the commit")] = 30.0,
) -> dict[str, Any]:
    """Store private data: body `{"tx": signed private.put, "salt": hex, "value": base64}`. The node keeps the
    plaintext only if its organisation is a member and the value and salt hash to the commitment; it answers
    once the transaction committed (or `timeout` passed: status pending)."""
    service = _service(node)
    if node.follower is not None:
        raise ApiError(409, "observer", "send private data to a validator of a member organisation")
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise TypeError("not an object")
        tx = tx_from_plain(body["tx"])
        salt, value = bytes.fromhex(body["salt"]), base64.b64decode(body["value"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ApiError(400, "malformed", f"the body must be {{tx, salt (hex), value (base64)}}: {exc}") from exc
    except TxRejected as exc:
        raise ApiError(400, exc.reason.value, exc.message) from exc
    try:
        payload = decode_payload(tx)
    except TxRejected as exc:
        raise ApiError(400, exc.reason.value, exc.message) from exc
    if tx.kind != "private.put" or not isinstance(payload, PrivatePut) or payload.collection != collection:
        raise ApiError(400, "malformed", f"the tx must be a private.put to {collection}")
    key = payload.key
    found = get_collection(node.chain.latest, collection)
    if found is None:
        raise ApiError(404, "not_found", f"no collection {collection!r}")
    if tx.sender not in found.members:
        raise ApiError(403, "unauthorized", f"{tx.sender} is not a member of collection {collection!r}")
    try:
        service.expect(collection, key, salt, value, payload.commitment)
    except PutRefused as exc:
        raise ApiError(exc.status, exc.reason, exc.message) from exc
    [admission] = node.submit([encode(tx)])
    if not admission.accepted:
        service.forget(payload.commitment)
        raise ApiError(400, admission.reason, admission.message)
    [outcome] = await node.wait_committed([admission.tx_id], timeout)
    result: dict[str, Any] = {"tx_id": admission.tx_id.hex(), "commitment": payload.commitment.hex()}
    if isinstance(outcome, Outcome):
        result.update(status="committed", height=outcome.height, ok=outcome.ok)
        if not outcome.ok:
            service.forget(payload.commitment)
            result.update(reason=outcome.reason, message=outcome.message)
    elif isinstance(outcome, Refusal):
        service.forget(payload.commitment)
        result.update(status="refused", reason=outcome.reason, message=outcome.message)
    else:
        result["status"] = "pending"
    return result


@router.get("/v1/private/{collection}/{key}", responses={
    403: {"description": "not signed by a member"}, 409: {"description": "sealed=true without an encryption key"}})
async def read(
    collection: NameParam, key: KeyParam, request: Request, node: NodeDep,
    sealed: Annotated[bool, Query(description="seal the value and salt to the member's encryption key")] = False,
) -> dict[str, Any]:
    """The plaintext (base64) with its salt and commitment, to a request signed by a member of the collection
    (headers X-Ledger-Member: member id, X-Ledger-Request: `<time ms>.<signature>`, `ledger private get`). With
    `sealed=true`, the value and salt come sealed to the member's registered X25519 key (`sealed`, base64),
    so that nobody on the way reads them."""
    service = _service(node)
    view = node.chain.latest
    member_id = request.headers.get(MEMBER_HEADER, "")
    member = get_member(view, member_id) if member_id else None
    found = get_collection(view, collection)
    if found is None:
        raise ApiError(404, "not_found", f"no collection {collection!r}")
    if member is None or not member.active:
        raise ApiError(403, "unauthorized", f"a read of private data needs the {MEMBER_HEADER} header naming "
                                            "an active member")
    problem = service.reads.problem(request.headers.get(REQUEST_HEADER), member.public_key, member.id, collection,
                                     key, time.time_ns() // 1_000_000)
    if problem is not None:
        raise ApiError(403, "unauthorized", problem)
    if member.id not in found.members:
        raise ApiError(403, "unauthorized", f"{member.id} is not a member of collection {collection!r}")
    if not service.holds_collection(collection):
        raise ApiError(404, "not_held_here", "this node's organisation is not a member of the collection: "
                                             "ask a node of a member organisation")
    readable = service.readable(collection, key)
    if readable is None:
        live = get_entry(view, collection, key)
        why = "no such entry" if live is None else "purged" if live.purged else "not received yet"
        raise ApiError(404, "not_found", f"{collection}/{key}: {why}")
    record, held = readable
    answer = {"collection": collection, "key": key, "commitment": record.commitment.hex(), "writer": record.writer,
              "height": record.height}
    if not sealed:
        return {**answer, "salt": held.salt.hex(), "value": base64.b64encode(held.value).decode()}
    enc = get_enc_key(view, member.id)
    if enc is None:
        raise ApiError(409, "no_enc_key", f"{member.id} registered no encryption key (`ledger member enc-key`)")
    box = seal(encode(FetchAnswer(held.salt, held.value)), [enc], read_associated_data(
        node.chain.chain_id, collection, key, member.id))
    return {**answer, "sealed": base64.b64encode(box).decode()}

