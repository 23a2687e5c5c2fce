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

Each entry also keeps its HTTP/1.1 wire form (status line and headers), so `ledger.api.fastpath`
can answer a hit from the connection's protocol object, before any ASGI scope or task exists.
"""

from __future__ import annotations

import http
from typing import NamedTuple

from starlette.types import ASGIApp, Receive, Scope, Send

from ledger.api.handle_answer import answer, parse_query
from ledger.chaindb import ExecutedBlock

HANDLE_PATH = "/api/handles/"
CACHED_STATUSES = frozenset({200, 400, 404})
RELEVANT_PREFIXES = (b"id/", b"prefix/")



class Entry(NamedTuple):
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    wire_head: bytes  # "HTTP/1.1 <status>\r\n" and the route's header lines, without the blank line


def make_entry(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> Entry:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, http.HTTPStatus(status).phrase.encode())]
    lines.extend(b"%s: %s\r\n" % (name, value) for name, value in headers)
    return Entry(status, headers, body, b"".join(lines))


def cache_key(raw_path: bytes, query: bytes) -> bytes:
    return raw_path + b"?" + query


def bypasses_cache(query: bytes) -> bool:
    """Handle.Net's `auth=true` asks for an authoritative answer, so it never comes from the cache."""
    return b"auth=" in query and b"auth=false" not in query


def wants_proof(query: bytes) -> bool:
    return b"proof" in query


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

    def lookup(self, key: bytes, proof: bool, count_miss: bool = True) -> Entry | None:
        """The cached answer, if any; `count_miss=False` where a miss is looked up again further in."""
        entry = (self.proofs if proof else self.plain).get(key)
        if entry is None:
            self.misses += count_miss
        else:
            self.hits += 1
        return entry

    def store(self, key: bytes, entry: Entry, proof: bool, generation: int) -> None:
        if generation != self.generation:
            return  # a block committed meanwhile: this answer may be older than the head
        table = self.proofs if proof else self.plain
        if len(table) >= self.limit:
            table.clear()
        table[key] = entry


class HandleCacheMiddleware:
    """Serves Handle answers from the cache, and computes misses with `handle_answer.answer` directly
    (no routing); requests whose query the lean parser refuses go to the FastAPI route, which
    answers them with its validation error."""

    def __init__(self, app: ASGIApp, cache: ResponseCache) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(HANDLE_PATH):
            await self.app(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        use_cache = not bypasses_cache(query)
        key = cache_key(scope.get("raw_path", scope["path"].encode()), query)
        proof = wants_proof(query)
        cache = self.cache
        entry = cache.lookup(key, proof) if use_cache else None
        if entry is None:
            generation = cache.generation
            entry = _compute(scope, query)
            if entry is None:
                await self.app(scope, receive, send)
                return
            if use_cache and entry.status in CACHED_STATUSES:
                cache.store(key, entry, proof, generation)
        await send({"type": "http.response.start", "status": entry.status, "headers": entry.headers})
        await send({"type": "http.response.body", "body": entry.body})


def _compute(scope: Scope, query: bytes) -> Entry | None:
    """The answer to a Handle request, or None when it is not one `{prefix}/{suffix}` with a valid query."""
    handle = scope["path"][len(HANDLE_PATH):]
    prefix, slash, _ = handle.partition("/")
    if not prefix or not slash:
        return None
    try:
        parsed = parse_query(query)
    except ValueError:
        return None
    node = scope["app"].state.node
    result = answer(node, handle, parsed)
    if result.status >= 400:
        node.metrics.http_errors.labels(str(result.status)).inc()
    headers = [(b"content-length", b"%d" % len(result.body)), (b"content-type", result.media_type.encode())]
    return make_entry(result.status, headers, result.body)
