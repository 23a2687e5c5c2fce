"""Anchors of the ledger on Ethereum, as recorded in the ledger by `anchor.record` transactions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ledger.anchor.records import get_anchor_record, latest_recorded_height, record_to_json
from ledger.api.deps import NodeDep
from ledger.api.errors import ApiError

router = APIRouter(tags=["anchors"])


@router.get("/v1/anchors/latest")
async def latest_anchor(node: NodeDep) -> dict[str, Any]:
    height = latest_recorded_height(node.chain.latest)
    if height == 0:
        raise ApiError(404, "not_found", "no anchor recorded yet")
    return await get_anchor(height, node)


@router.get("/v1/anchors/{height}")
async def get_anchor(height: int, node: NodeDep) -> dict[str, Any]:
    if height < 1:
        raise ApiError(400, "malformed", "anchored heights start at 1")
    record = get_anchor_record(node.chain.latest, height)
    if record is None:
        raise ApiError(404, "not_found", f"no anchor recorded at height {height}")
    return record_to_json(record)
