"""Node status, liveness (`/healthz`), readiness (`/readyz`) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ledger.api.deps import NodeDep

router = APIRouter(tags=["status"])


@router.get("/v1/status")
async def get_status(node: NodeDep) -> dict[str, Any]:
    return node.status()


@router.get("/healthz")
async def healthz(node: NodeDep) -> dict[str, Any]:
    """Alive: the process answers (an orchestrator restarts a node that does not)."""
    return {"ok": True, "height": node.chain.height}


@router.get("/readyz", responses={503: {"description": "not caught up, or unable to answer; `reason` says why"}})
async def readyz(node: NodeDep) -> JSONResponse:
    """Ready: caught up (within 3 blocks of the head that f+1 validators show, so one liar cannot move it)
    and able to answer. 200 or 503, with `height`, `head` and `reason` (ledger/health.py)."""
    readiness = await node.readiness()
    return JSONResponse(readiness.to_json(), status_code=200 if readiness.ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(node: NodeDep) -> Response:
    return Response(node.metrics.render(), media_type=CONTENT_TYPE_LATEST)
