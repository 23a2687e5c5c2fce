"""The HTTP connection guard: what one client may hold and send, enforced on the connection itself.

`GuardedProtocol` is uvicorn's httptools protocol with the limits of `http.limits` (`HttpLimits`):
- connections: at most `max_connections` open, `max_connections_per_client` per client; a connection
  over either is answered 503 and closed at once;
- time: a request's line and headers must arrive within `header_timeout_s` (a new connection's
  first request counts from the connect), a body within `body_timeout_s`; a connection without a
  request, or whose client does not read its answers, for `idle_timeout_s` is closed;
- size: `max_header_bytes` of request line and headers, `max_body_bytes` of body in any transfer
  encoding (a declared length is refused before the body is read; `GuardMiddleware` counts the rest
  as it reads it, never holding more than the limit);
- rate: each request takes tokens from its client's read or write bucket (`ledger.api.limits`); an
  empty bucket is answered 429 with `Retry-After`, and the connection is not read until then, so a
  flood costs the node one small answer per connection per wait, not one per request;
- backpressure: while a connection's unsent answers are above the transport's high-water mark, the
  connection is not read (and `ledger.api.fastpath` answers nothing from its cache on it).

Refusals that end a connection while the client may still be sending (413, 431) do not reset it:
the answer is flushed, the write side shut, and whatever arrives is read and dropped for
`linger_s` before the socket is closed, so the client reads the answer rather than a reset.

Timeouts are checked by one sweep over the open connections (`Guard._reap`), not a timer per request.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ledger.api.limits import PROOF_COST, Client, ClientTable, retry_after
from ledger.config import HttpLimits

# Reads the app computes at once, at most: each runs between two polls of the sockets, so this bounds
# the HTTP work that can stand between a consensus message's arrival and its handling.
APP_READS_AT_ONCE = 8
# Cached answers a connection writes from one chunk of requests, at most; the rest of a pipelined
# chunk goes the ASGI way, one request after another.
HITS_PER_CHUNK = 256
REFUSAL_KEY = "ledger.refusal"  # scope key: a Refusal the guard decided before the app runs
CLIENT_KEY = "ledger.client"  # scope key: the request's Client (routes charge batches to it)
_READS = frozenset({b"GET", b"HEAD", b"OPTIONS"})
_RESOLVE_BATCH = b"/v1/resolve"
_monotonic = time.monotonic


class Refusal(NamedTuple):
    status: int
    error: str
    message: str
    close: bool = False
    retry_after: int | None = None

    def body(self) -> bytes:
        extra = {} if self.retry_after is None else {"retry_after_s": self.retry_after}
        return json.dumps({"error": self.error, "message": self.message, **extra}).encode()

    def headers(self, body: bytes) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        if self.retry_after is not None:
            headers.append((b"retry-after", b"%d" % self.retry_after))
        if self.close:
            headers.append((b"connection", b"close"))
        return headers


def body_too_large(limit: int) -> Refusal:
    return Refusal(413, "oversized", f"request bodies are limited to {limit} bytes", close=True)


class _Answered:
    """Stands in for uvicorn's response cycle once the connection answered a request itself."""

    response_complete = True

    class message_event:  # noqa: N801 - mimics the cycle's asyncio.Event attribute
        @staticmethod
        def set() -> None:
            pass


ANSWERED: Any = _Answered()


