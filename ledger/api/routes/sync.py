"""Certified blocks for nodes that follow the chain over HTTP (observers, `ledger.observer`), and certified
snapshots of the state for nodes that join by state sync (`ledger.snapshot.statesync`).

The answer is the catch-up reply of the peer links (`ledger.net.sync.BlockBatch`, canonical msgpack):
blocks from `from` on, each with its commit certificate, bounded in count (64) and bytes (3 MiB).
Nothing in it is to be trusted as served: the follower checks every certificate against the
validator set at its height and re-executes every block. Each block served, and each 16 KiB of the
answer, costs the client one more read token (`ledger.api.params.charge`): a client asking for
many large blocks (a 3 MiB answer costs about 250) is slowed like one asking for many proofs.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from ledger.api.deps import NodeDep
from ledger.api.errors import ApiError
from ledger.api.params import MAX_HEIGHT, charge
from ledger.codec import encode
from ledger.net.sync import MAX_BLOCKS_PER_REPLY, BlockRequest, serve_blocks
from ledger.smt import MissingNodeError
from ledger.snapshot.offer import StateChunk, make_offer

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


# --- state sync (ledger/snapshot/statesync.py): a certified snapshot, then its state tree in chunks ------

MAX_CHUNK_BYTES = 1 << 20
PATH_HEX = 64


@router.get("/v1/sync/snapshot", response_class=Response, responses={200: {
    "description": "a SnapshotOffer (ledger/snapshot/offer.py) in canonical msgpack: this node's newest state "
                   "export's block (else its head block), its certificate, the history peaks before it and "
                   "every validator-set change up to it",
    "content": {MSGPACK: {"schema": {"type": "string", "format": "binary"}}}}})
async def sync_snapshot(request: Request, node: NodeDep) -> Response:
    """A certified block, with the state tree of its height ready to serve from an export file if this node
    made one (ledger/snapshot/exports.py), as a snapshot a joining node can check against the genesis file."""
    body = encode(make_offer(node.chain, node.exports.offer_height()))
    charge(request, len(body) // TOKEN_BYTES)
    return Response(body, media_type=MSGPACK)


@router.get("/v1/sync/state", response_class=Response, responses={200: {
    "description": "a StateChunk in canonical msgpack: the nodes of the state tree under `root` in pre-order "
                   "from the node at (`depth`, `path`) on, up to `max_bytes` (at least one node), inside the "
                   "subtree rooted at depth `within` on the path to that node",
    "content": {MSGPACK: {"schema": {"type": "string", "format": "binary"}}}}})
async def sync_state(
    request: Request, node: NodeDep,
    root: Annotated[str, Query(pattern=f"^[0-9a-f]{{{PATH_HEX}}}$", description="a certified state root")],
    depth: Annotated[int, Query(ge=0, le=256, description="the depth of the first node wanted")] = 0,
    path: Annotated[str, Query(pattern=f"^[0-9a-f]{{{PATH_HEX}}}$", description="its path bits (256, hex)")]
    = "0" * PATH_HEX,
    max_bytes: Annotated[int, Query(ge=1, le=MAX_CHUNK_BYTES, description="answer size in bytes, about")]
    = MAX_CHUNK_BYTES,
    within: Annotated[int, Query(ge=0, le=256, description="stay inside the subtree rooted at this depth on the "
                                 "path to the node (0: to the end of the tree; more than `depth`: the node's own "
                                 "subtree)")] = 0,
) -> Response:
    """A chunk of the state tree of a root this node holds, for a node joining by state sync."""
    within = min(within, depth)  # below the position: the position's own subtree
    get = node.chain.store.get
    exports = node.exports

    def read() -> list[bytes]:  # from an export file if one holds that root (a sequential read), else walked
        return exports.serve(get, bytes.fromhex(root), depth, int(path, 16), max_bytes, within)

    try:  # on a thread: a megabyte of tree reads would otherwise hold up consensus messages
        nodes = await asyncio.to_thread(read)
    except MissingNodeError:
        raise ApiError(404, "not_found", f"this node does not hold the state tree of root {root[:16]}... "
                       f"(its oldest height is {node.chain.base})") from None
    body = encode(StateChunk(tuple(nodes)))
    charge(request, len(body) // TOKEN_BYTES)
    return Response(body, media_type=MSGPACK)
