"""The hot read path: encoded Handle answers served from memory by a raw ASGI middleware.

`GET /api/handles/...` answers are cached as the exact bytes (status, headers, body) the route
produced. A hit is sent straight from the outermost middleware (or from the connection itself,
`ledger.api.fastpath`): no routing, no dependency injection, no validation, no JSON encoding. A miss
runs `handle_answer.answer` (the documented FastAPI route's own function) and stores its answer.

What a client cannot do to it:
- The key is the decoded path and the query as the route understands it (`index`, `type`,
  `callback`, `proof`): requests differing only in unknown parameters, parameter spellings the
  parser treats alike, or percent-encoding share one entry.
- Only successful answers (200) are stored: 404s and 400s, whose paths a client invents at will,
  are computed each time (they are cheap, and absence proofs pay the proof rate).
- The cache has a byte budget (`http.limits.answer_cache_mb`), and is segmented: a new answer
  enters a probationary segment and moves to the protected one (at most 4/5 of the budget) only when
  asked for again. Answers asked for once are evicted first, oldest first, so a stream of distinct
  misses churns the probationary segment and cannot evict the hot answers wholesale.

Freshness: the node calls `on_commit` for every block once it is on disk and before any of its
transactions is acknowledged, on the event loop thread that also serves requests.
- A block that changes any `id/` (record) or `prefix/` (ownership) key clears every entry: Handle
  answers depend only on those keys, so other blocks leave plain answers valid.
- Answers carrying a proof name the head block, so they are dropped at every block.
- A miss stores its answer only if no block committed while it was being computed (a generation
  counter), so an answer computed from an older head never enters the cache.
Hence a node never serves from the cache an answer older than a commit it has acknowledged.
`auth=true` (Handle.Net: bypass caches) always runs the route.

Each entry also keeps its HTTP/1.1 wire form (status line and headers), so `ledger.api.fastpath`
can answer a hit from the connection's protocol object, before any ASGI scope or task exists.
"""

from __future__ import annotations

import http
from collections import OrderedDict
from typing import NamedTuple
from urllib.parse import unquote_to_bytes, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

from ledger.api.handle_answer import HandleQuery, answer, parse_query
from ledger.chaindb import ExecutedBlock

HANDLE_PATH = "/api/handles/"
CACHED_STATUS = 200
RELEVANT_PREFIXES = (b"id/", b"prefix/")
ENTRY_OVERHEAD = 240  # bytes of Python objects around an entry's key, head and body (measured roughly)
PROOF_SHARE = 0.25  # of the budget, for answers carrying a proof (dropped at every block)


class Entry(NamedTuple):
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    wire_head: bytes  # "HTTP/1.1 <status>\r\n" and the route's header lines, without the blank line


def make_entry(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> Entry:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, http.HTTPStatus(status).phrase.encode())]
    lines.extend(b"%s: %s\r\n" % (name, value) for name, value in headers)
    return Entry(status, headers, body, b"".join(lines))


def bypasses_cache(query: bytes) -> bool:
    """Handle.Net's `auth=true` asks for an authoritative answer, so it never comes from the cache."""
    return b"auth=" in query and b"auth=false" not in query


def cache_key(raw_path: bytes, query: bytes) -> tuple[bytes, bool] | None:
    """(key, carries a proof) of a Handle request, or None when its query is one the route refuses."""
    path = unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path
    if not query:
        return path, False
    try:
        parsed = parse_query(query)
    except ValueError:
        return None
    canonical = canonical_query(parsed)
    return (path + b"?" + canonical if canonical else path), parsed.proof


def canonical_query(q: HandleQuery) -> bytes:
    pairs = [("index", i) for i in q.index] + [("type", t) for t in q.type]
    if q.callback is not None:
        pairs.append(("callback", q.callback))
    if q.proof:
        pairs.append(("proof", "1"))
    return urlencode(pairs).encode()


class SegmentedCache:
    """Entries within `budget` bytes: probation (asked for once) and protected (asked for again)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.protected_budget = budget * 4 // 5
        self.probation: OrderedDict[bytes, tuple[Entry, int]] = OrderedDict()
        self.protected: OrderedDict[bytes, tuple[Entry, int]] = OrderedDict()
        self.probation_bytes = 0
        self.protected_bytes = 0

    def __len__(self) -> int:
        return len(self.probation) + len(self.protected)

    @property
    def size(self) -> int:
        return self.probation_bytes + self.protected_bytes

    def get(self, key: bytes) -> Entry | None:
        found = self.protected.get(key)
        if found is not None:
            return found[0]
        found = self.probation.pop(key, None)
        if found is None:
            return None
        self.probation_bytes -= found[1]
        self.protected[key] = found
        self.protected_bytes += found[1]
        while self.protected_bytes > self.protected_budget:  # the oldest protected go back to probation
            old_key, old = self.protected.popitem(last=False)
            self.protected_bytes -= old[1]
            self.probation[old_key] = old
            self.probation_bytes += old[1]
        self._evict()
        return found[0]

    def put(self, key: bytes, entry: Entry) -> None:
        size = len(key) + len(entry.wire_head) + len(entry.body) + ENTRY_OVERHEAD
        if size > self.budget // 16:
            return  # an answer this large would crowd out the rest
        for segment in (self.probation, self.protected):
            old = segment.pop(key, None)
            if old is not None:
                if segment is self.probation:
                    self.probation_bytes -= old[1]
                else:
                    self.protected_bytes -= old[1]
        self.probation[key] = (entry, size)
        self.probation_bytes += size
        self._evict()

    def _evict(self) -> None:
        while self.probation_bytes + self.protected_bytes > self.budget and self.probation:
            _, (_, size) = self.probation.popitem(last=False)
            self.probation_bytes -= size

    def clear(self) -> None:
        self.probation.clear()
        self.protected.clear()
        self.probation_bytes = self.protected_bytes = 0


class ResponseCache:
    def __init__(self, budget_bytes: int = 64 * 1024 * 1024) -> None:
        self.plain = SegmentedCache(int(budget_bytes * (1 - PROOF_SHARE)))
        self.proofs = SegmentedCache(int(budget_bytes * PROOF_SHARE))
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
        if generation != self.generation or entry.status != CACHED_STATUS:
            return  # a block committed meanwhile (this answer may be older than the head), or not a 200
        (self.proofs if proof else self.plain).put(key, entry)

    def stats(self) -> dict[str, int]:
        return {"entries": len(self.plain) + len(self.proofs), "bytes": self.plain.size + self.proofs.size,
                "hits": self.hits, "misses": self.misses}


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
        keyed = cache_key(scope.get("raw_path", scope["path"].encode()), query)
        if keyed is None:
            await self.app(scope, receive, send)
            return
        key, proof = keyed
        use_cache = not bypasses_cache(query)
        cache = self.cache
        entry = cache.lookup(key, proof) if use_cache else None
        if entry is None:
            generation = cache.generation
            entry = _compute(scope, query)
            if entry is None:
                await self.app(scope, receive, send)
                return
            if use_cache:
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
