"""Peer-to-peer transport: delivery, request/response, authentication, framing limits, reconnects, bounds.

Every test is a sync function running one `asyncio.run(scenario())` on 127.0.0.1, with its own
deadline (`run`), so a hang fails fast instead of stalling the suite.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from ledger.config import Endpoint, Peer
from ledger.crypto import SigningKey
from ledger.net import Transport, TransportError
from ledger.net.frames import LENGTH, FrameType, encode_frame, read_frame
from ledger.net.handshake import DIALER, LISTENER, perform_handshake

CHAIN = "test-chain"
KEYS = [SigningKey.from_seed(b"transport-test-%d" % i) for i in range(4)]
VALIDATORS = {k.id: k.public_key for k in KEYS}
OUTSIDER = SigningKey.from_seed(b"transport-test-outsider")


def run(scenario: Coroutine[Any, Any, None], limit: float = 10.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(limit):
            await scenario

    asyncio.run(bounded())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Inbox:
    """Collects on_message calls per sender."""

    def __init__(self) -> None:
        self.by_sender: dict[str, list[bytes]] = defaultdict(list)

    def __call__(self, sender: str, payload: bytes) -> None:
        self.by_sender[sender].append(payload)

    def count(self) -> int:
        return sum(len(v) for v in self.by_sender.values())


class Node:
    """A transport with its inbox and port, restartable on the same port."""

    def __init__(
        self,
        key: SigningKey,
        port: int,
        peers: list[Peer],
        *,
        chain_id: str = CHAIN,
        validators: dict[str, bytes] | None = None,
        on_request: Callable[[str, bytes], Awaitable[bytes]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.key = key
        self.port = port
        self.peer = Peer(id=key.id, host="127.0.0.1", port=port)
        self.inbox = Inbox()
        self.transport = Transport(
            key,
            chain_id,
            Endpoint(host="127.0.0.1", port=port),
            peers,
            VALIDATORS if validators is None else validators,
            self.inbox,
            on_request=on_request,
            **kwargs,
        )


def cluster(n: int, **kwargs: Any) -> list[Node]:
    ports = [free_port() for _ in range(n)]
    peers = [Peer(id=KEYS[i].id, host="127.0.0.1", port=ports[i]) for i in range(n)]
    return [Node(KEYS[i], ports[i], [p for p in peers if p.id != KEYS[i].id], **kwargs) for i in range(n)]


async def start_all(nodes: list[Node]) -> None:
    for node in nodes:
        await node.transport.start()


async def stop_all(nodes: list[Node]) -> None:
    for node in nodes:
        await node.transport.stop()


async def connected(nodes: list[Node], timeout: float = 5.0) -> None:
    await wait_for(
        lambda: all(len(n.transport.connected_peers()) == len(nodes) - 1 for n in nodes), timeout, "all links up"
    )


async def raw_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 2.0) -> bool:
    """True once the other end closes the connection (EOF or reset), reading and discarding data."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


class StolenIdentity:
    """Claims a validator's id and public key but signs with another key (it lacks the private key)."""

    def __init__(self, victim: SigningKey, signer: SigningKey) -> None:
        self.id = victim.id
        self.public_key = victim.public_key
        self._signer = signer

    def sign(self, domain: bytes, obj: object) -> bytes:
        return self._signer.sign(domain, obj)


# --- delivery ----------------------------------------------------------------------------------


def test_broadcast_all_to_all_exactly_once_in_order() -> None:
    count = 300

    async def scenario() -> None:
        nodes = cluster(3)
        try:
            await start_all(nodes)
            # the first messages are queued before any link is up
            for i in range(count):
                for node in nodes:
                    assert node.transport.broadcast(b"%s:%d" % (node.key.id.encode(), i)) == 2
            await wait_for(lambda: all(n.inbox.count() == 2 * count for n in nodes), what="all messages")
            await asyncio.sleep(0.2)  # nothing more (no duplicates) arrives later
            for node in nodes:
                assert node.inbox.count() == 2 * count
                assert set(node.inbox.by_sender) == {n.key.id for n in nodes if n is not node}
                for sender, payloads in node.inbox.by_sender.items():
                    assert payloads == [b"%s:%d" % (sender.encode(), i) for i in range(count)]
                assert node.transport.metrics["frames_sent"] == 2 * count
                assert node.transport.metrics["frames_received"] == 2 * count
                assert node.transport.metrics["handshake_failures"] == 0
            assert sorted(nodes[0].transport.connected_peers()) == sorted(n.key.id for n in nodes[1:])
        finally:
            await stop_all(nodes)

    run(scenario())


