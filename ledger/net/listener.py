"""The peer port: accepts connections, secures each in a task of its own, hands over authenticated links.

Every accepted TCP socket is wrapped in TLS from its first byte (`loop.connect_accepted_socket`:
nothing is ever read from it in the clear, so a TLS client that speaks first loses nothing) and
runs its handshake in a task of its own under `handshake_timeout`, so a slow one delays no other.
The pending handshakes are bounded in all and per remote address by `ledger.net.gate`; a
connection pushed out is closed at once. An authenticated connection becomes a `Link` and is handed
to the transport (`serve_link`), which reads it until it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from ledger.config import Endpoint
from ledger.net.frames import abort_writer, tune_socket
from ledger.net.gate import HandshakeGate
from ledger.net.handshake import LISTENER, LinkTls, accept_handshake, run_handshake
from ledger.net.link import Link

log = logging.getLogger("ledger.net")


class Listener:
    """The listening socket, the accept loop and the pending handshakes (owned here, bounded by the gate)."""

    def __init__(
        self, endpoint: Endpoint, tls: LinkTls, by_key: Mapping[bytes, str], own_id: str, *,
        handshake_timeout: float, max_pending: int, max_pending_per_address: int, metrics: dict[str, int],
        serve_link: Callable[[Link], Awaitable[None]],
    ) -> None:
        self._endpoint = endpoint
        self._tls = tls
        self._by_key = by_key
        self._own_id = own_id
        self._handshake_timeout = handshake_timeout
        self._gate: HandshakeGate[asyncio.Task[None]] = HandshakeGate(max_pending, max_pending_per_address)
        self._metrics = metrics
        self._serve_link = serve_link
        self._sock: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = False

    @property
    def endpoint(self) -> Endpoint:
        """The address listened on (the bound port when the configured one was 0)."""
        if self._sock is None:
            return self._endpoint
        host, port = self._sock.getsockname()[:2]
        return Endpoint(host=str(host), port=int(port))

    def pending_from(self, host: str) -> int:
        """Handshakes pending from `host`'s address (its /64 for IPv6)."""
        return self._gate.pending_from(host)

    def start(self) -> None:
        self._sock = _listening_socket(self._endpoint)
        self._running = True
        self._spawn(self._accept_loop(self._sock))

    async def stop(self) -> None:
        self._running = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(sock)
            except OSError as exc:  # e.g. out of file descriptors: pause rather than spin
                log.warning("accepting a peer connection failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            task = self._spawn(self._handle(conn))
            for evicted in self._gate.admit(task, str(address[0])):
                self._metrics["handshakes_evicted"] += 1
                evicted.cancel()

    async def _handle(self, conn: socket.socket) -> None:
        task = asyncio.current_task()
        link: Link | None = None
        address = "?"
        try:
            with contextlib.suppress(OSError):
                address = "{}:{}".format(*conn.getpeername()[:2])
            tune_socket(conn)
            try:
                accepted = await run_handshake(
                    self._secure(conn), self._handshake_timeout, self._metrics, LISTENER, address)
            finally:
                if task is not None:
                    self._gate.release(task)
            if accepted is None:
                return
            reader, writer, peer_id = accepted
            link = Link(peer_id, reader, writer, asyncio.get_running_loop().time())
            await self._serve_link(link)
        except asyncio.CancelledError:
            if self._running and link is None:  # pushed out by newer connections: that is all
                self._metrics["handshake_failures"] += 1
                log.info("listener handshake with %s dropped for newer connections", address)
                return
            raise
        except Exception:  # a bug here must not take the listener down
            log.exception("incoming connection handler failed")
        finally:
            if link is not None:
                link.abort()
            conn.close()  # only closes a socket no transport took over (a closed one stays closed)

    async def _secure(self, conn: socket.socket) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        """TLS on an accepted socket, then the dialer's identity and READY: (reader, writer, the dialer's id)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol, conn, ssl=self._tls.server, ssl_handshake_timeout=self._handshake_timeout)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        try:
            return reader, writer, await accept_handshake(writer, self._by_key, self._own_id)
        except BaseException:
            abort_writer(writer)
            raise


def _listening_socket(listen: Endpoint) -> socket.socket:
    """A non-blocking listening socket on the endpoint's first address (IPv4 or IPv6)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(256)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
