"""The ASGI application: the node is built in `lifespan`, routes are one APIRouter per area."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response

from ledger.api.errors import error_response, install_error_handlers
from ledger.api.hotcache import HandleCacheMiddleware, ResponseCache
from ledger.api.routes import anchors, assets, blocks, gs1, handles, members, resolve, status, tx
from ledger.config import NodeConfig
from ledger.node import Node

MAX_BODY_BYTES = 16 * 1024 * 1024


def create_app(home: str | Path | None = None, node: Node | None = None) -> FastAPI:
    """An app serving `node`, or the node configured in `home` (built and stopped by the lifespan)."""

    cache = ResponseCache()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_node = node if node is not None else Node(NodeConfig.load(home or "."))
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

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return error_response(413, "oversized", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
        response = await call_next(request)
        if response.status_code >= 400:
            node = getattr(request.app.state, "node", None)
            if node is not None:
                node.metrics.http_errors.labels(str(response.status_code)).inc()
        return response

    for module in (status, tx, blocks, handles, resolve, members, assets, anchors, gs1):
        app.include_router(module.router)
    # Outermost user middleware (added last): cache hits skip the body-limit middleware and FastAPI.
    app.state.handle_cache = cache
    app.add_middleware(HandleCacheMiddleware, cache=cache)
    return app
