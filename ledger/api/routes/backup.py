"""`GET /v1/admin/backup`: a point-in-time copy of this node's store, streamed while the node runs.

Only for the node's operator: from a loopback address, with a token signed by the node's key
(`ledger.snapshot.auth`; `ledger backup --home H` makes one). One backup at a time. The stream is read from a
LevelDB snapshot in a worker thread, a chunk at a time, so commits go on meanwhile and the event loop only
forwards chunks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ledger.api.deps import NodeDep
from ledger.api.errors import ApiError
from ledger.snapshot.archive import not_archive, write_stream
from ledger.snapshot.auth import HEADER, token_problem

router = APIRouter(tags=["operations"])

_running: set[int] = set()  # ids of nodes streaming a backup now (one per node)


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@router.get("/v1/admin/backup", include_in_schema=False)
async def backup(request: Request, node: NodeDep) -> StreamingResponse:
    if not _is_loopback(request.client.host if request.client else None):
        raise ApiError(403, "forbidden", "backups are served to the node's own host only")
    problem = token_problem(request.headers.get(HEADER), node.key.public_key, node.genesis.chain_id,
                            time.time_ns() // 1_000_000)
    if problem is not None:
        raise ApiError(403, "forbidden", problem)
    problem = not_archive(node.chain.base, node.chain.pruned is not None)
    if problem is not None:
        raise ApiError(409, "not_archive", problem)
    if id(node) in _running:
        raise ApiError(409, "busy", "a backup of this node is running; try again when it ends")
    _running.add(id(node))
    snapshot = node.store.snapshot()
    chunks = write_stream(snapshot, node.genesis)
    # One thread per backup: the snapshot is read, and closed, on it alone, so closing waits for a chunk
    # still being read when the client goes away.
    worker = ThreadPoolExecutor(1, thread_name_prefix="backup")
    loop = asyncio.get_running_loop()

    def finish() -> None:
        chunks.close()
        snapshot.close()
        loop.call_soon_threadsafe(_running.discard, id(node))

    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                chunk = await loop.run_in_executor(worker, next, chunks, None)
                if chunk is None:
                    return
                yield chunk
        finally:
            worker.submit(finish)
            worker.shutdown(wait=False)

    return StreamingResponse(body(), media_type="application/octet-stream",
                             headers={"Cache-Control": "no-store"})
