"""FastAPI dependencies as Annotated aliases; tests swap them with dependency_overrides."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ledger.node import Node


def get_node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(get_node)]
