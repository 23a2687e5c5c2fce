"""The node's HTTP server: `create_app` builds the FastAPI (ASGI) application, whose `lifespan`
builds, starts and stops the node; routes are one APIRouter per area (`ledger/api/routes`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.api.errors import error_response, install_error_handlers
from ledger.api.hotcache import HandleCacheMiddleware, ResponseCache
from ledger.api.routes import (
    anchors,
    assets,
    blocks,
    evidence,
    explorer,
    governance,
    gs1,
    handles,
    members,
    resolve,
    status,
    tx,
    web,
)
from ledger.assembly import build_node
from ledger.config import NodeConfig
from ledger.node import Node

MAX_BODY_BYTES = 16 * 1024 * 1024


class BodyLimitMiddleware:
    """Refuses oversized bodies up front and counts error answers. Plain ASGI: Starlette's
    `BaseHTTPMiddleware` would add a task and memory streams to every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            response = error_response(413, "oversized", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
            await response(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                node = getattr(scope["app"].state, "node", None)
                if node is not None:
                    node.metrics.http_errors.labels(str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


def create_app(home: str | Path | None = None, node: Node | None = None) -> FastAPI:
    """An app serving `node`, or the node configured in `home` (built and stopped by the lifespan)."""

    cache = ResponseCache()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_node = node if node is not None else build_node(NodeConfig.load(home or "."))
        app.state.node = the_node
        the_node.add_commit_listener(cache.on_commit)  # Handle answer cache: fresh at every commit
        await the_node.start()
        try:
            yield
        finally:
            await the_node.stop()

    app = FastAPI(
        title="Industrial ledger node",
        description="Permissioned ledger with PBFT consensus and verifiable identifier resolution.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    app.add_middleware(BodyLimitMiddleware)
    for module in (status, tx, blocks, handles, resolve, members, assets, anchors, evidence, governance, gs1,
                   explorer, web):
        app.include_router(module.router)
    # Outermost user middleware (added last): cache hits skip the body-limit middleware and FastAPI.
    app.state.handle_cache = cache
    app.add_middleware(HandleCacheMiddleware, cache=cache)
    return app