def test_large_payload_up_to_max_frame() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2, max_frame=1 << 20)
        try:
            await start_all(nodes)
            big = os.urandom((1 << 20) - 1)  # payload + type byte == max_frame
            assert a.transport.send(b.key.id, big)
            assert not a.transport.send(b.key.id, big + b"x")
            assert a.transport.metrics["dropped_too_large"] == 1
            await wait_for(lambda: b.inbox.count() == 1)
            assert b.inbox.by_sender[a.key.id] == [big]
        finally:
            await stop_all(nodes)

    run(scenario())


def test_send_to_unknown_peer_and_after_stop() -> None:
    async def scenario() -> None:
        (a,) = cluster(1)
        await a.transport.start()
        assert not a.transport.send(KEYS[3].id, b"x")
        assert not a.transport.send("nobody", b"x")
        assert a.transport.metrics["dropped_unknown_peer"] == 2
        await a.transport.stop()
        await a.transport.stop()  # idempotent
        assert a.transport.broadcast(b"x") == 0

    run(scenario())


def test_constructor_rejects_peers_outside_the_validator_set() -> None:
    with pytest.raises(ValueError):
        Node(OUTSIDER, free_port(), [])
    with pytest.raises(ValueError):
        Node(KEYS[0], free_port(), [Peer(id=OUTSIDER.id, host="127.0.0.1", port=1)])


# --- request / response ------------------------------------------------------------------------


def test_request_response() -> None:
    async def answer(sender: str, payload: bytes) -> bytes:
        if payload == b"fail":
            raise RuntimeError("no such block")
        if payload.startswith(b"slow"):
            await asyncio.sleep(0.05)
        return sender.encode() + b"/" + payload

    async def scenario() -> None:
        a, b = nodes = cluster(2, on_request=answer)
        try:
            await start_all(nodes)
            # the request waits for the link to come up
            assert await a.transport.request(b.key.id, b"block 7", timeout=5) == a.key.id.encode() + b"/block 7"
            assert await b.transport.request(a.key.id, b"x", timeout=5) == b.key.id.encode() + b"/x"
            # concurrent requests are matched to their answers by request id
            payloads = [b"slow%d" % i if i % 2 else b"%d" % i for i in range(16)]
            answers = await asyncio.gather(*(a.transport.request(b.key.id, p, timeout=5) for p in payloads))
            assert answers == [a.key.id.encode() + b"/" + p for p in payloads]
            # a failing handler becomes a TransportError at the requester; the link stays up
            with pytest.raises(TransportError, match="RuntimeError"):
                await a.transport.request(b.key.id, b"fail", timeout=5)
            assert await a.transport.request(b.key.id, b"after", timeout=5) == a.key.id.encode() + b"/after"
            assert b.transport.metrics["requests_served"] == 18
            assert b.transport.metrics["requests_refused"] == 1
            with pytest.raises(TransportError, match="unknown peer"):
                await a.transport.request("nobody", b"x", timeout=1)
        finally:
            await stop_all(nodes)

    run(scenario())


def test_request_to_dead_peer_times_out() -> None:
    async def scenario() -> None:
        a, b = cluster(2)  # b is never started
        try:
            await a.transport.start()
            started = time.monotonic()
            with pytest.raises(TransportError, match="timed out"):
                await a.transport.request(b.key.id, b"block 1", timeout=0.3)
            assert time.monotonic() - started < 1.0
            assert a.transport.metrics["requests_failed"] == 1
            assert a.transport.metrics["connect_failures"] >= 1
        finally:
            await a.transport.stop()

    run(scenario())


def test_request_fails_when_the_link_drops() -> None:
    async def hang(sender: str, payload: bytes) -> bytes:
        await asyncio.sleep(30)
        return b""

    async def scenario() -> None:
        a, b = nodes = cluster(2, on_request=hang)
        try:
            await start_all(nodes)
            await connected(nodes)
            pending = asyncio.create_task(a.transport.request(b.key.id, b"x", timeout=8))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            await b.transport.stop()
            with pytest.raises(TransportError):
                await pending
            assert time.monotonic() - started < 2.0
        finally:
            await stop_all(nodes)

    run(scenario())


