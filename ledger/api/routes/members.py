"""Members (with their next nonce, which clients need to sign) and prefixes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from ledger.api.deps import NodeDep
from ledger.api.errors import ApiError
from ledger.api.params import MEMBER_ID, PREFIX
from ledger.codec import to_plain
from ledger.members import find_member_by_name, find_member_by_public_key, get_member
from ledger.resolver.registry import get_prefix
from ledger.state import get_nonce

router = APIRouter(tags=["members"])


@router.get("/v1/members")
async def find_member(
    node: NodeDep, name: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    public_key: Annotated[str | None, Query(pattern=r"^[0-9a-fA-F]{64}$")] = None,
) -> dict[str, Any]:
    """A member by the name genesis or `member.add` gave it, or by its current public key (hex);
    one of the two is required (400 without either)."""
    view = node.chain.latest
    if name is not None:
        record = find_member_by_name(view, name)
    elif public_key is not None:
        try:
            record = find_member_by_public_key(view, bytes.fromhex(public_key))
        except ValueError as exc:
            raise ApiError(400, "malformed", "public_key is hex") from exc
    else:
        raise ApiError(400, "malformed", "give name= or public_key=")
    if record is None:
        raise ApiError(404, "not_found", "no such member")
    return {**to_plain(record), "nonce": get_nonce(view, record.id)}


@router.get("/v1/members/{member_id}")
async def member(member_id: Annotated[str, Path(pattern=MEMBER_ID)], node: NodeDep) -> dict[str, Any]:
    view = node.chain.latest
    record = get_member(view, member_id)
    if record is None:
        raise ApiError(404, "not_found", f"no member {member_id}")
    return {**to_plain(record), "nonce": get_nonce(view, member_id)}


@router.get("/v1/prefixes/{prefix}")
async def prefix(prefix: Annotated[str, Path(pattern=PREFIX, max_length=128)], node: NodeDep
                 ) -> dict[str, Any]:
    record = get_prefix(node.chain.latest, prefix)
    if record is None:
        raise ApiError(404, "not_found", f"prefix {prefix} is not registered on this ledger")
    return to_plain(record)
