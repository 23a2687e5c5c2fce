"""The hot read path: encoded Handle answers served from memory by a raw ASGI middleware.

`GET /api/handles/...` answers are cached as the exact bytes (status, headers, body) the route
produced, keyed by raw path + query string. A hit is sent straight from the outermost middleware:
no routing, no dependency injection, no validation, no JSON encoding. A miss runs the documented
FastAPI route (which stays in OpenAPI) and stores its answer.

Freshness: the node calls `on_commit` for every block once it is on disk and before any of its
transactions is acknowledged, on the event loop thread that also serves requests.
- A block that changes any `id/` (record) or `prefix/` (ownership) key clears every entry: Handle
  answers depend only on those keys, so other blocks leave plain answers valid.
- Answers carrying a proof name the head block, so they are dropped at every block.
- A miss stores its answer only if no block committed while it was being computed (a generation
  counter), so an answer computed from an older head never enters the cache.
Hence a node never serves from the cache an answer older than a commit it has acknowledged.
`auth=true` (Handle.Net: bypass caches) always runs the route. The cache holds at most `limit`
entries (cleared when full).
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.chaindb import ExecutedBlock

HANDLE_PATH = "/api/handles/"
CACHED_STATUSES = frozenset({200, 400, 404})
RELEVANT_PREFIXES = (b"id/", b"prefix/")

Entry = tuple[int, list[tuple[bytes, bytes]], bytes]


class ResponseCache:
    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.plain: dict[bytes, Entry] = {}
        self.proofs: dict[bytes, Entry] = {}
        self.generation = 0
        self.hits = 0
        self.misses = 0

    def on_commit(self, executed: ExecutedBlock) -> None:
        self.generation += 1
        self.proofs.clear()
        if any(k.startswith(RELEVANT_PREFIXES) for k in executed.changes):
            self.plain.clear()

    def clear(self) -> None:
        self.generation += 1
        self.plain.clear()
        self.proofs.clear()

    def store(self, key: bytes, entry: Entry, proof: bool, generation: int) -> None:
        if generation != self.generation:
            return  # a block committed meanwhile: this answer may be older than the head
        table = self.proofs if proof else self.plain
        if len(table) >= self.limit:
            table.clear()
        table[key] = entry


class HandleCacheMiddleware:
    def __init__(self, app: ASGIApp, cache: ResponseCache) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(HANDLE_PATH):
            await self.app(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        if b"auth=" in query and b"auth=false" not in query:
            await self.app(scope, receive, send)
            return
        key = scope.get("raw_path", scope["path"].encode()) + b"?" + query
        proof = b"proof" in query
        cache = self.cache
        entry = (cache.proofs if proof else cache.plain).get(key)
        if entry is not None:
            cache.hits += 1
            await send({"type": "http.response.start", "status": entry[0], "headers": entry[1]})
            await send({"type": "http.response.body", "body": entry[2]})
            return
        cache.misses += 1
        generation = cache.generation
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and started.get("status") in CACHED_STATUSES:
                    headers = [(bytes(k), bytes(v)) for k, v in started.get("headers", [])]
                    cache.store(key, (started["status"], headers, b"".join(chunks)), proof, generation)
            await send(message)

        await self.app(scope, receive, capture)