def test_outstanding_and_served_requests_are_bounded() -> None:
    async def hang(sender: str, payload: bytes) -> bytes:
        await asyncio.sleep(30)
        return b""

    async def scenario() -> None:
        ports = [free_port(), free_port()]
        peers = [Peer(id=KEYS[i].id, host="127.0.0.1", port=ports[i]) for i in (0, 1)]
        # a keeps at most 2 requests open; a answers at most 1 request at a time
        a = Node(KEYS[0], ports[0], [peers[1]], on_request=hang, max_requests_per_peer=2, max_serving_per_link=1)
        b = Node(KEYS[1], ports[1], [peers[0]], on_request=hang)
        nodes = [a, b]
        try:
            await start_all(nodes)
            await connected(nodes)
            hanging = [asyncio.create_task(a.transport.request(b.key.id, b"%d" % i, timeout=5)) for i in range(2)]
            await asyncio.sleep(0.1)
            with pytest.raises(TransportError, match="too many outstanding"):
                await a.transport.request(b.key.id, b"one more", timeout=1)
            # b asks a three things at once: a serves one and refuses the others as busy
            asked = [asyncio.create_task(b.transport.request(a.key.id, b"%d" % i, timeout=0.5)) for i in range(3)]
            results = await asyncio.gather(*asked, return_exceptions=True)
            assert sorted(str(r).split(": ")[-1] for r in results) == [
                "busy",
                "busy",
                f"request to {a.key.id} timed out after 0.5 s",
            ]
            assert a.transport.metrics["requests_refused"] == 2
            for task in hanging:
                task.cancel()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_request_without_handler_is_refused() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2)  # no on_request anywhere
        try:
            await start_all(nodes)
            with pytest.raises(TransportError, match="no request handler"):
                await a.transport.request(b.key.id, b"x", timeout=5)
            assert b.transport.metrics["requests_refused"] == 1
        finally:
            await stop_all(nodes)

    run(scenario())


# --- authentication ----------------------------------------------------------------------------


def test_impostor_claiming_a_validator_id_is_rejected() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2)
        impostor_port = free_port()
        # claims a's id and public key, signs with another key
        impostor = Transport(
            StolenIdentity(a.key, KEYS[3]),  # type: ignore[arg-type]
            CHAIN,
            Endpoint(host="127.0.0.1", port=impostor_port),
            [b.peer],
            VALIDATORS,
            lambda s, p: None,
        )
        try:
            await start_all(nodes)
            await impostor.start()
            assert impostor.send(b.key.id, b"forged")
            await wait_for(lambda: b.transport.metrics["handshake_failures"] >= 2, what="rejections")
            # the real a still gets through
            assert a.transport.send(b.key.id, b"genuine")
            await wait_for(lambda: b.inbox.count() == 1)
            await asyncio.sleep(0.2)
            assert b.inbox.by_sender == {a.key.id: [b"genuine"]}
            assert impostor.connected_peers() == []
            assert impostor.metrics["handshake_failures"] >= 2
            assert impostor.metrics["links_established"] == 0
        finally:
            await impostor.stop()
            await stop_all(nodes)

    run(scenario())


def test_impostor_with_own_key_but_validator_id_is_rejected() -> None:
    async def scenario() -> None:
        (b,) = cluster(1)
        try:
            await b.transport.start()
            reader, writer = await raw_connect(b.port)
            # KEYS[3]'s signatures are real, but it presents KEYS[0]'s id with its own public key
            fake = StolenIdentity(KEYS[0], KEYS[3])
            fake.public_key = KEYS[3].public_key
            with pytest.raises(Exception):  # noqa: B017 - rejected by b, the exact error depends on timing
                await perform_handshake(reader, writer, fake, CHAIN, VALIDATORS, DIALER, b.key.id)
            assert await closed_by_peer(reader)
            await wait_for(lambda: b.transport.metrics["handshake_failures"] == 1)
            writer.close()
        finally:
            await b.transport.stop()

    run(scenario())


