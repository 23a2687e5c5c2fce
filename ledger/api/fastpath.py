"""Cache hits for Handle answers, answered by the HTTP connection itself.

uvicorn's httptools protocol turns every request into an ASGI scope, a task and a response cycle;
for a cached Handle answer that machinery costs several times the work of the answer. This
subclass looks the request up in the `ResponseCache` as soon as its headers are parsed and, on a
hit, writes the stored bytes to the socket at once. Anything else (a miss, another route, a
pipelined request behind a slow one, a body, an upgrade) goes the usual ASGI way, where
`HandleCacheMiddleware` serves and fills the same cache.

Freshness is the cache's: the commit listener that clears it runs on this event loop, between
callbacks, so a hit is never older than an acknowledged commit.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ledger.api.hotcache import HANDLE_PATH, ResponseCache, bypasses_cache, cache_key, wants_proof

_HANDLE_PATH = HANDLE_PATH.encode()


class _Answered:
    """Stands in for uvicorn's response cycle once a request was answered from the cache."""

    response_complete = True

    class message_event:  # noqa: N801 - mimics the cycle's asyncio.Event attribute
        @staticmethod
        def set() -> None:
            pass


_ANSWERED = _Answered()


def fast_protocol(cache: ResponseCache) -> type[HttpToolsProtocol]:
    """An `HttpToolsProtocol` class (uvicorn `http=` option) serving hits from `cache`."""

    class HandleFastPathProtocol(HttpToolsProtocol):
        _defaults_source: Any = None
        _defaults_wire = b""

        def on_headers_complete(self) -> None:
            url: bytes = self.url
            cycle = self.cycle
            if (
                url.startswith(_HANDLE_PATH)
                and (cycle is None or cycle.response_complete)
                and self.parser.get_method() == b"GET"
                and not self.parser.should_upgrade()
                and self._answer_from_cache(url)
            ):
                return
            super().on_headers_complete()

        def _answer_from_cache(self, url: bytes) -> bool:
            path, _, query = url.partition(b"?")
            if bypasses_cache(query):
                return False
            # A miss goes on to HandleCacheMiddleware, which counts it.
            entry = cache.lookup(cache_key(path, query), wants_proof(query), count_miss=False)
            if entry is None:
                return False
            keep_alive = self.parser.should_keep_alive()
            self.transport.write(b"".join((
                entry.wire_head, self._default_headers(),
                b"\r\n" if keep_alive else b"connection: close\r\n\r\n", entry.body,
            )))
            self.cycle = _ANSWERED  # type: ignore[assignment]
            if keep_alive:
                self.on_response_complete()  # arms the keep-alive timer, as after any response
            else:
                self.transport.close()
            return True

        def _default_headers(self) -> bytes:
            # uvicorn replaces the `date`/`server` header list once a second; encode it once per list.
            source = self.server_state.default_headers
            if source is not type(self)._defaults_source:
                type(self)._defaults_source = source
                type(self)._defaults_wire = b"".join(b"%s: %s\r\n" % (k, v) for k, v in source)
            return type(self)._defaults_wire

    return HandleFastPathProtocol
