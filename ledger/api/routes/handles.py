"""Handle.Net REST compatible resolution: GET /api/handles/{prefix}/{suffix}.

The work is in `ledger.api.handle_answer`; this route documents it in OpenAPI and serves the
requests the cache middleware hands on (it answers most misses itself)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from ledger.api.deps import NodeDep
from ledger.api.handle_answer import HandleQuery, answer
from ledger.api.params import HANDLE_PREFIX, HANDLE_SUFFIX

router = APIRouter(tags=["handle"])

_HANDLE_JSON = {"schema": {"type": "object", "required": ["responseCode", "handle"],
                           "properties": {"responseCode": {"type": "integer"}, "handle": {"type": "string"},
                                          "values": {"type": "array"}, "proof": {"type": "object"}}}}
_ANSWER = {"application/json": _HANDLE_JSON, "application/javascript": {"schema": {"type": "string"}}}


@router.get("/api/handles/{prefix}/{suffix:path}", response_class=Response, responses={
    200: {"description": "responseCode 1 (values) or 200 (filters matched nothing)", "content": _ANSWER},
    400: {"description": "responseCode 102 (invalid handle), 202 (invalid index) or 301 (prefix not homed here)",
          "content": _ANSWER},
    404: {"description": "responseCode 100: no such handle (with proof=true: a proof of its absence)",
          "content": _ANSWER}})
async def resolve_handle(
    prefix: Annotated[str, Path(pattern=HANDLE_PREFIX, max_length=128)],
    suffix: Annotated[str, Path(pattern=HANDLE_SUFFIX, max_length=255)],
    node: NodeDep,
    index: Annotated[list[int] | None, Query(description="values with these indexes (or these types)")] = None,
    type: Annotated[list[str] | None, Query(description="values of these types; `T.` matches sub-types")] = None,
    callback: Annotated[str | None, Query(
        max_length=1024, description="JSONP: the answer wrapped in `callback(...)` when the name matches "
                                     "`[A-Za-z_$][A-Za-z0-9_$.]{0,63}` (ignored otherwise)")] = None,
    proof: bool = False,
    auth: bool = False,  # accepted for compatibility: a ledger node has no cache to bypass
    publicOnly: bool = True,  # noqa: N803 - Handle.Net's parameter name; all values are public here
) -> Response:
    """Handle.Net REST resolution (answers from the node's cache of encoded answers; `auth=true` bypasses it)."""
    query = HandleQuery([str(i) for i in index or []], list(type or []), callback, proof)
    result = answer(node, f"{prefix}/{suffix}", query)
    return Response(result.body, status_code=result.status, media_type=result.media_type)