def test_non_validator_is_rejected() -> None:
    async def scenario() -> None:
        (b,) = cluster(1)
        outsider_validators = {**VALIDATORS, OUTSIDER.id: OUTSIDER.public_key}  # the outsider's own view
        outsider = Transport(
            OUTSIDER, CHAIN, Endpoint(host="127.0.0.1", port=free_port()), [b.peer], outsider_validators,
            lambda s, p: None,
        )
        try:
            await b.transport.start()
            await outsider.start()
            assert outsider.send(b.key.id, b"let me in")
            await wait_for(lambda: b.transport.metrics["handshake_failures"] >= 2, what="rejections")
            assert b.inbox.count() == 0
            assert outsider.connected_peers() == []
        finally:
            await outsider.stop()
            await b.transport.stop()

    run(scenario())


def test_dialer_rejects_a_different_validator_at_the_address() -> None:
    async def scenario() -> None:
        port_c = free_port()
        # b believes a listens at port_c, but c is there
        b = Node(KEYS[1], free_port(), [Peer(id=KEYS[0].id, host="127.0.0.1", port=port_c)])
        c = Node(KEYS[2], port_c, [])
        try:
            await b.transport.start()
            await c.transport.start()
            assert b.transport.send(KEYS[0].id, b"for a only")
            await wait_for(lambda: b.transport.metrics["handshake_failures"] >= 2, what="rejections")
            assert b.transport.connected_peers() == []
            assert c.inbox.count() == 0
        finally:
            await b.transport.stop()
            await c.transport.stop()

    run(scenario())


def test_wrong_chain_id_is_rejected() -> None:
    async def scenario() -> None:
        ports = [free_port(), free_port()]
        a = Node(KEYS[0], ports[0], [Peer(id=KEYS[1].id, host="127.0.0.1", port=ports[1])], chain_id="other-chain")
        b = Node(KEYS[1], ports[1], [Peer(id=KEYS[0].id, host="127.0.0.1", port=ports[0])])
        try:
            await start_all([a, b])
            assert a.transport.send(b.key.id, b"x") and b.transport.send(a.key.id, b"y")
            await wait_for(
                lambda: (
                    a.transport.metrics["handshake_failures"] >= 3 and b.transport.metrics["handshake_failures"] >= 3
                ),
                what="rejections",
            )
            assert a.inbox.count() == b.inbox.count() == 0
            assert a.transport.connected_peers() == b.transport.connected_peers() == []
        finally:
            await stop_all([a, b])

    run(scenario())


def test_handshake_timeout_and_pending_handshakes_are_bounded() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2, handshake_timeout=0.5, max_pending_handshakes=5)
        try:
            await b.transport.start()
            silent = [await raw_connect(b.port) for _ in range(8)]  # connect, never say anything
            closed = await asyncio.gather(*(closed_by_peer(r, timeout=2) for r, _ in silent))
            assert all(closed)
            assert b.transport.metrics["incoming_rejected"] == 3
            assert b.transport.metrics["handshake_failures"] == 5
            for _, w in silent:
                w.close()
            await a.transport.start()  # a legitimate peer still gets in
            assert a.transport.send(b.key.id, b"hello")
            await wait_for(lambda: b.inbox.count() == 1)
        finally:
            await stop_all(nodes)

    run(scenario())


def test_new_link_from_a_peer_replaces_the_old_one() -> None:
    async def scenario() -> None:
        (b,) = cluster(1)  # default: one incoming link per peer
        try:
            await b.transport.start()
            old_reader, old_writer = await raw_connect(b.port)
            await perform_handshake(old_reader, old_writer, KEYS[1], CHAIN, VALIDATORS, DIALER, b.key.id)
            new_reader, new_writer = await raw_connect(b.port)
            await perform_handshake(new_reader, new_writer, KEYS[1], CHAIN, VALIDATORS, DIALER, b.key.id)
            assert await closed_by_peer(old_reader, timeout=1)
            old_writer.write(encode_frame(FrameType.MESSAGE, b"old"))
            new_writer.write(encode_frame(FrameType.MESSAGE, b"new"))
            await wait_for(lambda: b.inbox.count() == 1)
            await asyncio.sleep(0.05)
            assert b.inbox.by_sender == {KEYS[1].id: [b"new"]}
            assert b.transport.metrics["incoming_replaced"] == 1
            old_writer.close()
            new_writer.close()
        finally:
            await b.transport.stop()

    run(scenario())


