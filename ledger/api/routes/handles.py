"""Handle.Net REST compatible resolution: GET /api/handles/{prefix}/{suffix}.

The work is in `ledger.api.handle_answer`; this route documents it in OpenAPI and serves the
requests the cache middleware hands on (it answers most misses itself)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from ledger.api.deps import NodeDep
from ledger.api.handle_answer import HandleQuery, answer

router = APIRouter(tags=["handle"])


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
    result = answer(node, f"{prefix}/{suffix}", HandleQuery(list(index or []), list(type or []), callback, proof))
    return Response(result.body, status_code=result.status, media_type=result.media_type)