class Guard:
    """What the connections of one server share: the limits, the clients, the open connections,
    counters (exposed as `ledger_http_guard` metrics) and the sweep that enforces the timeouts."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.clients = ClientTable((limits.reads_per_s, limits.read_burst), (limits.writes_per_s, limits.write_burst),
                                   limits.exempt, _monotonic)
        self.open: set[GuardedProtocol] = set()
        self.counters: dict[str, int] = {}
        self._reaper: asyncio.TimerHandle | None = None
        shortest = min(limits.header_timeout_s, limits.idle_timeout_s, limits.body_timeout_s,
                       limits.linger_s or limits.idle_timeout_s)
        self.sweep_s = max(0.05, min(1.0, shortest / 4))

    def count(self, event: str) -> None:
        self.counters[event] = self.counters.get(event, 0) + 1

    def watch(self, protocol: GuardedProtocol, loop: asyncio.AbstractEventLoop) -> None:
        self.open.add(protocol)
        if self._reaper is None:
            self._reaper = loop.call_later(self.sweep_s, self._reap, loop)

    def _reap(self, loop: asyncio.AbstractEventLoop) -> None:
        now = _monotonic()
        for protocol in list(self.open):
            protocol.check_deadlines(now)
        self._reaper = loop.call_later(self.sweep_s, self._reap, loop) if self.open else None


class GatedFlow(FlowControl):
    """uvicorn's flow control plus holds of the guard's own (rate limit, unsent output): the
    connection is read only when uvicorn wants it read and no hold remains."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__(transport)
        self.holds: set[str] = set()
        self._reading = True

    def _apply(self) -> None:
        want = not self.read_paused and not self.holds
        if want != self._reading and not self._transport.is_closing():
            self._reading = want
            if want:
                self._transport.resume_reading()
            else:
                self._transport.pause_reading()

    def pause_reading(self) -> None:
        self.read_paused = True
        self._apply()

    def resume_reading(self) -> None:
        self.read_paused = False
        self._apply()

    def hold(self, reason: str) -> None:
        self.holds.add(reason)
        self._apply()

    def release(self, reason: str) -> None:
        self.holds.discard(reason)
        self._apply()


