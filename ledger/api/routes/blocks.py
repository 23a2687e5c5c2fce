"""Blocks with their certificates and transaction outcomes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from ledger.api.deps import NodeDep
from ledger.api.errors import ApiError
from ledger.api.params import MAX_HEIGHT
from ledger.chain import compute_block_hash
from ledger.chain_history import NOT_EXECUTED
from ledger.codec import to_plain
from ledger.node import Node
from ledger.tx import TxRejected, compute_tx_id, decode_tx, tx_to_plain

router = APIRouter(tags=["blocks"])


def block_json(node: Node, height: int, full: bool) -> dict[str, Any]:
    node.chain.require_held(height)
    block = node.chain.get_block(height)
    cert = node.chain.get_certificate(height)
    if block is None or cert is None:
        raise ApiError(404, "not_found", f"no block at height {height} (head is {node.chain.height})")
    txs: list[Any] = []
    for raw in block.txs:
        tx_id = compute_tx_id(raw)
        loc = node.chain.get_tx_location(tx_id)
        entry: dict[str, Any] = {"tx_id": tx_id.hex()}
        if loc is not None and loc.height == height:
            executed = loc.reason != NOT_EXECUTED  # a block fetched below a state-synced node's base
            entry.update(ok=loc.ok if executed else None, reason=loc.reason)
        if full:
            try:
                entry["tx"] = tx_to_plain(decode_tx(raw))
            except TxRejected:
                entry["tx"] = raw.hex()
        txs.append(entry)
    return {
        "height": height,
        "hash": compute_block_hash(block.header).hex(),
        "header": to_plain(block.header),
        "certificate": to_plain(cert),
        "tx_count": len(block.txs),
        "txs": txs,
    }


@router.get("/v1/blocks/latest")
async def latest_block(node: NodeDep, full: bool = False) -> dict[str, Any]:
    return block_json(node, node.chain.height, full)


@router.get("/v1/blocks/{height}")
async def get_block(height: Annotated[int, Path(ge=0, le=MAX_HEIGHT)], node: NodeDep, full: bool = False
                    ) -> dict[str, Any]:
    return block_json(node, height, full)
