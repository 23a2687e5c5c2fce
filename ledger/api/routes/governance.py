"""Governance: the threshold, the admins, and proposals of admin actions (with state proofs).

A proposal is read at any committed `height` (default: the head); `proof=true` adds the state proof of
its key `gov/p/<id>` (docs/proofs.md), `anchor=true` the path to the latest Ethereum anchor. The proven
value is the `proposal` object of the answer. Its `status` there is as stored (open, executed,
rejected); the answer's `status` is as of that block's time, so an open proposal past its
`expires_at` reads `expired`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Path, Query

from ledger.api.deps import NodeDep, header_at
from ledger.api.errors import ApiError
from ledger.api.params import HEX64, MAX_HEIGHT
from ledger.codec import CodecError, to_plain
from ledger.governance import (
    STATUSES,
    Proposal,
    action_payload,
    counted_approvals,
    get_proposal,
    get_settings,
    proposal_count,
    proposal_id_at,
    proposal_key,
    status_at,
)
from ledger.members import active_admins
from ledger.proofs import build_state_proof
from ledger.state import StateView

router = APIRouter(tags=["governance"])
MAX_LIST = 500
MAX_SCAN = 10_000  # proposals looked at for one filtered listing
Status = Literal["open", "executed", "rejected", "expired"]
assert set(get_args(Status)) == set(STATUSES)  # noqa: S101 - the route's enum is the module's list


def proposal_json(view: StateView, proposal: Proposal, timestamp: int) -> dict[str, Any]:
    """A proposal as stored (`proposal`, what a proof proves), its status at `timestamp`, its action decoded
    and its approvals that count now."""
    try:
        action: Any = to_plain(action_payload(proposal))
    except (KeyError, CodecError):  # a kind this node does not know: show the payload as stored
        action = None
    return {
        "proposal": to_plain(proposal),
        "status": status_at(proposal, timestamp),
        "action": action,
        "approvals_counted": len(counted_approvals(view, proposal)),
        "approvals_needed": get_settings(view).approvals,
    }


@router.get("/v1/governance")
async def governance(node: NodeDep) -> dict[str, Any]:
    """The threshold (approvals an admin action needs), how long a proposal stays open, the active admins."""
    view = node.chain.latest
    settings = get_settings(view)
    admins = active_admins(view)
    return {"height": node.chain.height, "approvals": settings.approvals, "expiry_ms": settings.expiry_ms,
            "admins": None if admins is None else list(admins), "proposals": proposal_count(view)}


@router.get("/v1/governance/proposals")
async def list_proposals(
    node: NodeDep, status: Status | None = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_HEIGHT, description="list proposals with a smaller seq")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
) -> dict[str, Any]:
    """Proposals, newest first (`before`: only those with a smaller `seq`), optionally of one status; at most
    `limit` (500) a page and 10,000 proposals examined."""
    view, head = node.chain.latest, node.chain.head
    count = proposal_count(view)
    start = count if before is None else min(count, before - 1)
    out = []
    for seq in range(start, max(0, start - MAX_SCAN), -1):
        proposal_id = proposal_id_at(view, seq)
        proposal = None if proposal_id is None else get_proposal(view, proposal_id)
        if proposal is None:
            continue
        item = proposal_json(view, proposal, head.timestamp)
        if status is None or item["status"] == status:
            out.append(item)
            if len(out) >= limit:
                break
    return {"height": head.height, "count": count, "proposals": out}


@router.get("/v1/governance/proposals/{proposal_id}")
async def proposal(
    proposal_id: Annotated[str, Path(pattern=HEX64)], node: NodeDep,
    height: Annotated[int | None, Query(ge=0, le=MAX_HEIGHT, description="a committed height (default: the head)")]
    = None, proof: bool = False, anchor: bool = False,
) -> dict[str, Any]:
    """A proposal as of `height`; with `proof=true`, the state proof of its record."""
    at = header_at(node.chain, height)
    view = node.chain.view_at(at.height)
    record = get_proposal(view, proposal_id)
    if record is None:
        where = "" if height is None else f" at height {height}"
        raise ApiError(404, "not_found", f"no proposal {proposal_id}{where}")
    extra: dict[str, Any] = {}
    if proof:
        extra["proof"] = build_state_proof(node.chain, proposal_key(proposal_id), at.height, anchor=anchor)
    return {"height": at.height, **proposal_json(view, record, at.timestamp), **extra}
