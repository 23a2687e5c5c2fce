"""Cache hits for Handle answers, answered by the HTTP connection itself.

uvicorn's httptools protocol turns every request into an ASGI scope, a task and a response cycle;
for a cached Handle answer that machinery costs several times the work of the answer. This
subclass of the guarded protocol (`ledger.api.guard`: limits, timeouts, rate) looks the request up
in the `ResponseCache` as soon as its headers are parsed and admitted and, on a hit, writes the
stored bytes to the socket at once. Anything else (a miss, another route, a pipelined request
behind a slow one, a body, an upgrade) goes the usual ASGI way, where `HandleCacheMiddleware`
serves and fills the same cache.

Backpressure: while the connection's unsent answers are above the transport's high-water mark the
guard stops reading it, and hits still parsed from data already read go the ASGI way, which waits
for the client to read before answering; a client that pipelines requests and never reads its
answers makes the node hold at most about one read's worth of them.

Freshness is the cache's: the commit listener that clears it runs on this event loop, between
callbacks, so a hit is never older than an acknowledged commit.
"""

from __future__ import annotations

from typing import Any

from ledger.api.guard import ANSWERED, HITS_PER_CHUNK, Guard, GuardedProtocol, guarded_protocol
from ledger.api.hotcache import HANDLE_PATH, ResponseCache, bypasses_cache, cache_key

_HANDLE_PATH = HANDLE_PATH.encode()


def fast_protocol(cache: ResponseCache, guard: Guard) -> type[GuardedProtocol]:
    """A protocol class (uvicorn `http=` option) guarded by `guard` and serving hits from `cache`."""
    hot = cache.plain.protected  # answers asked for more than once, keyed by path when without a query

    class HandleFastPathProtocol(GuardedProtocol):
        _defaults_source: Any = None
        _defaults_wire = b""

        def _answer_early(self) -> bool:
            url: bytes = self.url
            cycle = self.cycle
            return (
                url.startswith(_HANDLE_PATH)
                and (cycle is None or cycle.response_complete)
                and not self.flow.write_paused
                and self.hits_in_chunk < HITS_PER_CHUNK
                and self.parser.get_method() == b"GET"
                and not self.parser.should_upgrade()
                and self._answer_from_cache(url)
            )

        def _answer_from_cache(self, url: bytes) -> bool:
            path, _, query = url.partition(b"?")
            found = hot.get(path) if not query else None  # the common case, without a call
            if found is not None:
                entry = found[0]
                cache.hits += 1
            else:
                if bypasses_cache(query):
                    return False
                keyed = cache_key(path, query)
                if keyed is None:
                    return False
                # A miss goes on to HandleCacheMiddleware, which counts it.
                cached = cache.lookup(keyed[0], keyed[1], count_miss=False)
                if cached is None:
                    return False
                entry = cached
            keep_alive = self.parser.should_keep_alive()
            source = self.server_state.default_headers
            if source is not type(self)._defaults_source:  # uvicorn renews `date` once a second
                type(self)._defaults_source = source
                type(self)._defaults_wire = b"".join(b"%s: %s\r\n" % (k, v) for k, v in source)
            self._raw.write(b"".join((
                entry.wire_head, type(self)._defaults_wire,
                b"\r\n" if keep_alive else b"connection: close\r\n\r\n", entry.body,
            )))
            self.cycle = ANSWERED
            self.hits_in_chunk += 1
            if keep_alive:
                self.on_response_complete()  # as after any response: the next request, or idle
            else:
                self.transport.close()
            return True

    return guarded_protocol(guard, HandleFastPathProtocol)
