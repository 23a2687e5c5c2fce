"""Incoming peer links: each peer's outgoing link, as this node serves it (`ledger.net.transport`).

Frames are read as they arrive: heartbeats (PING) and requests are answered at once, on the link
they came in on; messages go through a bounded backlog (`ledger.net.link.Backlog`, at most 1 MiB per
link, one message of any size) to a handler task that gives them to `on_message` in order, one per
turn of the loop. Handling a message (a block to execute) may take long: read and handled on one
task, a run of them kept PINGs unanswered and the loop's timers waiting for seconds, and peers
dropped a link that was alive. A slow consumer's backlog fills, it stops reading, and TCP flow
control pushes back on the sender.

A new authenticated link from a peer replaces its oldest incoming link beyond
`max_incoming_per_peer`, and a replaced link delivers nothing more, so frames of an old link never
interleave with those of a new one. At most `max_serving_per_link` requests are answered at once
per link; more get a "busy" ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

from ledger.net.frames import (
    REQUEST_OVERHEAD,
    FrameError,
    FrameType,
    encode_request_frame,
    split_request_body,
)
from ledger.net.link import Backlog, Link

log = logging.getLogger("ledger.net")

RequestHandler = Callable[[str, bytes], Awaitable[bytes]]


class IncomingLinks:
    """The authenticated incoming links of each peer, and serving them. The transport hands it the
    shared pieces: reading a frame (`read`), writing one (`write`), guarding a read loop (`guard`),
    starting a task it tracks (`spawn`), and its counters (`metrics`)."""

    def __init__(
        self,
        on_message: Callable[[str, bytes], None],
        on_request: RequestHandler | None,
        metrics: dict[str, int],
        read: Callable[[Link], Awaitable[tuple[int, bytes]]],
        write: Callable[[Link, bytes], None],
        guard: Callable[[Link, Awaitable[None]], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        max_incoming_per_peer: int,
        max_serving_per_link: int,
        max_frame: int,
        answer_ping: Callable[[Link, bytes], bytes],
    ) -> None:
        """`answer_ping`: the PONG frame for a PING frame's body read on a link (the heartbeat watcher's)."""
        self._answer_ping = answer_ping
        self._on_message = on_message
        self._on_request = on_request
        self._metrics = metrics
        self._read = read
        self._write = write
        self._guard = guard
        self._spawn = spawn
        self._max_incoming_per_peer = max_incoming_per_peer
        self._max_serving_per_link = max_serving_per_link
        self._max_frame = max_frame
        self._links: dict[str, list[Link]] = {}

    def of(self, peer_id: str) -> list[Link]:
        """The peer's incoming links, oldest first (the last one is current); empty when none is up."""
        return self._links.get(peer_id, [])

    def __iter__(self) -> Iterator[Link]:
        return (link for links in list(self._links.values()) for link in links)

    def drop_peer(self, peer_id: str) -> None:
        """The peer left the validator set: close its incoming links."""
        for link in self._links.pop(peer_id, []):
            link.abort()

    def close_all(self) -> None:
        for link in list(self):
            link.abort()
        self._links.clear()

    async def serve(self, link: Link) -> None:
        """Read an authenticated incoming link (the listener's hand-over) until it ends."""
        self._add(link)
        try:
            await self._guard(link, self._read_frames(link))
        finally:
            self._remove(link)

    def _add(self, link: Link) -> None:
        links = self._links.setdefault(link.peer_id, [])
        links.append(link)
        while len(links) > self._max_incoming_per_peer:
            old = links.pop(0)
            old.replaced = True
            old.abort()
            self._metrics["incoming_replaced"] += 1

    def _remove(self, link: Link) -> None:
        for task in link.serving:
            task.cancel()
        links = self._links.get(link.peer_id, [])
        if link in links:
            links.remove(link)
        if not links:
            self._links.pop(link.peer_id, None)

    async def _read_frames(self, link: Link) -> None:
        """Read frames as they arrive: heartbeats and requests are answered at once, messages go
        through the link's backlog to `_handle`."""
        backlog = Backlog()
        self._spawn(self._handle(link, backlog))
        try:
            while True:
                ftype, body = await self._read(link)
                if ftype == FrameType.MESSAGE:
                    await backlog.put(body)
                elif ftype == FrameType.PING:
                    self._metrics["heartbeats_received"] += 1
                    self._metrics["heartbeats_sent"] += 1
                    self._write(link, self._answer_ping(link, body))
                elif ftype == FrameType.REQUEST:
                    request_id, payload = split_request_body(body)
                    self._answer(link, request_id, payload)
                    # a peer that sends requests but does not read the answers stops being read
                    await link.writer.drain()
                else:
                    # check: only messages, requests and heartbeats travel on an incoming link
                    raise FrameError(f"unexpected frame type {ftype:#04x} on an incoming link")
        finally:
            backlog.end()

    async def _handle(self, link: Link, backlog: Backlog) -> None:
        """Hand the link's messages to `on_message` in order, one per turn of the loop; those read
        before the link ended too (they are whole and authenticated), unless a newer link replaced it."""
        while (body := await backlog.get()) is not None:
            # check: a replaced link delivers nothing more, so its frames never interleave with the new one's
            if link.replaced:
                return
            try:
                self._on_message(link.peer_id, body[1:])
            except Exception:
                self._metrics["callback_errors"] += 1
                log.exception("on_message failed for a message from %s", link.peer_id[:8])
            await asyncio.sleep(0)  # let timers, heartbeats and the other links in between messages

    def _answer(self, link: Link, request_id: int, payload: bytes) -> None:
        if self._on_request is None:
            self._refuse(link, request_id, "no request handler")
        elif len(link.serving) >= self._max_serving_per_link:
            self._refuse(link, request_id, "busy")
        else:
            task = self._spawn(self._serve_request(link, self._on_request, request_id, payload))
            link.serving.add(task)
            task.add_done_callback(link.serving.discard)

    def _refuse(self, link: Link, request_id: int, reason: str) -> None:
        self._metrics["requests_refused"] += 1
        if not link.writer.is_closing():
            self._write(link, encode_request_frame(FrameType.ERROR, request_id, reason.encode()))

    async def _serve_request(self, link: Link, handler: RequestHandler, request_id: int, payload: bytes) -> None:
        try:
            answer = await handler(link.peer_id, payload)
        except Exception as exc:
            log.warning("request handler failed for %s: %r", link.peer_id[:8], exc)
            self._refuse(link, request_id, f"handler failed: {type(exc).__name__}")
        else:
            if not isinstance(answer, bytes) or len(answer) + REQUEST_OVERHEAD > self._max_frame:
                self._refuse(link, request_id, "response too large or not bytes")
            elif not link.writer.is_closing():
                self._metrics["requests_served"] += 1
                self._write(link, encode_request_frame(FrameType.RESPONSE, request_id, answer))
        with contextlib.suppress(OSError):
            await link.writer.drain()
