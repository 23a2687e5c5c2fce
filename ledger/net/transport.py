"""Encrypted, mutually authenticated, framed, bounded links between validators over asyncio TCP.

Theory of operation
-------------------
Security. Every connection is TLS 1.3 (Python's `ssl`: OpenSSL) with a certificate on both ends
that carries the validator's own Ed25519 key; TLS makes each end sign the handshake transcript
with that key, and `ledger.net.handshake.identify` accepts the other end only if its key is the
one the validator set lists for a validator (the dialer: for the one it dialed). So each side has
proved, on this connection, that it holds a validator key; a man in the middle without one can
neither read (the record keys come from an ephemeral exchange) nor alter, replay or inject (every
TLS record is authenticated; a bad one closes the connection). `ledger.net.certs` explains why the
certificates have a public issuer that vouches for nothing, and `ledger.net.handshake` the
handshake. `on_message` and `on_request` only ever see the authenticated id of the sender.

Links are one-directional for messages. Every node dials every peer and keeps that outgoing link
up with a reconnect loop (back-off with jitter from `backoff_min` doubling to `backoff_max`,
reset once a link has stayed up for `STABLE_LINK_SECONDS`). Neither side ever waits for the other
to dial: each side's messages travel on the link it dials itself, so no state leaves both sides
waiting for the other. Everything this node says to a peer goes out on its outgoing link;
everything it hears from a peer arrives on the peer's outgoing link, an incoming link here.
Responses to requests travel back on the connection the request came in on.

Heartbeats (`ledger.net.heartbeat`). Every `heartbeat_interval` the dialer sends a PING on each outgoing link and the
listener answers with a PONG on the same connection, so both ends hear from each other on every
connection. Either end closes a connection it has heard nothing on (not a frame, not a piece of a
long frame) for `dead_after`: a peer that was killed, paused (SIGSTOP), partitioned away, or whose
connection silently died is noticed within `dead_after`, and the dialer redials at once, so once
the peer is back the link is up again within about `dead_after` plus a back-off of at most
`backoff_max`. Silence is counted only while this node itself was running on time: when the
watcher wakes far too late (this process was paused, or its loop blocked), silence is counted
afresh from that moment, so a node coming back from a pause does not drop links whose peers'
frames it simply has not read yet.

Delivery is at most once, in order per sender: a message leaves its peer's queue when it is
written to the socket, and a message in flight when a link dies is lost (consensus retransmits).
A new authenticated link from a peer replaces its older incoming link (by default), and a replaced
link delivers nothing more, so frames of an old link never interleave with those of a new one.

Memory and connection bounds
----------------------------
- outgoing: one queue per peer, at most `queue_limit` messages and `queue_bytes` bytes; `send`
  returns False (and counts) instead of growing it. The writer awaits `drain()` after each frame,
  so the socket buffer stays near asyncio's high-water mark.
- incoming (`ledger.net.incoming`): one frame is read at a time, its length checked before its
  body is allocated (`max_frame`). Messages wait for their handler in a backlog of at most 1 MiB per link (one
  message of any size), handled one per turn of the loop, while heartbeats and requests are
  answered as they are read. A slow consumer's backlog fills, it stops reading, and TCP flow
  control pushes back on the sender.
- handshakes: connections are accepted one by one (`ledger.net.listener`) and each runs its
  handshake in a task of its own bounded by `handshake_timeout` (a slow one delays nobody). At
  most `max_pending_handshakes` in all and `max_pending_per_address` from one address are pending
  at once; a newcomer beyond either bound pushes out the oldest (`ledger.net.gate`). At most
  `max_incoming_per_peer` authenticated incoming links per validator (a new one replaces the
  oldest; default 1).
- requests: at most `max_requests_per_peer` outstanding requests per peer in `request`, and at
  most `max_serving_per_link` requests being answered per incoming link (more get a "busy" ERROR).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import ssl
import time
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
from ledger.net.handshake import DIALER, LinkTls, dial_handshake, run_handshake, validators_by_key
from ledger.net.heartbeat import HeartbeatWatcher, round_trip
from ledger.net.incoming import IncomingLinks
from ledger.net.link import Link, LinkState
from ledger.net.listener import Listener

log = logging.getLogger("ledger.net")

STABLE_LINK_SECONDS = 1.0
WRITE_BATCH_FRAMES = 256  # queued messages written at once, at most this many...
WRITE_BATCH_BYTES = 256 * 1024  # ...and (unless one alone is larger) this many bytes

METRICS = (
    "frames_sent",  # frames written after the handshake (messages, requests, responses, heartbeats)
    "frames_received",  # frames read after the handshake
    "heartbeats_sent",  # PINGs and PONGs among frames_sent
    "heartbeats_received",  # PINGs and PONGs among frames_received
    "bytes_sent",
    "bytes_received",
    "dropped_queue_full",  # send() refused: the peer's queue is full
    "dropped_unknown_peer",  # send() to an id that is not a configured peer, or after stop()
    "dropped_too_large",  # send() of a payload that does not fit in max_frame
    "handshake_failures",  # connections closed during the handshake (either role; TLS, identity, timeout)
    "handshakes_evicted",  # pending handshakes pushed out by newer connections (per-address or total bound)
    "connect_failures",  # TCP connects that failed or timed out
    "links_established",  # authenticated outgoing links brought up
    "reconnects",  # outgoing links brought up again after a previous one to the same peer
    "links_lost",  # authenticated outgoing links that went down
    "links_dead",  # links (either direction) closed after `dead_after` of silence
    "oversized_frames",  # frames whose announced length exceeded the limit (connection closed)
    "malformed_frames",  # other protocol violations after the handshake (connection closed)
    "tls_failures",  # links closed by TLS after the handshake: a record failed authentication (altered?)
    "incoming_replaced",  # authenticated incoming links closed for a newer one from the same peer
    "callback_errors",  # on_message raised
    "requests_sent",
    "requests_failed",  # request() raised
    "requests_served",  # requests answered with a RESPONSE
    "requests_refused",  # requests answered with an ERROR (handler failed, busy, no handler)
    "late_responses",  # responses to requests that had already timed out
)


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
        handshake_timeout: float = 3.0,
        connect_timeout: float = 2.0,
        backoff_min: float = 0.05,
        backoff_max: float = 1.0,
        heartbeat_interval: float = 0.25,
        dead_after: float = 1.5,
        max_pending_handshakes: int = 64,
        max_pending_per_address: int = 8,
        max_incoming_per_peer: int = 1,
        max_requests_per_peer: int = 16,
        max_serving_per_link: int = 16,
    ) -> None:
        # This node's own key may be in no set it knows yet: a validator being added follows the chain
        # (catch-up) until it learns the change; its peers accept it once their chain decided it.
        unknown = sorted(p.id for p in peers if p.id not in validator_keys)
        if unknown:
            raise ValueError(f"peers not in the validator set: {unknown}")
        if max_frame <= REQUEST_OVERHEAD:
            raise ValueError("max_frame too small")
        if dead_after < 2 * heartbeat_interval:
            raise ValueError("dead_after must be at least two heartbeat intervals")
        self._key = key
        self._tls = LinkTls(key, chain_id)
        self._listen = listen
        self._peers = {p.id: p for p in peers if p.id != key.id}
        self._by_key = validators_by_key(validator_keys)
        self._on_message = on_message
        self._on_request = on_request
        self._max_frame = max_frame
        self._handshake_timeout = handshake_timeout
        self._connect_timeout = connect_timeout
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._max_requests_per_peer = max_requests_per_peer

        self._queue_limit, self._queue_bytes = queue_limit, queue_bytes
        self._outboxes = {pid: Outbox(queue_limit, queue_bytes) for pid in self._peers}
        self._out_links: dict[str, Link] = {}
        self._link_up = {pid: asyncio.Event() for pid in self._peers}
        self._heard_at: dict[str, float] = {}  # wall time anything was last read from each peer
        self._requests_open = dict.fromkeys(self._peers, 0)
        self._request_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._state = "new"  # -> "running" -> "stopped"
        self.metrics: dict[str, int] = dict.fromkeys(METRICS, 0)
        self._heartbeats = HeartbeatWatcher(
            heartbeat_interval, dead_after, self.metrics, lambda: self._out_links.values(),
            lambda: [*self._out_links.values(), *self._incoming], self._write,
        )
        self._incoming = IncomingLinks(
            lambda peer, body: self._on_message(peer, body), on_request, self.metrics, self._read, self._write,
            self._guard_reads, self._spawn, max_incoming_per_peer, max_serving_per_link, max_frame,
            self._answer_ping,
        )
        self._listener = Listener(
            listen, self._tls, self._by_key, key.id, handshake_timeout=handshake_timeout,
            max_pending=max_pending_handshakes, max_pending_per_address=max_pending_per_address,
            metrics=self.metrics, serve_link=self._incoming.serve,
        )

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._key.id

    @property
    def listen_endpoint(self) -> Endpoint:
        """The address actually listened on (the bound port when `listen.port` was 0)."""
        return self._listener.endpoint

    async def start(self) -> None:
        """Listen for incoming links, start one dial loop per peer, and the heartbeat watcher."""
        if self._state != "new":
            raise TransportError(f"transport is {self._state}, cannot start")
        self._listener.start()
        self._state = "running"
        self._spawn(self._heartbeats.run())
        for peer in self._peers.values():
            self._spawn(self._dial_loop(peer))
        log.info("transport %s listening on %s (TLS 1.3)", self._key.id[:8], self.listen_endpoint)

    async def stop(self) -> None:
        """Close the listener and every link, cancel every task. Safe to call more than once."""
        if self._state == "stopped":
            return
        self._state = "stopped"
        await self._listener.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for link in list(self._out_links.values()):
            self._drop_outgoing(link, "transport stopped")
        self._incoming.close_all()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def follow_validators(self, validator_keys: Mapping[str, bytes], peers: Sequence[Peer]) -> None:
        """The chain decided a new validator set: pin the keys of `validator_keys` (every validator of a set
        in force or scheduled) and dial the `peers` not dialed yet, without a restart. A peer that left the
        sets stops being dialed, and its handshakes are refused from now on; its open links end with it.

        The key map is updated in place: the listener shares it, so its next handshake sees the change."""
        self._by_key.clear()
        self._by_key.update(validators_by_key(validator_keys))
        for peer in peers:
            if peer.id == self._key.id or peer.id in self._peers or peer.id not in validator_keys:
                continue
            self._peers[peer.id] = peer
            self._outboxes[peer.id] = Outbox(self._queue_limit, self._queue_bytes)
            self._link_up[peer.id] = asyncio.Event()
            self._requests_open[peer.id] = 0
            if self._state == "running":
                self._spawn(self._dial_loop(peer))
            log.info("validator %s joined: dialing %s:%s", peer.id[:8], peer.host, peer.port)
        for gone in [pid for pid in self._peers if pid not in validator_keys]:
            del self._peers[gone]  # its dial loop ends after its current link (see _dial_loop)
            self._outboxes.pop(gone, None)
            link = self._out_links.get(gone)
            if link is not None:
                self._drop_outgoing(link, f"validator {gone[:8]} left the set")
            self._incoming.drop_peer(gone)
            log.info("validator %s left the set", gone[:8])

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

    def link_state(self, peer_id: str) -> LinkState:
        """Both directions of the links with `peer_id`, when it was last heard, and the heartbeat round trip."""
        out = self._out_links.get(peer_id)
        ins = self._incoming.of(peer_id)
        return LinkState(
            outgoing=out is not None, incoming=bool(ins),
            last_heard=self._heard_at.get(peer_id), rtt_ms=None if out is None or out.rtt is None else out.rtt * 1000,
            connected_since=max(out.since, ins[-1].since) if out is not None and ins else None,
        )

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
        link: Link | None = None
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

    def _write(self, link: Link, frame: bytes) -> None:
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
        while self._state == "running" and peer.id in self._peers:
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
                self._drop_outgoing(link, f"link to {peer.id[:8]} lost")
            # a link that lasted resets the back-off; one that keeps dropping at once does not
            delay = (
                self._backoff_min
                if loop.time() - up_since >= STABLE_LINK_SECONDS
                else min(delay * 2, self._backoff_max)
            )
            await asyncio.sleep(self._backoff(delay))

    async def _dial_once(self, peer: Peer) -> Link | None:
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(peer.host, peer.port)
        except (OSError, TimeoutError) as exc:
            self.metrics["connect_failures"] += 1
            log.debug("connect to %s at %s:%s failed: %s", peer.id[:8], peer.host, peer.port, exc)
            return None
        tune_socket(writer.get_extra_info("socket"))
        peer_id = await run_handshake(
            dial_handshake(reader, writer, self._tls, self._by_key, self._key.id, peer.id),
            self._handshake_timeout, self.metrics, DIALER, f"{peer.host}:{peer.port}",
        )
        if peer_id is None:
            abort_writer(writer)
            return None
        return Link(peer_id, reader, writer, asyncio.get_running_loop().time())

    async def _run_outgoing(self, link: Link) -> None:
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

    def _drop_outgoing(self, link: Link, reason: str) -> None:
        if self._out_links.get(link.peer_id) is link:
            del self._out_links[link.peer_id]
            self._link_up[link.peer_id].clear()
            self.metrics["links_lost"] += 1
            log.info("%s", reason)
        link.abort()
        link.fail_pending(reason)

    async def _write_messages(self, link: Link) -> None:
        box = self._outboxes[link.peer_id]
        try:
            while True:
                if not box.items:
                    box.ready.clear()
                    await box.ready.wait()
                    continue
                if link.writer.is_closing():
                    return
                # what is queued goes out in one write: one TLS record (per 16 KiB) and one syscall
                # for many small messages, not one each
                frames = [encode_frame(FrameType.MESSAGE, box.pop())]
                size = len(frames[0])
                while box.items and len(frames) < WRITE_BATCH_FRAMES and size < WRITE_BATCH_BYTES:
                    frames.append(encode_frame(FrameType.MESSAGE, box.pop()))
                    size += len(frames[-1])
                link.writer.write(frames[0] if len(frames) == 1 else b"".join(frames))
                self.metrics["frames_sent"] += len(frames)
                self.metrics["bytes_sent"] += size
                await link.writer.drain()
        except OSError as exc:
            log.info("writing to %s failed: %s", link.peer_id[:8], exc)

    async def _read_responses(self, link: Link) -> None:
        while True:
            ftype, body = await self._read(link)
            if ftype == FrameType.PONG:
                self.metrics["heartbeats_received"] += 1
                self._heartbeats.heard(link.peer_id, body)
                rtt = round_trip(body, asyncio.get_running_loop().time())
                if rtt is not None:
                    link.rtt = rtt
                continue
            # check: only answers and heartbeats travel back on an outgoing link
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

    def _answer_ping(self, link: Link, body: bytes) -> bytes:
        self._heartbeats.heard(link.peer_id, body)
        return self._heartbeats.pong(body, asyncio.get_running_loop().time())

    # --- shared ------------------------------------------------------------------------------

    async def _read(self, link: Link) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        ftype, body = await read_frame(link.reader, self._max_frame, lambda: link.heard(loop.time()))
        # check: a closed or replaced link delivers nothing more (its reader may still hold data)
        if link.closed:
            raise ConnectionAbortedError("link closed")
        link.heard(loop.time())
        self._heard_at[link.peer_id] = time.time()
        self.metrics["frames_received"] += 1
        self.metrics["bytes_received"] += len(body) + HEADER_LEN
        return ftype, body

    async def _guard_reads(self, link: Link, reading: Awaitable[None]) -> None:
        """Run a read loop; a closed connection or bad input ends it (and so the link), quietly."""
        try:
            await reading
        except OversizedFrame as exc:
            self.metrics["oversized_frames"] += 1
            log.warning("closing link with %s: %s", link.peer_id[:8], exc)
        except FrameError as exc:
            self.metrics["malformed_frames"] += 1
            log.warning("closing link with %s: %s", link.peer_id[:8], exc)
        except ssl.SSLError as exc:
            self.metrics["tls_failures"] += 1
            log.warning("link with %s closed by TLS (altered or corrupted traffic?): %s", link.peer_id[:8], exc)
        except (asyncio.IncompleteReadError, OSError) as exc:
            log.info("link with %s closed: %s", link.peer_id[:8], type(exc).__name__)
        except Exception:
            log.exception("reading from %s failed unexpectedly", link.peer_id[:8])
        finally:
            link.abort()

