"""The node's HTTP server: `create_app` builds the FastAPI (ASGI) application, whose `lifespan`
builds, starts and stops the node; routes are one APIRouter per area (`ledger/api/routes`);
`serve` runs it on uvicorn with the guarded, cache-answering protocol (`ledger.api.guard`,
`ledger.api.fastpath`) and the limits of `http.limits`."""

from __future__ import annotations

import resource
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.api.errors import install_error_handlers
from ledger.api.guard import Guard, GuardMiddleware
from ledger.api.hotcache import HandleCacheMiddleware, ResponseCache
from ledger.api.openapi import install_openapi
from ledger.api.routes import (
    anchors,
    assets,
    backup,
    blocks,
    evidence,
    explorer,
    governance,
    gs1,
    handles,
    market,
    members,
    private,
    resolve,
    status,
    sync,
    tx,
    validators,
    web,
)
from ledger.assembly import build_node
from ledger.config import NodeConfig
from ledger.node import Node

FD_MARGIN = 1024  # file descriptors beyond the HTTP connections: store, peers, logs


class ErrorCountMiddleware:
    """Counts error answers. Plain ASGI: Starlette's `BaseHTTPMiddleware` would add a task and memory
    streams to every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
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

    config = node.config if node is not None else NodeConfig.load(home or ".")
    limits = config.http.limits
    cache = ResponseCache(int(limits.answer_cache_mb * 1024 * 1024))
    guard = Guard(limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_node = node if node is not None else build_node(config)
        app.state.node = the_node
        the_node.add_commit_listener(cache.on_commit)  # Handle answer cache: fresh at every commit
        the_node.metrics.expose_counters("ledger_http_guard", "HTTP requests and connections refused or timed out",
                                         lambda: guard.counters)
        the_node.metrics.expose_gauges("ledger_http", "HTTP clients and cached answers", lambda: {
            "connections": len(guard.open), "clients": len(guard.clients),
            **{f"answer_cache_{k}": v for k, v in cache.stats().items()}})
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
    app.add_middleware(ErrorCountMiddleware)
    for module in (status, tx, blocks, handles, resolve, members, assets, market, anchors, evidence, governance, gs1,
                   validators, explorer, sync, web, backup, private):
        app.include_router(module.router)
    install_openapi(app)
    app.state.handle_cache = cache
    app.state.guard = guard
    # Added last, so outermost: cache hits skip FastAPI; the guard's refusals come before anything.
    app.add_middleware(HandleCacheMiddleware, cache=cache)
    app.add_middleware(GuardMiddleware, max_body_bytes=limits.max_body_bytes)
    return app


def serve(app: FastAPI, config: NodeConfig) -> None:
    """Run `app` (from `create_app`) on uvicorn until SIGINT or SIGTERM."""
    import uvicorn

    from ledger.api.fastpath import fast_protocol

    limits = config.http.limits
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = limits.max_connections + FD_MARGIN
    if soft < wanted:  # one descriptor per connection: raise the soft limit as far as allowed
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard),
                                                    hard))
    uvicorn.run(
        app, host=config.http.host, port=config.http.port, log_level="warning", loop="uvloop",
        http=fast_protocol(app.state.handle_cache, app.state.guard), backlog=min(limits.max_connections, 4096),
    )
