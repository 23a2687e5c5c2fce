"""Native resolution: an identifier's record at any committed height, optionally with its proof."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ledger.api.deps import NodeDep
from ledger.api.errors import ApiError
from ledger.codec import to_plain
from ledger.proofs import build_state_proof
from ledger.resolver.identifiers import InvalidIdentifier, split_handle
from ledger.resolver.registry import get_identifier, identifier_key

router = APIRouter(tags=["resolve"])


@router.get("/v1/resolve/{identifier:path}")
async def resolve(identifier: str, node: NodeDep, height: int | None = None, proof: bool = False) -> dict[str, Any]:
    """The record of `identifier` as of `height` (default: the head); `proof=true` adds a state proof
    (also for an identifier that does not exist: then it proves the absence)."""
    try:
        split_handle(identifier)
    except InvalidIdentifier as exc:
        raise ApiError(400, "invalid_identifier", str(exc)) from exc
    head = node.chain.height
    if height is not None and not 0 <= height <= head:
        raise ApiError(404, "not_found", f"no committed block at height {height} (head is {head})")
    at = head if height is None else height
    record = get_identifier(node.chain.view_at(at), identifier)
    extra: dict[str, Any] = {}
    if proof:
        extra["proof"] = build_state_proof(node.chain, identifier_key(identifier), at)
    if record is None:
        raise ApiError(404, "not_found", f"{identifier} is not registered", identifier=identifier, height=at,
                       **extra)
    return {"identifier": identifier, "height": at, "record": to_plain(record), **extra}
