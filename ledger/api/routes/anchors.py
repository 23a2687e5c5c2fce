"""Anchors of the ledger on Ethereum, as recorded in the ledger by `anchor.record` transactions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from ledger.anchor.records import get_anchor_record, latest_recorded_height, record_to_json
from ledger.api.deps import NodeDep
from ledger.api.errors import ApiError
from ledger.api.params import MAX_HEIGHT

router = APIRouter(tags=["anchors"])


@router.get("/v1/anchors/latest")
async def latest_anchor(node: NodeDep) -> dict[str, Any]:
    height = latest_recorded_height(node.chain.latest)
    if height == 0:
        raise ApiError(404, "not_found", "no anchor recorded yet")
    return await get_anchor(height, node)


@router.get("/v1/anchors/{height}")
async def get_anchor(height: Annotated[int, Path(ge=1, le=MAX_HEIGHT)], node: NodeDep) -> dict[str, Any]:
    record = get_anchor_record(node.chain.latest, height)
    if record is None:
        raise ApiError(404, "not_found", f"no anchor recorded at height {height}")
    return record_to_json(record)
