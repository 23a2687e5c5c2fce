"""Equivocation evidence recorded in the ledger, per validator (see ledger/evidence.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from ledger.api.deps import NodeDep
from ledger.evidence import MAX_LISTED, evidence_count, list_evidence, record_to_json

router = APIRouter(tags=["evidence"])


@router.get("/v1/evidence/{validator}")
async def validator_evidence(
    node: NodeDep,
    validator: Annotated[str, Path(pattern="^[0-9a-f]{40}$", description="a validator id (40 hex digits)")],
) -> dict[str, Any]:
    """The equivocations of `validator` recorded in the ledger (the latest 100), each with the two
    signed messages that prove it: anyone holding the genesis file can check them offline."""
    view = node.chain.latest
    return {
        "validator": validator, "height": node.chain.height, "count": evidence_count(view, validator),
        "records": [record_to_json(r) for r in list_evidence(view, validator, MAX_LISTED)],
    }