class _Transport:
    """The transport as uvicorn's request cycles see it: the same, except that `close` lingers when
    the client may still be sending, and a lingering connection counts as closing."""

    def __init__(self, raw: asyncio.Transport, protocol: GuardedProtocol) -> None:
        self._raw = raw
        self._protocol = protocol
        self.write = raw.write  # the raw bound method: no extra call on the hot path

    def close(self) -> None:
        self._protocol.close_connection()

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._raw.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class GuardedProtocol(HttpToolsProtocol):
    guard: Guard  # set on the subclass `guarded_protocol` makes
    flow: GatedFlow

    _client: Client | None = None
    _refused = False
    _headers_since: float | None = None
    _body_since: float | None = None
    _idle_since: float | None = None
    _stalled_since: float | None = None
    _linger_since: float | None = None
    _body_timed_out = False
    _fed = 0  # bytes received since the current request began (or since the chunk it began in)
    _chunk = 0  # bytes of the chunk being parsed
    hits_in_chunk = 0  # requests of the chunk being parsed answered on the connection

    # --- connection ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._raw = transport
        self.flow = GatedFlow(transport)
        self.transport = _Transport(transport, self)  # type: ignore[assignment]
        guard = self.guard
        limits = guard.limits
        client = guard.clients.get(self.client[0] if self.client else "")
        if len(guard.open) >= limits.max_connections or (
                not client.exempt and client.connections >= limits.max_connections_per_client):
            guard.count("connections_refused")
            self._refused = True
            self._write_refusal(Refusal(503, "busy", "too many connections", close=True, retry_after=1))
            transport.close()
            return
        client.connections += 1
        self._client = client
        self._headers_since = _monotonic()
        guard.watch(self, self.loop)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._client is not None and self in self.guard.open:
            self.guard.open.discard(self)
            self._client.connections -= 1
        super().connection_lost(exc)

    @property
    def lingering(self) -> bool:
        return self._linger_since is not None

    def close_connection(self) -> None:
        """Close, lingering if the client may still be sending (a body, or headers, not read whole)."""
        raw = self._raw
        if raw.is_closing() or self._linger_since is not None:
            return
        sending = self._body_since is not None or (self._headers_since is not None and self._fed > 0)
        if sending and self.guard.limits.linger_s > 0 and raw.can_write_eof():
            self._linger_since = _monotonic()
            raw.write_eof()  # the answer is flushed first, then the client sees the end of it
            self.flow.holds.clear()
            self.flow.resume_reading()
        else:
            raw.close()

    def data_received(self, data: bytes) -> None:
        if self._linger_since is not None or self._refused:
            return  # read and dropped
        self._fed += len(data)
        self._chunk = len(data)
        self.hits_in_chunk = 0
        super().data_received(data)
        if (self._headers_since is not None and self._fed > self.guard.limits.max_header_bytes
                and not self._raw.is_closing() and self._linger_since is None):
            self.guard.count("headers_too_large")
            if self.cycle is None or self.cycle.response_complete:
                limit = self.guard.limits.max_header_bytes
                self._refuse(Refusal(431, "headers_too_large", f"request line and headers are limited to {limit} bytes",
                                     close=True))
            else:
                self._raw.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._stalled_since = _monotonic()
        self.flow.hold("output")

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stalled_since = None
        self.flow.release("output")

    def check_deadlines(self, now: float) -> None:
        limits = self.guard.limits
        if self._linger_since is not None:
            if now - self._linger_since >= limits.linger_s:
                self._raw.close()
            return
        if self._headers_since is not None and now - self._headers_since >= limits.header_timeout_s:
            self.guard.count("header_timeouts")
            if self.cycle is None or self.cycle.response_complete:
                self._write_refusal(Refusal(408, "timeout", "request headers took too long", close=True))
            self._raw.close()
        elif self._body_since is not None and now - self._body_since >= limits.body_timeout_s:
            self._body_timed_out_once()
        elif self._stalled_since is not None and now - self._stalled_since >= limits.idle_timeout_s:
            self.guard.count("send_timeouts")
            self._raw.abort()  # the client does not read: drop what it left unread
        elif self._idle_since is not None and now - self._idle_since >= limits.idle_timeout_s:
            self.guard.count("idle_timeouts")
            self._raw.close()

    def _body_timed_out_once(self) -> None:
        """First the route reading the body is told (it answers 408); at the next sweep the connection goes."""
        if self._body_timed_out:
            self._raw.abort()
            return
        self.guard.count("body_timeouts")
        self._body_timed_out = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.scope[REFUSAL_KEY] = Refusal(  # type: ignore[literal-required]
                408, "timeout", "the request body took too long", close=True)
            cycle.message_event.set()

    # --- requests (httptools parser callbacks) ------------------------------------------------------

    def on_message_begin(self) -> None:
        # uvicorn's, except that the ASGI scope is built only for a request that goes to the app
        # (`_new_scope`): a request answered on the connection needs none.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self._fed = 0
        self._idle_since = None
        if self._headers_since is None:
            self._headers_since = _monotonic()

    def _new_scope(self) -> None:
        """uvicorn's scope of the request whose headers just arrived (as its `on_message_begin` makes it)."""
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
            CLIENT_KEY: self._client,
        }
        self.scope = scope  # type: ignore[assignment]

    def on_headers_complete(self) -> None:
        now = _monotonic()
        self._headers_since = None
        limit = self.guard.limits.max_header_bytes
        if (self._fed + self._chunk > limit
                and len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers) > limit):
            self.guard.count("headers_too_large")
            self._refuse(Refusal(431, "headers_too_large", f"request line and headers are limited to {limit} bytes",
                                 close=True))
            return
        refusal = self._admit(now)
        if refusal is not None:
            self._refuse(refusal)
            return
        if self._answer_early():
            return
        self._new_scope()
        super().on_headers_complete()
        if self.scope["method"] not in ("GET", "HEAD") and self._expects_body():
            self._body_since = now

    def on_message_complete(self) -> None:
        self._body_since = None
        self._body_timed_out = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # uvicorn's, without its per-response keep-alive timer: the sweep closes idle connections.
        self.server_state.total_requests += 1
        if self._linger_since is not None or self._raw.is_closing():
            return
        if self.flow.read_paused:
            self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._headers_since is None and self._body_since is None:
            self._idle_since = _monotonic()

    def _answer_early(self) -> bool:
        """A subclass may answer a request here, on the connection (`ledger.api.fastpath`)."""
        return False

    def _expects_body(self) -> bool:
        return any(name in (b"content-length", b"transfer-encoding") for name, _ in self.headers)

    def _admit(self, now: float) -> Refusal | None:
        """The rate limit and the declared body size of the request whose headers just arrived."""
        client = self._client
        limits = self.guard.limits
        method = self.parser.get_method()
        url: bytes = self.url
        if method not in _READS:
            for name, value in self.headers:
                if name == b"content-length" and (not value.isdigit() or int(value) > limits.max_body_bytes):
                    self._body_since = now  # the body may be on its way: linger when closing
                    self.guard.count("bodies_too_large")
                    return body_too_large(limits.max_body_bytes)
        if client is None or client.exempt or not limits.rate_limits:
            return None
        if method in _READS or url == _RESOLVE_BATCH or url.startswith(b"/v1/resolve?"):
            wait = client.reads.take(PROOF_COST if b"proof" in url else 1.0, now)
        else:
            wait = client.writes.take(1.0, now)
        if not wait:
            return None
        self.guard.count("rate_limited")
        seconds = retry_after(wait)
        # Not read again until the client may send: a flood waits in its own socket buffers.
        self.flow.hold("rate")
        self.loop.call_later(seconds, self.flow.release, "rate")
        return Refusal(429, "rate_limited", f"too many requests from {client.key}; retry after {seconds} s",
                       retry_after=seconds)

    def _refuse(self, refusal: Refusal) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._write_refusal(refusal)
            self.cycle = ANSWERED
            if refusal.close:
                self.transport.close()
            else:
                self.on_response_complete()
        else:  # an earlier answer is still due: the app answers this one in its turn (GuardMiddleware)
            self._new_scope()
            self.scope[REFUSAL_KEY] = refusal  # type: ignore[literal-required]
            HttpToolsProtocol.on_headers_complete(self)

    def _write_refusal(self, refusal: Refusal) -> None:
        body = refusal.body()
        head = [STATUS_LINE[refusal.status]]
        head.extend(b"%s: %s\r\n" % pair for pair in self.server_state.default_headers)
        head.extend(b"%s: %s\r\n" % pair for pair in refusal.headers(body))
        self._raw.write(b"".join((*head, b"\r\n", body)))


