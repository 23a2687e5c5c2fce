"""Certified blocks for nodes that follow the chain over HTTP (observers, `ledger.observer`).

The answer is the catch-up reply of the peer links (`ledger.net.sync.BlockBatch`, canonical msgpack):
blocks from `from` on, each with its commit certificate, bounded in count (64) and bytes (6 MiB).
Nothing in it is to be trusted as served: the follower checks every certificate against the
validator set at its height and re-executes every block. Each block served, and each 16 KiB of the
answer, costs the client one more read token (`ledger.api.params.charge`): a client asking for
many large blocks (a 6 MiB answer costs about 450) is slowed like one asking for many proofs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from ledger.api.deps import NodeDep
from ledger.api.params import MAX_HEIGHT, charge
from ledger.codec import encode
from ledger.net.sync import MAX_BLOCKS_PER_REPLY, BlockRequest, serve_blocks

router = APIRouter(tags=["sync"])

MSGPACK = "application/msgpack"
TOKEN_BYTES = 16 * 1024  # an answer costs a read token more per this many bytes


@router.get("/v1/sync/blocks", response_class=Response, responses={200: {
    "description": "a BlockBatch (ledger/net/sync.py) in canonical msgpack: the node's head height and the "
                   "certified blocks from `from` on",
    "content": {MSGPACK: {"schema": {"type": "string", "format": "binary"}}}}})
async def sync_blocks(
    request: Request, node: NodeDep,
    from_height: Annotated[int, Query(alias="from", ge=0, le=MAX_HEIGHT, description="first height wanted")],
    max_blocks: Annotated[int, Query(alias="max", ge=0, le=MAX_BLOCKS_PER_REPLY,
                                     description="at most this many blocks (0: only the head height)")]
    = MAX_BLOCKS_PER_REPLY,
) -> Response:
    """Certified blocks from a height on, for a node following the chain (an observer)."""
    batch = serve_blocks(node.chain, BlockRequest(from_height, max_blocks))
    body = encode(batch)
    charge(request, len(batch.blocks) + len(body) // TOKEN_BYTES)
    return Response(body, media_type=MSGPACK)