def test_incoming_links_per_peer_are_bounded() -> None:
    async def scenario() -> None:
        (b,) = cluster(1, max_incoming_per_peer=2)
        try:
            await b.transport.start()
            conns = []
            for _ in range(5):  # a validator (KEYS[1]) opening many authenticated connections
                reader, writer = await raw_connect(b.port)
                await perform_handshake(reader, writer, KEYS[1], CHAIN, VALIDATORS, DIALER, b.key.id)
                conns.append((reader, writer))
            await wait_for(lambda: b.transport.metrics["incoming_replaced"] == 3)
            for reader, _ in conns[:3]:
                assert await closed_by_peer(reader, timeout=1)
            for _, writer in conns[3:]:  # the newest two still deliver
                writer.write(encode_frame(FrameType.MESSAGE, b"still here"))
            await wait_for(lambda: b.inbox.count() == 2)
            for _, writer in conns:
                writer.close()
        finally:
            await b.transport.stop()

    run(scenario())


# --- framing -----------------------------------------------------------------------------------


def test_oversized_frame_length_closes_the_connection() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2, max_frame=64 * 1024)
        try:
            await b.transport.start()
            # before the handshake: the handshake limit is a few KiB
            reader, writer = await raw_connect(b.port)
            writer.write(LENGTH.pack(0xFFFFFFFF))
            assert await closed_by_peer(reader)
            assert b.transport.metrics["oversized_frames"] == 1
            writer.close()
            # after a genuine handshake: max_frame applies
            reader, writer = await raw_connect(b.port)
            await perform_handshake(reader, writer, a.key, CHAIN, VALIDATORS, DIALER, b.key.id)
            writer.write(encode_frame(FrameType.MESSAGE, b"ok"))
            writer.write(LENGTH.pack(64 * 1024 + 1) + b"\x10")
            assert await closed_by_peer(reader)
            assert b.transport.metrics["oversized_frames"] == 2
            assert b.inbox.by_sender == {a.key.id: [b"ok"]}
            writer.close()
            # the listener still serves a legitimate peer
            await a.transport.start()
            assert a.transport.send(b.key.id, b"after")
            await wait_for(lambda: b.inbox.count() == 2)
        finally:
            await stop_all(nodes)

    run(scenario())


def test_garbage_does_not_crash_the_listener() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2, handshake_timeout=1.0)
        try:
            await b.transport.start()
            garbage = [
                os.urandom(1000),
                b"\x00\x00\x00\x00",  # empty frame
                LENGTH.pack(3) + b"\x01\xc1\xc1",  # a Hello frame that is not msgpack
                encode_frame(FrameType.HELLO, b"\x95\x01\xa1x\xa1y\xc4\x00\xc4\x00"),  # wrong field values
                encode_frame(FrameType.AUTH, b"\x91\xc4\x00"),  # Auth before Hello
                encode_frame(FrameType.MESSAGE, b"unauthenticated"),
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            ]
            for blob in garbage:
                reader, writer = await raw_connect(b.port)
                writer.write(blob)
                assert await closed_by_peer(reader)
                writer.close()
            # after a genuine handshake: unknown frame type, a RESPONSE on an incoming link, a short request
            for bad in (LENGTH.pack(2) + b"\x7fx", LENGTH.pack(9) + b"\x12" + bytes(8), LENGTH.pack(3) + b"\x11ab"):
                reader, writer = await raw_connect(b.port)
                await perform_handshake(reader, writer, a.key, CHAIN, VALIDATORS, DIALER, b.key.id)
                writer.write(bad)
                assert await closed_by_peer(reader)
                writer.close()
            assert b.transport.metrics["malformed_frames"] == 3
            assert b.transport.metrics["handshake_failures"] == len(garbage)
            assert b.inbox.count() == 0
            await a.transport.start()
            assert a.transport.send(b.key.id, b"still works")
            await wait_for(lambda: b.inbox.count() == 1)
        finally:
            await stop_all(nodes)

    run(scenario())