def guarded_protocol(guard: Guard, base: type[GuardedProtocol] = GuardedProtocol) -> type[GuardedProtocol]:
    """A protocol class for uvicorn's `http=` option, bound to `guard`."""
    return type(base.__name__, (base,), {"guard": guard})


class GuardMiddleware:
    """The ASGI side of the guard: answers the refusals the connection decided while an earlier
    answer was due, and reads request bodies before the app runs, refusing one over the limit as
    soon as it is (413) or when the connection timed it out (408). A body is handed to the app
    whole, so no route ever sees a part of one."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.reads = asyncio.Semaphore(APP_READS_AT_ONCE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal: Refusal | None = scope.get(REFUSAL_KEY)
        if refusal is not None:
            await _send_refusal(send, refusal)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            async with self.reads:
                await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            refusal = scope.get(REFUSAL_KEY)
            chunk = message.get("body", b"")
            size += len(chunk)
            if refusal is None and size > self.max_body_bytes:
                refusal = body_too_large(self.max_body_bytes)
            if refusal is not None:
                await _send_refusal(send, refusal)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        del chunks
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _send_refusal(send: Send, refusal: Refusal) -> None:
    body = refusal.body()
    await send({"type": "http.response.start", "status": refusal.status, "headers": refusal.headers(body)})
    await send({"type": "http.response.body", "body": body})
