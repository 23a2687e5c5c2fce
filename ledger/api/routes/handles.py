"""Handle.Net REST compatible resolution: GET /api/handles/{prefix}/{suffix}."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from ledger.api.deps import NodeDep
from ledger.proofs import build_state_proof
from ledger.resolver.handle_format import filter_values, handle_values
from ledger.resolver.identifiers import InvalidIdentifier
from ledger.resolver.registry import get_identifier, identifier_key, owning_prefix

router = APIRouter(tags=["handle"])

_CALLBACK_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$.]{0,63}")


def _answer(body: dict[str, Any], status: int, callback: str | None) -> Response:
    if callback is not None and _CALLBACK_RE.fullmatch(callback):
        text = f"{callback}({json.dumps(body)});"
        return Response(text, status_code=status, media_type="application/javascript")
    return JSONResponse(body, status_code=status)


@router.get("/api/handles/{prefix}/{suffix:path}")
async def resolve_handle(
    prefix: str,
    suffix: str,
    node: NodeDep,
    index: Annotated[list[str] | None, Query()] = None,
    type: Annotated[list[str] | None, Query()] = None,
    callback: str | None = None,
    proof: bool = False,
    auth: bool = False,  # accepted for compatibility: a ledger node has no cache to bypass
    publicOnly: bool = True,  # noqa: N803 - Handle.Net's parameter name; all values are public here
) -> Response:
    handle = f"{prefix}/{suffix}"
    view = node.chain.latest
    try:
        # A Handle is stored as given; a GS1 key (gs1/01/<gtin>/21/<serial>, gs1:<cp>/01/...) under its
        # canonical key, owned by its longest registered gs1:<digits> prefix.
        key, owner_prefix, prefix_record = owning_prefix(view, handle)
    except InvalidIdentifier as exc:
        return _answer({"responseCode": 102, "handle": handle, "message": str(exc)}, 400, callback)
    try:
        indexes = [int(i) for i in index or []]
    except ValueError:
        return _answer({"responseCode": 202, "handle": handle, "message": "index must be an integer"}, 400, callback)
    if prefix_record is None:
        message = f"prefix {owner_prefix} is not homed on this ledger"
        return _answer({"responseCode": 301, "handle": handle, "message": message}, 400, callback)
    record = get_identifier(view, key)
    # proof=true adds a top-level proof of the record (or of its absence) against a certified header.
    extra = {"proof": build_state_proof(node.chain, identifier_key(key))} if proof else {}
    if record is None:
        return _answer({"responseCode": 100, "handle": handle, **extra}, 404, callback)
    values = filter_values(handle_values(record, owner_prefix), indexes, list(type or []))
    if not values:
        return _answer({"responseCode": 200, "handle": handle, **extra}, 200, callback)
    return _answer({"responseCode": 1, "handle": handle, "values": values, **extra}, 200, callback)
