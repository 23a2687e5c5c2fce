"""FastAPI dependencies as Annotated aliases; tests swap them with dependency_overrides."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ledger.api.errors import ApiError
from ledger.chain import BlockHeader
from ledger.chaindb import ChainDB
from ledger.node import Node


def get_node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(get_node)]


def header_at(chain: ChainDB, height: int | None) -> BlockHeader:
    """The header of committed block `height` (default: the head) for a read of its state: 404 beyond the
    head; below a state-synced node's base, or pruned, `ChainDB.require_state` raises (410 naming what it
    holds)."""
    head = chain.head
    if height is None or height == head.height:
        return head
    chain.require_state(height)
    block = chain.get_block(height) if 0 <= height < head.height else None
    if block is None:
        raise ApiError(404, "not_found", f"no committed block at height {height} (head is {head.height})")
    return block.header
