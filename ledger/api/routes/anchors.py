"""Anchors of the ledger on Ethereum: the effective ones (attested alike by f+1 validators), the certified
anchoring settings, and the votes a height has so far."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from ledger.anchor.records import (
    get_anchor_record,
    get_votes,
    latest_effective_height,
    quorum_of_attesters,
    record_to_json,
)
from ledger.anchor.settings import get_settings, settings_to_json
from ledger.api.deps import NodeDep
from ledger.api.errors import ApiError
from ledger.api.params import MAX_HEIGHT

router = APIRouter(tags=["anchors"])


@router.get("/v1/anchors")
async def anchoring(node: NodeDep) -> dict[str, Any]:
    """The certified anchoring settings (null: this ledger does not anchor), the attestations an anchor needs
    to take effect (f+1 of the set that certifies the next block, the one its attestations count against), and
    the latest effective anchor (null: none yet)."""
    view = node.chain.latest
    validators = node.chain.validators_at(node.chain.height + 1)
    latest = get_anchor_record(view, latest_effective_height(view))
    return {"settings": settings_to_json(get_settings(view)),
            "attestations_needed": quorum_of_attesters(len(validators)),
            "latest": None if latest is None else record_to_json(latest)}


@router.get("/v1/anchors/latest")
async def latest_anchor(node: NodeDep) -> dict[str, Any]:
    height = latest_effective_height(node.chain.latest)
    if height == 0:
        raise ApiError(404, "not_found", "no effective anchor yet")
    return await get_anchor(height, node)


@router.get("/v1/anchors/{height}")
async def get_anchor(height: Annotated[int, Path(ge=1, le=MAX_HEIGHT)], node: NodeDep) -> dict[str, Any]:
    record = get_anchor_record(node.chain.latest, height)
    if record is None:
        raise ApiError(404, "not_found", f"no effective anchor at height {height}")
    return record_to_json(record)


@router.get("/v1/anchors/{height}/votes")
async def get_votes_at(height: Annotated[int, Path(ge=1, le=MAX_HEIGHT)], node: NodeDep) -> dict[str, Any]:
    """The attestations of `height` that have not made an anchor effective (yet): one per validator. A claim
    that only one validator makes never takes effect."""
    view = node.chain.latest
    record = get_anchor_record(view, height)
    return {"height": height, "effective": None if record is None else record_to_json(record),
            "votes": [{"validator": v.validator, **record_to_json(v.claim)} for v in get_votes(view, height)]}