def test_on_message_exception_does_not_break_the_link() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2)
        seen: list[bytes] = []

        def picky(sender: str, payload: bytes) -> None:
            if payload == b"boom":
                raise ValueError("bad message")
            seen.append(payload)

        b.transport._on_message = picky
        try:
            await start_all(nodes)
            for p in (b"1", b"boom", b"2"):
                a.transport.send(b.key.id, p)
            await wait_for(lambda: len(seen) == 2)
            assert seen == [b"1", b"2"]
            assert b.transport.metrics["callback_errors"] == 1
        finally:
            await stop_all(nodes)

    run(scenario())


# --- reconnection and bounds -------------------------------------------------------------------


def test_reconnect_after_peer_restart() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2, queue_limit=50)
        b2: Node | None = None
        try:
            await start_all(nodes)
            assert a.transport.send(b.key.id, b"before")
            await wait_for(lambda: b.inbox.count() == 1)
            await b.transport.stop()
            await wait_for(lambda: a.transport.connected_peers() == [], what="link down")
            # keep sending while b is down: the queue fills, then send refuses
            results = [a.transport.send(b.key.id, b"m%d" % i) for i in range(80)]
            assert results == [True] * 50 + [False] * 30
            assert a.transport.metrics["dropped_queue_full"] == 30
            assert a.transport.queue_depth(b.key.id) == 50
            await asyncio.sleep(0.3)  # a few failed dials
            # restart b on the same port (a new process would look the same)
            b2 = Node(b.key, b.port, [a.peer])
            await b2.transport.start()
            await wait_for(lambda: b2 is not None and b2.inbox.count() == 50, what="queued messages")
            assert b2.inbox.by_sender[a.key.id] == [b"m%d" % i for i in range(50)]
            assert a.transport.metrics["reconnects"] == 1
            assert a.transport.metrics["connect_failures"] >= 1
            assert a.transport.send(b.key.id, b"after")
            await wait_for(lambda: b2 is not None and b2.inbox.count() == 51)
        finally:
            await stop_all(nodes)
            if b2 is not None:
                await b2.transport.stop()

    run(scenario())


def test_queue_bound_with_unreachable_peer() -> None:
    async def scenario() -> None:
        a, b = cluster(2, queue_limit=100, queue_bytes=10_000)
        try:
            await a.transport.start()
            assert [a.transport.send(b.key.id, b"x") for _ in range(150)] == [True] * 100 + [False] * 50
            assert a.transport.metrics["dropped_queue_full"] == 50
            assert a.transport.queue_depth(b.key.id) == 100
        finally:
            await a.transport.stop()
        # the byte bound applies too
        a, b = cluster(2, queue_limit=100, queue_bytes=10_000)
        try:
            await a.transport.start()
            assert [a.transport.send(b.key.id, bytes(3000)) for _ in range(5)] == [True] * 3 + [False] * 2
        finally:
            await a.transport.stop()

    run(scenario())


def test_queue_bound_with_peer_that_never_reads() -> None:
    async def scenario() -> None:
        a, b = cluster(2, queue_limit=16)
        handshakes: list[str] = []
        release = asyncio.Event()

        async def stuck_listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # authenticates as b, then never reads again
            handshakes.append(await perform_handshake(reader, writer, b.key, CHAIN, VALIDATORS, LISTENER))
            await release.wait()
            writer.close()

        server = await asyncio.start_server(stuck_listener, "127.0.0.1", b.port)
        try:
            await a.transport.start()
            await wait_for(lambda: a.transport.connected_peers() == [b.key.id])
            payload = bytes(256 * 1024)
            sent = 0
            for _ in range(400):  # at most ~100 MiB offered; socket buffers hold a few MiB
                if not a.transport.send(b.key.id, payload):
                    break
                sent += 1
                await asyncio.sleep(0.002)
            assert a.transport.metrics["dropped_queue_full"] == 1
            assert a.transport.queue_depth(b.key.id) == 16
            assert sent < 200
            assert handshakes == [a.key.id]
        finally:
            await a.transport.stop()
            release.set()
            server.close()
            await asyncio.sleep(0.01)

    run(scenario())


def test_frames_roundtrip_and_limit() -> None:
    async def scenario() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(encode_frame(FrameType.MESSAGE, b"abc") + LENGTH.pack(100))
        reader.feed_eof()
        assert await read_frame(reader, 10) == (FrameType.MESSAGE, b"\x10abc")
        with pytest.raises(TransportError):
            await read_frame(reader, 10)

    run(scenario())
