"""Node status, health and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ledger.api.deps import NodeDep

router = APIRouter(tags=["status"])


@router.get("/v1/status")
async def get_status(node: NodeDep) -> dict[str, Any]:
    return node.status()


@router.get("/healthz")
async def healthz(node: NodeDep) -> dict[str, Any]:
    return {"ok": True, "height": node.chain.height}


@router.get("/metrics", response_class=Response)
async def metrics(node: NodeDep) -> Response:
    return Response(node.metrics.render(), media_type=CONTENT_TYPE_LATEST)
