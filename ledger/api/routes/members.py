"""Members (with their next nonce, which clients need to sign) and prefixes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ledger.api.deps import NodeDep
from ledger.api.errors import ApiError
from ledger.codec import to_plain
from ledger.members import get_member
from ledger.resolver.registry import get_prefix
from ledger.state import get_nonce

router = APIRouter(tags=["members"])


@router.get("/v1/members/{member_id}")
async def member(member_id: str, node: NodeDep) -> dict[str, Any]:
    view = node.chain.latest
    record = get_member(view, member_id)
    if record is None:
        raise ApiError(404, "not_found", f"no member {member_id}")
    return {**to_plain(record), "nonce": get_nonce(view, member_id)}


@router.get("/v1/prefixes/{prefix}")
async def prefix(prefix: str, node: NodeDep) -> dict[str, Any]:
    record = get_prefix(node.chain.latest, prefix)
    if record is None:
        raise ApiError(404, "not_found", f"prefix {prefix} is not registered on this ledger")
    return to_plain(record)
