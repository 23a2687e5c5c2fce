"""Authenticated, framed, bounded links between validators over asyncio TCP.

Theory of operation
-------------------
Links are one-directional for messages. Every node dials every peer once and keeps that outgoing
link up with a reconnect loop (exponential back-off with jitter from `backoff_min` doubling to
`backoff_max`, reset once a link has stayed up for `STABLE_LINK_SECONDS`, so a peer that accepts
and then drops us at once is not hammered).

Everything this node says to a peer (one-way messages and requests) goes out on its outgoing
link; everything it hears from a peer arrives on the peer's outgoing link, which is an incoming
link here. Responses to requests travel back on the connection the request came in on,
so the dialer reads RESPONSE/ERROR frames from its outgoing link and the listener reads MESSAGE/
REQUEST frames from its incoming links; any other frame type is a protocol error.

Every connection first runs the mutual handshake of `ledger.net.handshake` under a timeout;
`on_message` and `on_request` only ever see the authenticated id of the sender.

Delivery is at most once, in order per sender: a message leaves its peer's queue when it is
written to the socket, and a message in flight when a link dies is lost (consensus retransmits).
A new authenticated link from a peer replaces its older incoming link (by default), and a replaced
link delivers nothing more, so frames of an old link never interleave with those of a new one.

Memory bounds
-------------
- outgoing: one queue per peer, at most `queue_limit` messages and `queue_bytes` bytes; `send`
  returns False (and counts) instead of growing it. The writer awaits `drain()` after each frame,
  so the socket buffer stays near asyncio's high-water mark.
- incoming: one frame is read at a time, its length checked before its body is allocated
  (`max_frame`; `MAX_HANDSHAKE_FRAME` before authentication). A slow consumer stops reading, and
  TCP flow control pushes back on the sender.
- connections: at most `max_pending_handshakes` unauthenticated connections at once (more are
  closed on accept), each for at most `handshake_timeout`; at most `max_incoming_per_peer`
  authenticated incoming links per validator (a new one replaces the oldest; default 1).
- requests: at most `max_requests_per_peer` outstanding requests per peer in `request`, and at
  most `max_serving_per_link` requests being answered per incoming link (more get a "busy" ERROR).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from ledger.config import Endpoint, Peer
from ledger.crypto import SigningKey
from ledger.net.frames import (
    HEADER_LEN,
    MESSAGE_OVERHEAD,
    REQUEST_OVERHEAD,
    FrameError,
    FrameType,
    Outbox,
    OversizedFrame,
    TransportError,
    abort_writer,
    encode_frame,
    encode_request_frame,
    read_frame,
    split_request_body,
    tune_socket,
)
from ledger.net.handshake import DIALER, LISTENER, HandshakeError, perform_handshake

log = logging.getLogger("ledger.net")

STABLE_LINK_SECONDS = 1.0

METRICS = (
    "frames_sent",  # frames written after the handshake (messages, requests, responses)
    "frames_received",  # frames read after the handshake
    "bytes_sent",
    "bytes_received",
    "dropped_queue_full",  # send() refused: the peer's queue is full
    "dropped_unknown_peer",  # send() to an id that is not a configured peer, or after stop()
    "dropped_too_large",  # send() of a payload that does not fit in max_frame
    "handshake_failures",  # connections closed during the handshake (either role)
    "connect_failures",  # TCP connects that failed or timed out
    "links_established",  # authenticated outgoing links brought up
    "reconnects",  # outgoing links brought up again after a previous one to the same peer
    "links_lost",  # authenticated outgoing links that went down
    "oversized_frames",  # frames whose announced length exceeded the limit (connection closed)
    "malformed_frames",  # other protocol violations after the handshake (connection closed)
    "incoming_rejected",  # connections closed on accept: too many pending handshakes
    "incoming_replaced",  # authenticated incoming links closed for a newer one from the same peer
    "callback_errors",  # on_message raised
    "requests_sent",
    "requests_failed",  # request() raised
    "requests_served",  # requests answered with a RESPONSE
    "requests_refused",  # requests answered with an ERROR (handler failed, busy, no handler)
    "late_responses",  # responses to requests that had already timed out
)


class _Link:
    """One authenticated connection."""

    def __init__(self, peer_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peer_id = peer_id
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future[bytes]] = {}  # outgoing: requests awaiting an answer
        self.serving: set[asyncio.Task[None]] = set()  # incoming: requests being answered
        self.closed = False

    def abort(self) -> None:
        self.closed = True
        abort_writer(self.writer)

    def fail_pending(self, reason: str) -> None:
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(TransportError(reason))
        self.pending.clear()


class Transport:
    """Peer-to-peer transport of one validator. See the module docstring."""

    def __init__(
        self,
        key: SigningKey,
        chain_id: str,
        listen: Endpoint,
        peers: Sequence[Peer],
        validator_keys: Mapping[str, bytes],
        on_message: Callable[[str, bytes], None],
        max_frame: int = 8 * 1024 * 1024,
        queue_limit: int = 10_000,
        on_request: Callable[[str, bytes], Awaitable[bytes]] | None = None,
        *,
        queue_bytes: int = 64 * 1024 * 1024,
        handshake_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        backoff_min: float = 0.05,
        backoff_max: float = 5.0,
        max_pending_handshakes: int = 64,
        max_incoming_per_peer: int = 1,
        max_requests_per_peer: int = 16,
        max_serving_per_link: int = 16,
    ) -> None:
        if key.id not in validator_keys:
            raise ValueError(f"this node ({key.id}) is not in the validator set")
        unknown = sorted(p.id for p in peers if p.id not in validator_keys)
        if unknown:
            raise ValueError(f"peers not in the validator set: {unknown}")
        if max_frame <= REQUEST_OVERHEAD:
            raise ValueError("max_frame too small")
        self._key = key
        self._chain_id = chain_id
        self._listen = listen
        self._peers = {p.id: p for p in peers if p.id != key.id}
        self._validator_keys = dict(validator_keys)
        self._on_message = on_message
        self._on_request = on_request
        self._max_frame = max_frame
        self._handshake_timeout = handshake_timeout
        self._connect_timeout = connect_timeout
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._max_pending_handshakes = max_pending_handshakes
        self._max_incoming_per_peer = max_incoming_per_peer
        self._max_requests_per_peer = max_requests_per_peer
        self._max_serving_per_link = max_serving_per_link

        self._outboxes = {pid: Outbox(queue_limit, queue_bytes) for pid in self._peers}
        self._out_links: dict[str, _Link] = {}
        self._link_up = {pid: asyncio.Event() for pid in self._peers}
        self._in_links: dict[str, list[_Link]] = {}
        self._requests_open = dict.fromkeys(self._peers, 0)
        self._request_ids = itertools.count(1)
        self._handshaking = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._state = "new"  # -> "running" -> "stopped"
        self.metrics: dict[str, int] = dict.fromkeys(METRICS, 0)

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._key.id

    @property
    def listen_endpoint(self) -> Endpoint:
        """The address actually listened on (the bound port when `listen.port` was 0)."""
        if self._server is not None and self._server.sockets:
            host, port = self._server.sockets[0].getsockname()[:2]
            return Endpoint(host=str(host), port=int(port))
        return self._listen

    async def start(self) -> None:
        """Listen for incoming links and start one dial loop per peer."""
        if self._state != "new":
            raise TransportError(f"transport is {self._state}, cannot start")
        self._server = await asyncio.start_server(self._accept, self._listen.host, self._listen.port)
        self._state = "running"
        for peer in self._peers.values():
            self._spawn(self._dial_loop(peer))
        log.info("transport %s listening on %s", self._key.id[:8], self.listen_endpoint)

    async def stop(self) -> None:
        """Close the listener and every link, cancel every task. Safe to call more than once."""
        if self._state == "stopped":
            return
        self._state = "stopped"
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for link in list(self._out_links.values()):
            self._drop_outgoing(link, "transport stopped")
        for links in list(self._in_links.values()):
            for link in links:
                link.abort()
        self._in_links.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- sending -----------------------------------------------------------------------------

    def send(self, peer_id: str, payload: bytes) -> bool:
        """Queue `payload` for `peer_id`; False (and counted) if unknown, too large or queue full."""
        box = self._outboxes.get(peer_id)
        if box is None or self._state == "stopped":
            self.metrics["dropped_unknown_peer"] += 1
            return False
        if len(payload) + MESSAGE_OVERHEAD > self._max_frame:
            self.metrics["dropped_too_large"] += 1
            return False
        if not box.offer(payload):
            self.metrics["dropped_queue_full"] += 1
            return False
        return True

    def broadcast(self, payload: bytes) -> int:
        """Queue `payload` for every peer; return how many queues took it."""
        return sum(self.send(pid, payload) for pid in self._peers)

    def connected_peers(self) -> list[str]:
        """Peers with an authenticated outgoing link up, sorted."""
        return sorted(self._out_links)

    def queue_depth(self, peer_id: str) -> int:
        """Messages waiting in `peer_id`'s queue (0 for an unknown peer)."""
        box = self._outboxes.get(peer_id)
        return 0 if box is None else len(box.items)

    async def request(self, peer_id: str, payload: bytes, timeout: float) -> bytes:
        """Send a request on the outgoing link to `peer_id` and await its answer.

        Waits for the link to come up if it is down, all within `timeout`. Raises TransportError on
        timeout, on loss of the link, if the peer answered with an error, for an unknown peer, or
        when `max_requests_per_peer` requests to that peer are already open.
        """
        try:
            return await self._request(peer_id, payload, timeout)
        except TransportError:
            self.metrics["requests_failed"] += 1
            raise

    async def _request(self, peer_id: str, payload: bytes, timeout: float) -> bytes:
        # check: a configured peer
        if peer_id not in self._peers:
            raise TransportError(f"unknown peer {peer_id}")
        # check: the transport is running
        if self._state != "running":
            raise TransportError(f"transport is {self._state}")
        # check: the request fits in one frame
        if len(payload) + REQUEST_OVERHEAD > self._max_frame:
            raise TransportError("request too large")
        # check: the bound on outstanding requests to this peer
        if self._requests_open[peer_id] >= self._max_requests_per_peer:
            raise TransportError(f"too many outstanding requests to {peer_id}")
        self._requests_open[peer_id] += 1
        request_id = next(self._request_ids)
        link: _Link | None = None
        try:
            async with asyncio.timeout(timeout):
                while peer_id not in self._out_links:
                    await self._link_up[peer_id].wait()
                link = self._out_links[peer_id]
                fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
                link.pending[request_id] = fut
                self._write(link, encode_request_frame(FrameType.REQUEST, request_id, payload))
                self.metrics["requests_sent"] += 1
                await link.writer.drain()
                return await fut
        except TimeoutError as exc:
            raise TransportError(f"request to {peer_id} timed out after {timeout} s") from exc
        except OSError as exc:
            raise TransportError(f"link to {peer_id} failed: {exc}") from exc
        finally:
            self._requests_open[peer_id] -= 1
            if link is not None:
                link.pending.pop(request_id, None)

    def _write(self, link: _Link, frame: bytes) -> None:
        link.writer.write(frame)
        self.metrics["frames_sent"] += 1
        self.metrics["bytes_sent"] += len(frame)

    # --- outgoing links ----------------------------------------------------------------------

    def _backoff(self, delay: float) -> float:
        """Equal jitter: somewhere in [delay/2, delay], so peers that failed together spread out."""
        return delay / 2 + random.uniform(0, delay / 2)

    async def _dial_loop(self, peer: Peer) -> None:
        loop = asyncio.get_running_loop()
        delay = self._backoff_min
        established = 0
        while self._state == "running":
            link = await self._dial_once(peer)
            if link is None:
                await asyncio.sleep(self._backoff(delay))
                delay = min(delay * 2, self._backoff_max)
                continue
            self.metrics["links_established"] += 1
            if established:
                self.metrics["reconnects"] += 1
            established += 1
            up_since = loop.time()
            try:
                await self._run_outgoing(link)
            finally:
                self._drop_outgoing(link, f"link to {peer.id} lost")
            # a link that lasted resets the back-off; one that keeps dropping at once does not
            delay = (
                self._backoff_min
                if loop.time() - up_since >= STABLE_LINK_SECONDS
                else min(delay * 2, self._backoff_max)
            )
            await asyncio.sleep(self._backoff(delay))

    async def _dial_once(self, peer: Peer) -> _Link | None:
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(peer.host, peer.port)
        except (OSError, TimeoutError) as exc:
            self.metrics["connect_failures"] += 1
            log.debug("connect to %s at %s:%s failed: %s", peer.id[:8], peer.host, peer.port, exc)
            return None
        tune_socket(writer)
        peer_id = await self._handshake(reader, writer, DIALER, peer.id)
        if peer_id is None:
            return None
        return _Link(peer_id, reader, writer)

    async def _run_outgoing(self, link: _Link) -> None:
        self._out_links[link.peer_id] = link
        self._link_up[link.peer_id].set()
        log.info("link to %s up", link.peer_id[:8])
        tasks = [
            asyncio.create_task(self._write_messages(link)),
            asyncio.create_task(self._guard_reads(link, self._read_responses(link))),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _drop_outgoing(self, link: _Link, reason: str) -> None:
        if self._out_links.get(link.peer_id) is link:
            del self._out_links[link.peer_id]
            self._link_up[link.peer_id].clear()
            self.metrics["links_lost"] += 1
            log.info("%s", reason)
        link.abort()
        link.fail_pending(reason)

    async def _write_messages(self, link: _Link) -> None:
        box = self._outboxes[link.peer_id]
        try:
            while True:
                if not box.items:
                    box.ready.clear()
                    await box.ready.wait()
                    continue
                if link.writer.is_closing():
                    return
                self._write(link, encode_frame(FrameType.MESSAGE, box.pop()))
                await link.writer.drain()
        except OSError as exc:
            log.info("writing to %s failed: %s", link.peer_id[:8], exc)

    async def _read_responses(self, link: _Link) -> None:
        while True:
            ftype, body = await self._read(link)
            # check: only answers travel back on an outgoing link
            if ftype not in (FrameType.RESPONSE, FrameType.ERROR):
                raise FrameError(f"unexpected frame type {ftype:#04x} on an outgoing link")
            request_id, payload = split_request_body(body)
            fut = link.pending.get(request_id)
            if fut is None or fut.done():
                self.metrics["late_responses"] += 1
            elif ftype == FrameType.RESPONSE:
                fut.set_result(payload)
            else:
                reason = payload[:200].decode("utf-8", "replace")
                fut.set_exception(TransportError(f"{link.peer_id} could not answer: {reason}"))

    # --- incoming links ----------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Listener callback: refuse beyond the pending-handshake bound, else handle in a tracked task."""
        if self._state != "running" or self._handshaking >= self._max_pending_handshakes:
            self.metrics["incoming_rejected"] += 1
            abort_writer(writer)
            return
        self._handshaking += 1
        self._spawn(self._handle_incoming(reader, writer))

    async def _handle_incoming(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link: _Link | None = None
        try:
            tune_socket(writer)
            try:
                peer_id = await self._handshake(reader, writer, LISTENER, None)
            finally:
                self._handshaking -= 1
            if peer_id is None:
                return
            link = _Link(peer_id, reader, writer)
            self._add_incoming(link)
            await self._guard_reads(link, self._read_incoming(link))
        except Exception:  # a bug here must not take the listener down
            log.exception("incoming connection handler failed")
        finally:
            abort_writer(writer)
            if link is not None:
                self._remove_incoming(link)

    def _add_incoming(self, link: _Link) -> None:
        links = self._in_links.setdefault(link.peer_id, [])
        links.append(link)
        while len(links) > self._max_incoming_per_peer:
            old = links.pop(0)
            old.abort()
            self.metrics["incoming_replaced"] += 1

    def _remove_incoming(self, link: _Link) -> None:
        for task in link.serving:
            task.cancel()
        links = self._in_links.get(link.peer_id, [])
        if link in links:
            links.remove(link)
        if not links:
            self._in_links.pop(link.peer_id, None)

    async def _read_incoming(self, link: _Link) -> None:
        while True:
            ftype, body = await self._read(link)
            if ftype == FrameType.MESSAGE:
                try:
                    self._on_message(link.peer_id, body[1:])
                except Exception:
                    self.metrics["callback_errors"] += 1
                    log.exception("on_message failed for a message from %s", link.peer_id[:8])
            elif ftype == FrameType.REQUEST:
                request_id, payload = split_request_body(body)
                self._answer(link, request_id, payload)
                # a peer that sends requests but does not read the answers stops being read
                await link.writer.drain()
            else:
                # check: only messages and requests travel on an incoming link
                raise FrameError(f"unexpected frame type {ftype:#04x} on an incoming link")

    def _answer(self, link: _Link, request_id: int, payload: bytes) -> None:
        if self._on_request is None:
            self._refuse(link, request_id, "no request handler")
        elif len(link.serving) >= self._max_serving_per_link:
            self._refuse(link, request_id, "busy")
        else:
            task = asyncio.create_task(self._serve(link, self._on_request, request_id, payload))
            link.serving.add(task)
            task.add_done_callback(link.serving.discard)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _refuse(self, link: _Link, request_id: int, reason: str) -> None:
        self.metrics["requests_refused"] += 1
        if not link.writer.is_closing():
            self._write(link, encode_request_frame(FrameType.ERROR, request_id, reason.encode()))

    async def _serve(
        self,
        link: _Link,
        handler: Callable[[str, bytes], Awaitable[bytes]],
        request_id: int,
        payload: bytes,
    ) -> None:
        try:
            answer = await handler(link.peer_id, payload)
        except Exception as exc:
            log.warning("request handler failed for %s: %r", link.peer_id[:8], exc)
            self._refuse(link, request_id, f"handler failed: {type(exc).__name__}")
        else:
            if not isinstance(answer, bytes) or len(answer) + REQUEST_OVERHEAD > self._max_frame:
                self._refuse(link, request_id, "response too large or not bytes")
            elif not link.writer.is_closing():
                self.metrics["requests_served"] += 1
                self._write(link, encode_request_frame(FrameType.RESPONSE, request_id, answer))
        with contextlib.suppress(OSError):
            await link.writer.drain()

    # --- shared ------------------------------------------------------------------------------

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, role: str, expected: str | None
    ) -> str | None:
        """The authenticated peer id, or None after closing the connection and counting why."""
        try:
            async with asyncio.timeout(self._handshake_timeout):
                return await perform_handshake(
                    reader, writer, self._key, self._chain_id, self._validator_keys, role, expected
                )
        except (FrameError, TimeoutError, asyncio.IncompleteReadError, OSError) as exc:
            self.metrics["handshake_failures"] += 1
            if isinstance(exc, OversizedFrame):
                self.metrics["oversized_frames"] += 1
            peer = writer.get_extra_info("peername")
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            level = logging.WARNING if isinstance(exc, HandshakeError) else logging.INFO
            log.log(level, "%s handshake with %s failed: %s", role, peer, reason)
        except Exception:  # a bug must not end a dial loop or the listener
            self.metrics["handshake_failures"] += 1
            log.exception("%s handshake failed unexpectedly", role)
        abort_writer(writer)
        return None

    async def _read(self, link: _Link) -> tuple[int, bytes]:
        ftype, body = await read_frame(link.reader, self._max_frame)
        # check: a closed or replaced link delivers nothing more (its reader may still hold data)
        if link.closed:
            raise ConnectionAbortedError("link closed")
        self.metrics["frames_received"] += 1
        self.metrics["bytes_received"] += len(body) + HEADER_LEN
        return ftype, body

    async def _guard_reads(self, link: _Link, reading: Awaitable[None]) -> None:
        """Run a read loop; a closed connection or bad input ends it (and so the link), quietly."""
        try:
            await reading
        except OversizedFrame as exc:
            self.metrics["oversized_frames"] += 1
            log.warning("closing link with %s: %s", link.peer_id[:8], exc)
        except FrameError as exc:
            self.metrics["malformed_frames"] += 1
            log.warning("closing link with %s: %s", link.peer_id[:8], exc)
        except (asyncio.IncompleteReadError, OSError) as exc:
            log.info("link with %s closed: %s", link.peer_id[:8], type(exc).__name__)
        except Exception:
            log.exception("reading from %s failed unexpectedly", link.peer_id[:8])
        finally:
            link.abort()
