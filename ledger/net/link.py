"""One authenticated connection between two validators, and what a node can say about its links."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from ledger.net.frames import TransportError, abort_writer


class Link:
    """An authenticated TLS connection: its streams, its requests, and when it was last heard."""

    def __init__(self, peer_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, now: float) -> None:
        self.peer_id = peer_id
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future[bytes]] = {}  # outgoing: requests awaiting an answer
        self.serving: set[asyncio.Task[None]] = set()  # incoming: requests being answered
        self.closed = False
        self.replaced = False  # a newer link from the same peer took over: this one delivers nothing more
        self.last_heard = now  # loop time of the last frame (or piece of a long frame) read
        self.since = time.time()  # wall time the link was authenticated (it is up from then on)
        self.rtt: float | None = None  # seconds, from the last PONG (outgoing links)

    def heard(self, now: float) -> None:
        self.last_heard = now

    def abort(self) -> None:
        self.closed = True
        abort_writer(self.writer)

    def fail_pending(self, reason: str) -> None:
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(TransportError(reason))
        self.pending.clear()


BACKLOG_BYTES = 1 << 20  # messages read ahead of their handling, per incoming link


class Backlog:
    """Messages read from one incoming link and not handled yet, in order: at most `limit` bytes
    (and always one message, whatever its size). One reader puts, one handler gets."""

    def __init__(self, limit: int = BACKLOG_BYTES) -> None:
        self.items: deque[bytes] = deque()
        self.bytes = 0
        self.limit = limit
        self.ended = False  # the reader is done: what is left is still handled, then `get` says None
        self._changed = asyncio.Event()

    def end(self) -> None:
        self.ended = True
        self._changed.set()

    async def put(self, body: bytes) -> None:
        while self.items and self.bytes + len(body) > self.limit:
            self._changed.clear()
            await self._changed.wait()  # full: stop reading, so TCP pushes back on the sender
        self.items.append(body)
        self.bytes += len(body)
        self._changed.set()

    async def get(self) -> bytes | None:
        while not self.items:
            if self.ended:
                return None
            self._changed.clear()
            await self._changed.wait()
        body = self.items.popleft()
        self.bytes -= len(body)
        self._changed.set()
        return body


@dataclass(frozen=True)
class LinkState:
    """A peer's links as this node sees them (for `GET /v1/network`)."""

    outgoing: bool  # this node's link to the peer is up (what this node says reaches it)
    incoming: bool  # the peer's link to this node is up (what it says reaches this node)
    last_heard: float | None  # wall time (s) this node last read anything from the peer, on either link
    rtt_ms: float | None  # heartbeat round trip on the outgoing link
    # wall time (s) since which both directions have been up (the later link's authentication): this
    # node's own record, so it says when the link came back however late anyone asks
    connected_since: float | None = None

    @property
    def connected(self) -> bool:
        return self.outgoing and self.incoming

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        return {
            "outgoing": self.outgoing, "incoming": self.incoming,
            "last_heard": None if self.last_heard is None else int(self.last_heard * 1000),
            "last_heard_ago_ms": None if self.last_heard is None else max(0, round((now - self.last_heard) * 1000)),
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 2),
            "connected_since": None if self.connected_since is None else int(self.connected_since * 1000),
        }
